//! `palisade server` as an operator starts it: the printed addresses (HTTP, the agent gateway),
//! the CA certificate and credentials files, and a clean stop on SIGTERM.

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

#[test]
fn server_prints_its_address_serves_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["server", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .arg("--data")
            .arg(&data)
            .env_remove("PALISADE_DATABASE_URL")
            .env_remove("PALISADE_BOOTSTRAP_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
    let grpc = line
        .trim_end()
        .strip_prefix("grpc: https://")
        .unwrap_or_else(|| panic!("second line: {line:?}"))
        .to_owned();
    assert!(
        grpc.starts_with("127.0.0.1:") && !grpc.ends_with(":0") && grpc != addr,
        "{grpc}"
    );
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim_end(),
        format!("ca: {}", data.join("ca.pem").display())
    );
    assert!(data.join("ca.key").exists());
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
