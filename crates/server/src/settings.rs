//! The node's settings: built-in defaults, then a TOML file (`--config`), then `PALISADE_*`
//! environment variables, then the command line, each overriding the one before. Unknown keys
//! in the file are an error that names the line; a bad environment value names the variable.
//!
//! ```toml
//! data = "/var/lib/palisade"
//! http = "0.0.0.0:8080"
//! grpc = "0.0.0.0:8443"
//! database_url = "postgres://palisade@db/palisade"
//! amqp_url = "amqp://guest:guest@mq:5672/%2f"
//! amqp_prefix = "palisade"
//! retention_interval_seconds = 3600
//! ```
//!
//! Settings people change while the server runs (event retention) are not here: they are in
//! the database ([`crate::stored_settings`]).

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything an operator can set, with the defaults of a single-machine install.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The data directory (SQLite database, certificates, initial credentials).
    pub data: PathBuf,
    /// Address for the console, REST API and decision API; port 0 picks a free port.
    pub http: SocketAddr,
    /// Address for the agent gateway (gRPC over mutual TLS); port 0 picks a free port.
    pub grpc: SocketAddr,
    /// `postgres://...` selects PostgreSQL; none means SQLite in the data directory.
    pub database_url: Option<String>,
    /// `amqp://...` selects RabbitMQ as the bus; none means the in-process bus.
    pub amqp_url: Option<String>,
    /// The first part of the bus's queue and exchange names on RabbitMQ; installs sharing one
    /// broker virtual host need different prefixes. None means `palisade`.
    pub amqp_prefix: Option<String>,
    /// Seconds between two runs of the event retention timer (it also runs once at start).
    pub retention_interval_seconds: NonZeroU64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            data: PathBuf::from("./palisade-data"),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc: SocketAddr::from(([127, 0, 0, 1], 8443)),
            database_url: None,
            amqp_url: None,
            amqp_prefix: None,
            retention_interval_seconds: NonZeroU64::new(3600).unwrap_or(NonZeroU64::MIN),
        }
    }
}

/// The environment variable that overrides each setting.
pub const ENVIRONMENT: [(&str, &str); 7] = [
    ("PALISADE_DATA", "data"),
    ("PALISADE_HTTP", "http"),
    ("PALISADE_GRPC", "grpc"),
    ("PALISADE_DATABASE_URL", "database_url"),
    ("PALISADE_AMQP_URL", "amqp_url"),
    ("PALISADE_AMQP_PREFIX", "amqp_prefix"),
    (
        "PALISADE_RETENTION_INTERVAL_SECONDS",
        "retention_interval_seconds",
    ),
];

/// The settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The configuration file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for these settings.
    #[error("{path}:{line}:{column}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong (the parser's words, naming the key).
        message: String,
    },
    /// An environment variable has a value its setting cannot take.
    #[error("{variable}={value:?}: {reason}")]
    Environment {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

impl Settings {
    /// Reads a configuration file over the defaults.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Settings::from_toml(path, &text)
    }

    /// Parses configuration text over the defaults; `path` names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<Settings, SettingsError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_and_column(text, span.start));
            SettingsError::File {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })
    }

    /// Applies the `PALISADE_*` variables among `vars` (see [`ENVIRONMENT`]); others are left
    /// alone. An empty value unsets an optional setting.
    pub fn apply_environment(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), SettingsError> {
        for (name, value) in vars {
            let Some(&(variable, _)) = ENVIRONMENT.iter().find(|(v, _)| *v == name) else {
                continue;
            };
            let refuse = |reason: String| SettingsError::Environment {
                variable,
                value: value.clone(),
                reason,
            };
            match variable {
                "PALISADE_DATA" if value.is_empty() => {
                    return Err(refuse("a directory is needed".to_owned()));
                }
                "PALISADE_DATA" => self.data = PathBuf::from(&value),
                "PALISADE_HTTP" => self.http = value.parse().map_err(|e| refuse(address(e)))?,
                "PALISADE_GRPC" => self.grpc = value.parse().map_err(|e| refuse(address(e)))?,
                "PALISADE_DATABASE_URL" => self.database_url = optional(&value),
                "PALISADE_AMQP_PREFIX" => self.amqp_prefix = optional(&value),
                "PALISADE_RETENTION_INTERVAL_SECONDS" => {
                    self.retention_interval_seconds = value.parse().map_err(|_| {
                        refuse("expected a whole number of seconds, at least 1".to_owned())
                    })?;
                }
                _ => self.amqp_url = optional(&value),
            }
        }
        Ok(())
    }
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn address(e: std::net::AddrParseError) -> String {
    format!("{e}; expected IP:PORT, e.g. 127.0.0.1:8080")
}

