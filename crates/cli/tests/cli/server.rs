//! `palisade server` as an operator starts it: the printed address, the credentials file, and a
//! clean stop on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// Kills the server if the test fails before stopping it, so no process is left running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A server started as `palisade ARGS` with no `PALISADE_*` settings from the environment.
fn spawn(args: &[&std::ffi::OsStr]) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(args)
            .env_remove("PALISADE_DATABASE_URL")
            .env_remove("PALISADE_AMQP_URL")
            .env_remove("PALISADE_BOOTSTRAP_TOKEN")
            .env_remove("PALISADE_HTTP")
            .env_remove("PALISADE_GRPC")
            .env_remove("PALISADE_DATA")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn server_prints_its_address_serves_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = spawn(&[
        "server".as_ref(),
        "--http".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data".as_ref(),
        data.as_ref(),
    ]);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim_end()
        .strip_prefix("http: http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_owned();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim_end(),
        format!(
            "credentials: {}",
            data.join("initial-credentials").display()
        )
    );

    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("\r\n\r\nok"), "{response}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn a_database_url_that_is_not_postgres_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["server", "--http", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("PALISADE_DATABASE_URL", "mysql://localhost/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PALISADE_DATABASE_URL"), "{stderr}");
}

#[test]
fn up_reads_its_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "http = \"127.0.0.1:0\"\ndata = {:?}\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = spawn(&["up".as_ref(), "--config".as_ref(), config.as_ref()]);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("http: http://127.0.0.1:"), "{line:?}");
    assert!(!line.trim_end().ends_with(":0"), "{line:?}");
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert!(line.ends_with("data/initial-credentials\n"), "{line:?}");
    assert!(data.join("palisade.db").exists());
}

#[test]
fn an_unknown_configuration_key_is_bad_usage_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(&config, "http = \"127.0.0.1:0\"\nhtpp = \"127.0.0.1:0\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:1: unknown field `htpp`", config.display())),
        "{stderr}"
    );
}
