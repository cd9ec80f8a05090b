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
//! training_interval_seconds = 21600
//!
//! [https]                      # TLS on the HTTP address; off by default
//! enabled = true               # without cert and key: a certificate from the internal CA
//! names = ["palisade.example.com"]
//! # cert = "/etc/palisade/console.pem"
//! # key = "/etc/palisade/console.key"
//!
//! [oidc]                       # single sign-on to the console; off without an issuer
//! issuer = "https://login.example.com/realms/acme"
//! client_id = "palisade"
//! client_secret = "..."
//! role_claim = "groups"
//! console_url = "https://palisade.example.com"
//! [oidc.roles]                 # claim value -> Palisade role
//! "palisade-admins" = "admin"
//! ```
//!
//! Settings people change while the server runs (event retention) are not here: they are in
//! the database ([`crate::stored_settings`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::credentials::Secret;
use crate::https::Https;
use crate::oidc::OidcConfig;
use crate::role::Role;

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
    /// Seconds between two trainings of the behaviour model (see `crate::training`).
    pub training_interval_seconds: NonZeroU64,
    /// TLS on the HTTP address.
    pub https: HttpsSettings,
    /// Single sign-on to the console through an OpenID Connect provider.
    pub oidc: OidcSettings,
}

/// The `[https]` section: TLS on the HTTP address (console, REST API, decision API).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpsSettings {
    /// Serve HTTPS instead of HTTP.
    pub enabled: bool,
    /// The certificate chain (PEM); with `key`. Without both, the internal CA issues one.
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// Further names (DNS names or addresses) for the certificate the internal CA issues.
    pub names: Vec<String>,
}

/// The `[oidc]` section: single sign-on to the console; without an issuer it is off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// The provider's issuer URL; its discovery document is `{issuer}/.well-known/openid-configuration`.
    pub issuer: Option<String>,
    /// The client id registered at the provider.
    pub client_id: Option<String>,
    /// The client secret; none for a public client.
    pub client_secret: Option<String>,
    /// The scopes asked for, separated by spaces; `openid` among them.
    pub scopes: String,
    /// The ID token claim that carries the user's roles or groups (a string or an array of
    /// strings).
    pub role_claim: String,
    /// Which value of the role claim gives which Palisade role.
    pub roles: BTreeMap<String, String>,
    /// The claim that names the user; none means `preferred_username`, then `email`, then
    /// `sub`.
    pub name_claim: Option<String>,
    /// The console's address as browsers reach it (the redirect URI is this plus
    /// `/login/sso/callback`); none means `http://` and the HTTP address.
    pub console_url: Option<String>,
}

impl Default for OidcSettings {
    fn default() -> OidcSettings {
        OidcSettings {
            issuer: None,
            client_id: None,
            client_secret: None,
            scopes: "openid profile email".to_owned(),
            role_claim: "groups".to_owned(),
            roles: BTreeMap::new(),
            name_claim: None,
            console_url: None,
        }
    }
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
            training_interval_seconds: NonZeroU64::new(21_600).unwrap_or(NonZeroU64::MIN),
            https: HttpsSettings::default(),
            oidc: OidcSettings::default(),
        }
    }
}