/// 1-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn file_then_environment_override_the_defaults() {
        let mut settings = Settings::from_toml(
            Path::new("palisade.toml"),
            "http = \"0.0.0.0:9000\"\ndatabase_url = \"postgres://db/x\"\n",
        )
        .unwrap();
        assert_eq!(settings.http, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(settings.grpc, Settings::default().grpc);
        settings
            .apply_environment(vars(&[
                ("PALISADE_HTTP", "127.0.0.1:0"),
                ("PALISADE_DATABASE_URL", ""),
                ("PALISADE_AMQP_URL", "amqp://mq"),
                ("PALISADE_TEST_SOMETHING", "ignored"),
            ]))
            .unwrap();
        assert_eq!(settings.http, "127.0.0.1:0".parse().unwrap());
        assert_eq!(settings.database_url, None);
        assert_eq!(settings.amqp_url.as_deref(), Some("amqp://mq"));
    }

    #[test]
    fn an_unknown_key_names_its_line() {
        let err = Settings::from_toml(
            Path::new("palisade.toml"),
            "data = \"/srv\"\nhtpp = \"0.0.0.0:1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("palisade.toml:2:1: unknown field `htpp`"),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_line() {
        let err = Settings::from_toml(Path::new("p.toml"), "\n\nhttp = 8080\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.toml:3:8: "), "{err}");
    }

    #[test]
    fn the_retention_interval_is_at_least_a_second() {
        let settings =
            Settings::from_toml(Path::new("p.toml"), "retention_interval_seconds = 60\n").unwrap();
        assert_eq!(settings.retention_interval_seconds.get(), 60);
        assert_eq!(Settings::default().retention_interval_seconds.get(), 3600);
        let err = Settings::from_toml(Path::new("p.toml"), "retention_interval_seconds = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.toml:1:30: "), "{err}");
        let mut settings = Settings::default();
        settings
            .apply_environment(vars(&[("PALISADE_RETENTION_INTERVAL_SECONDS", "5")]))
            .unwrap();
        assert_eq!(settings.retention_interval_seconds.get(), 5);
        let err = settings
            .apply_environment(vars(&[("PALISADE_RETENTION_INTERVAL_SECONDS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("PALISADE_RETENTION_INTERVAL_SECONDS=\"0\": "),
            "{err}"
        );
    }

    #[test]
    fn hostile_files_are_refused_with_a_position() {
        let deep = format!("data = {}", "[".repeat(100_000));
        let long_line = format!("http = \"{}\"", "9".repeat(100_000));
        for text in [
            "\0",
            "data = \"a\0b\"\n",
            "http = \"999.0.0.1:80\"",
            "grpc = \"127.0.0.1:65536\"",
            "data = \"/a\"\ndata = \"/b\"",
            "[data]\nx = 1",
            "database_url = 18446744073709551616",
            "amqp_prefix = \"\\uD800\"",
            "\u{feff}\u{feff}http",
            "x = é",
            deep.as_str(),
            long_line.as_str(),
        ] {
            let Err(SettingsError::File { line, column, .. }) =
                Settings::from_toml(Path::new("p.toml"), text)
            else {
                panic!("{:?} accepted", text.get(..40).unwrap_or(text))
            };
            assert!(line >= 1 && column >= 1);
            assert!(line <= text.matches('\n').count() + 1, "line {line}");
        }
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let err = Settings::default()
            .apply_environment(vars(&[("PALISADE_GRPC", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("PALISADE_GRPC=\"localhost\": "), "{err}");
    }
}
