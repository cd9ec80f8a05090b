//! Sequential append throughput of the spool: 100,000 typical connection events written with
//! `Fsync::Never` and with `Fsync::Every(100 ms)`, in a temporary directory (or `$SPOOL_DIR`).
//!
//!     cargo run --release -p palisade-agent --example spool_append

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark reads the clock at the edge, as the binary does"
)]

use std::time::{Duration, Instant};

use palisade_agent::spool::{Fsync, Spool, SpoolConfig};
use palisade_proto::{Action, Connection, ConnectionEvent, Protocol, Traffic, Verdict};

const EVENTS: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = match std::env::var_os("SPOOL_DIR") {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    for (name, fsync) in [
        ("never", Fsync::Never),
        ("every 100 ms", Fsync::Every(Duration::from_millis(100))),
    ] {
        let dir = base.path().join(name.replace(' ', "-"));
        let config = SpoolConfig {
            fsync,
            ..SpoolConfig::default()
        };
        let mut spool = Spool::open(&dir, config)?;
        let start = Instant::now();
        for seq in 1..=EVENTS {
            spool.append(&event(seq))?;
        }
        spool.sync()?;
        let elapsed = start.elapsed();
        let stats = spool.stats();
        println!(
            "fsync {name}: {EVENTS} events in {:.3} s = {:.0} events/s, {} bytes/event",
            elapsed.as_secs_f64(),
            f64::from(u32::try_from(EVENTS)?) / elapsed.as_secs_f64(),
            stats.bytes_on_disk / EVENTS,
        );
    }
    Ok(())
}

/// A connection as an endpoint records it: application, user, destination, rule and traffic.
fn event(seq: u64) -> ConnectionEvent {
    let low = u8::try_from(seq % 250).unwrap_or(0);
    ConnectionEvent {
        seq,
        time_ms: 1_767_225_600_000 + i64::try_from(seq).unwrap_or(0),
        connection: Connection {
            app_path: Some("/usr/lib/firefox/firefox".into()),
            user: Some("alice".into()),
            uid: Some(1000),
            domain: Some(format!("cdn{low}.example.com")),
            src_ip: Some(std::net::IpAddr::from([10, 0, 0, 5])),
            src_port: Some(40_000 + u16::from(low)),
            dst_ip: Some(std::net::IpAddr::from([192, 0, 2, low])),
            dst_port: Some(443),
            protocol: Some(Protocol::Tcp),
            ..Connection::default()
        },
        pid: Some(3141),
        sni: Some(format!("cdn{low}.example.com")),
        http_host: None,
        action: Action::Allow,
        verdict: Verdict::Allow,
        rule: Some("browsers-web".into()),
        policy_version: Some(12),
        update_of: None,
        traffic: Traffic {
            bytes_out: 1_200,
            bytes_in: 48_000,
            packets_out: 14,
            packets_in: 40,
            duration_ms: 850,
        },
    }
}