/// The environment variable that overrides each setting.
pub const ENVIRONMENT: [(&str, &str); 20] = [
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
    (
        "PALISADE_TRAINING_INTERVAL_SECONDS",
        "training_interval_seconds",
    ),
    // `true` or `false`.
    ("PALISADE_HTTPS", "https.enabled"),
    ("PALISADE_HTTPS_CERT", "https.cert"),
    ("PALISADE_HTTPS_KEY", "https.key"),
    // Separated by commas.
    ("PALISADE_HTTPS_NAMES", "https.names"),
    ("PALISADE_OIDC_ISSUER", "oidc.issuer"),
    ("PALISADE_OIDC_CLIENT_ID", "oidc.client_id"),
    ("PALISADE_OIDC_CLIENT_SECRET", "oidc.client_secret"),
    ("PALISADE_OIDC_SCOPES", "oidc.scopes"),
    ("PALISADE_OIDC_ROLE_CLAIM", "oidc.role_claim"),
    // VALUE=ROLE pairs separated by commas, e.g. `palisade-admins=admin,soc=analyst`.
    ("PALISADE_OIDC_ROLES", "oidc.roles"),
    ("PALISADE_OIDC_NAME_CLAIM", "oidc.name_claim"),
    ("PALISADE_OIDC_CONSOLE_URL", "oidc.console_url"),
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
    /// A setting has a value that cannot work.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The setting, as in the file.
        setting: &'static str,
        /// Why.
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
                "PALISADE_TRAINING_INTERVAL_SECONDS" => {
                    self.training_interval_seconds = value.parse().map_err(|_| {
                        refuse("expected a whole number of seconds, at least 1".to_owned())
                    })?;
                }
                "PALISADE_HTTPS" => {
                    self.https.enabled = value
                        .parse()
                        .map_err(|_| refuse("expected true or false".to_owned()))?;
                }
                "PALISADE_HTTPS_CERT" => self.https.cert = optional(&value).map(PathBuf::from),
                "PALISADE_HTTPS_KEY" => self.https.key = optional(&value).map(PathBuf::from),
                "PALISADE_HTTPS_NAMES" => {
                    self.https.names = value
                        .split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "PALISADE_OIDC_ISSUER" => self.oidc.issuer = optional(&value),
                "PALISADE_OIDC_CLIENT_ID" => self.oidc.client_id = optional(&value),
                "PALISADE_OIDC_CLIENT_SECRET" => self.oidc.client_secret = optional(&value),
                "PALISADE_OIDC_SCOPES" => self.oidc.scopes.clone_from(&value),
                "PALISADE_OIDC_ROLE_CLAIM" => self.oidc.role_claim.clone_from(&value),
                "PALISADE_OIDC_ROLES" => {
                    self.oidc.roles = value
                        .split(',')
                        .filter(|pair| !pair.trim().is_empty())
                        .map(|pair| {
                            pair.rsplit_once('=')
                                .map(|(v, r)| (v.trim().to_owned(), r.trim().to_owned()))
                                .ok_or_else(|| {
                                    refuse(format!(
                                        "{pair:?} is not VALUE=ROLE; expected e.g. \
                                         palisade-admins=admin,soc=analyst"
                                    ))
                                })
                        })
                        .collect::<Result<_, _>>()?;
                }
                "PALISADE_OIDC_NAME_CLAIM" => self.oidc.name_claim = optional(&value),
                "PALISADE_OIDC_CONSOLE_URL" => self.oidc.console_url = optional(&value),
                _ => self.amqp_url = optional(&value),
            }
        }
        Ok(())
    }

    /// Where the HTTPS certificate comes from; `None` when HTTPS is off. A certificate without
    /// its key (or the other way round) is an error.
    pub fn https(&self) -> Result<Option<Https>, SettingsError> {
        let h = &self.https;
        if !h.enabled {
            return Ok(None);
        }
        match (&h.cert, &h.key) {
            (Some(cert), Some(key)) => Ok(Some(Https::Files {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None) => Ok(Some(Https::Generated {
                names: h.names.clone(),
            })),
            (Some(_), None) | (None, Some(_)) => Err(SettingsError::Invalid {
                setting: "https.cert",
                reason: "give both https.cert and https.key, or neither for a certificate from \
                         the internal CA"
                    .to_owned(),
            }),
        }
    }

    /// The single sign-on configuration: `None` without an issuer, an error when the `[oidc]`
    /// settings cannot work (no client id, an unknown role, a URL that is not http(s)).
    pub fn oidc(&self) -> Result<Option<OidcConfig>, SettingsError> {
        let o = &self.oidc;
        let Some(issuer) = &o.issuer else {
            return Ok(None);
        };
        let invalid = |setting, reason: &str| SettingsError::Invalid {
            setting,
            reason: reason.to_owned(),
        };
        if !is_http_url(issuer) {
            return Err(invalid(
                "oidc.issuer",
                "expected an https:// (or http://) URL",
            ));
        }
        let client_id = o
            .client_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| invalid("oidc.client_id", "needed when oidc.issuer is set"))?;
        if !o.scopes.split(' ').any(|scope| scope == "openid") {
            return Err(invalid("oidc.scopes", "must include openid"));
        }
        if o.role_claim.is_empty() {
            return Err(invalid(
                "oidc.role_claim",
                "names the claim that carries roles",
            ));
        }
        if o.roles.is_empty() {
            return Err(invalid(
                "oidc.roles",
                "map at least one value of the role claim to a role, or nobody can sign in",
            ));
        }
        let mut roles = Vec::new();
        for (value, role) in &o.roles {
            match role.parse::<Role>() {
                Ok(Role::Decision) | Err(_) => {
                    return Err(SettingsError::Invalid {
                        setting: "oidc.roles",
                        reason: format!(
                            "{value:?} maps to {role:?}; expected admin, editor, analyst, viewer \
                             or auditor"
                        ),
                    });
                }
                Ok(role) => roles.push((value.clone(), role)),
            }
        }
        if o.console_url
            .as_deref()
            .is_some_and(|url| !is_http_url(url))
        {
            return Err(invalid(
                "oidc.console_url",
                "expected an https:// (or http://) URL",
            ));
        }
        Ok(Some(OidcConfig {
            issuer: issuer.clone(),
            client_id,
            client_secret: o.client_secret.clone().map(Secret::new),
            scopes: o.scopes.clone(),
            role_claim: o.role_claim.clone(),
            roles,
            name_claim: o.name_claim.clone(),
            console_url: o
                .console_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
        }))
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|host| !host.is_empty() && !host.contains(char::is_whitespace))
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
    fn single_sign_on_is_off_without_an_issuer_and_checked_with_one() {
        assert!(Settings::default().oidc().unwrap().is_none());
        let mut settings = Settings::from_toml(
            Path::new("p.toml"),
            "[oidc]\nissuer = \"https://idp.example/realms/acme\"\nclient_id = \"palisade\"\n\
             [oidc.roles]\n\"palisade-admins\" = \"admin\"\n",
        )
        .unwrap();
        let config = settings.oidc().unwrap().unwrap();
        assert_eq!(config.issuer, "https://idp.example/realms/acme");
        assert_eq!(config.scopes, "openid profile email");
        assert_eq!(config.role_claim, "groups");
        assert_eq!(
            config.roles,
            vec![("palisade-admins".to_owned(), Role::Admin)]
        );
        settings
            .apply_environment(vars(&[
                ("PALISADE_OIDC_ROLES", "soc=analyst, audit = auditor"),
                ("PALISADE_OIDC_CLIENT_SECRET", "s"),
                ("PALISADE_OIDC_CONSOLE_URL", "https://palisade.example/"),
            ]))
            .unwrap();
        let config = settings.oidc().unwrap().unwrap();
        assert_eq!(
            config.roles,
            vec![
                ("audit".to_owned(), Role::Auditor),
                ("soc".to_owned(), Role::Analyst)
            ]
        );
        assert_eq!(config.client_secret.unwrap().expose(), "s");
        assert_eq!(
            config.console_url.as_deref(),
            Some("https://palisade.example")
        );

        for (variable, value, setting) in [
            ("PALISADE_OIDC_ROLES", "soc=decision", "oidc.roles"),
            ("PALISADE_OIDC_ROLES", "soc=root", "oidc.roles"),
            ("PALISADE_OIDC_CLIENT_ID", "", "oidc.client_id"),
            ("PALISADE_OIDC_SCOPES", "profile email", "oidc.scopes"),
            ("PALISADE_OIDC_ISSUER", "idp.example", "oidc.issuer"),
            (
                "PALISADE_OIDC_CONSOLE_URL",
                "palisade:8080",
                "oidc.console_url",
            ),
        ] {
            let mut bad = settings.clone();
            bad.apply_environment(vars(&[(variable, value)])).unwrap();
            let err = bad.oidc().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{setting}: ")),
                "{variable}={value}: {err}"
            );
        }
        let err = settings
            .apply_environment(vars(&[("PALISADE_OIDC_ROLES", "admins")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("PALISADE_OIDC_ROLES=\"admins\": "), "{err}");
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
