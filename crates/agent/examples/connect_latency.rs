//! TCP connect latency and new connections per second, for `bench/agent.sh`: the time each
//! `connect()` takes (the first packet of every new connection is what a firewall holds), by
//! one client thread or several, against a server that accepts and closes.
//!
//! ```text
//! connect_latency serve ADDR... [--threads T]      accept and close on each ADDR, T threads each
//! connect_latency connect ADDR... [--count N | --seconds S] [--threads T] [--warmup W]
//! ```
//!
//! `connect` makes W untimed connects first, then N connects (or as many as T threads make in S
//! seconds), each connect then close, and prints one line of `key=value` figures: connects,
//! failures, seconds, connects per second, and the p50, p99, p99.9 and largest connect time in
//! microseconds. Client thread `i` connects to the `i`-th address given (round robin), so
//! several addresses spread the connections over several flows. A failed connect is counted,
//! not timed; the first failure is printed on standard error.

// A benchmark measures wall-clock time by definition: it reads the clock where it times.
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("serve") => serve(args.get(1..).unwrap_or_default()),
        Some("connect") => connect(args.get(1..).unwrap_or_default()),
        _ => Err(USAGE.to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("connect_latency: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: connect_latency serve ADDR... [--threads T] | \
    connect ADDR... [--count N | --seconds S] [--threads T] [--warmup W]";

/// When a `connect` run stops.
#[derive(Clone, Copy)]
enum Stop {
    /// After this many timed connects in all.
    Count(u64),
    /// When this much time has passed since the timed connects began.
    After(Duration),
}

/// What one client thread measured.
#[derive(Default)]
struct Measured {
    times: Vec<Duration>,
    failures: u64,
    first_failure: Option<String>,
}

/// Accepts and closes connections on every address until killed.
fn serve(args: &[String]) -> Result<(), String> {
    let mut addrs = Vec::new();
    let mut threads = 1usize;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--threads" => threads = number(rest.next(), "--threads")?,
            a => addrs.push(a.parse::<SocketAddr>().map_err(|e| format!("{a}: {e}"))?),
        }
    }
    if addrs.is_empty() {
        return Err(USAGE.to_owned());
    }
    for addr in addrs {
        let listener = TcpListener::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
        for _ in 0..threads.max(1) {
            let listener = listener
                .try_clone()
                .map_err(|e| format!("sharing {addr}: {e}"))?;
            std::thread::spawn(move || {
                loop {
                    // Accepted and dropped at once: the server's part of the connection is done.
                    if let Err(e) = listener.accept() {
                        eprintln!("connect_latency: accepting on {addr}: {e}");
                    }
                }
            });
        }
    }
    println!("serving");
    // The accepting threads run until the process is killed.
    loop {
        std::thread::park();
    }
}

/// Times connects and prints the figures.
fn connect(args: &[String]) -> Result<(), String> {
    let mut addrs = Vec::new();
    let mut stop = Stop::Count(20_000);
    let mut threads = 1usize;
    let mut warmup = 200u64;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--count" => stop = Stop::Count(number(rest.next(), "--count")?),
            "--seconds" => {
                stop = Stop::After(Duration::from_secs(number(rest.next(), "--seconds")?));
            }
            "--threads" => threads = number(rest.next(), "--threads")?,
            "--warmup" => warmup = number(rest.next(), "--warmup")?,
            a => addrs.push(a.parse::<SocketAddr>().map_err(|e| format!("{a}: {e}"))?),
        }
    }
    if addrs.is_empty() {
        return Err(USAGE.to_owned());
    }
    for &addr in &addrs {
        let warm = client(
            addr,
            Stop::Count(warmup),
            &AtomicU64::new(0),
            Instant::now(),
        );
        if let Some(e) = &warm.first_failure {
            eprintln!("connect_latency: warm-up connect to {addr} failed: {e}");
        }
    }
    let claimed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = addrs
        .iter()
        .copied()
        .cycle()
        .take(threads.max(1))
        .map(|addr| {
            let claimed = claimed.clone();
            std::thread::spawn(move || client(addr, stop, &claimed, start))
        })
        .collect();
    let mut all = Measured::default();
    for handle in handles {
        let one = handle
            .join()
            .map_err(|_| "a client thread stopped".to_owned())?;
        all.times.extend(one.times);
        all.failures += one.failures;
        all.first_failure = all.first_failure.or(one.first_failure);
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(e) = &all.first_failure {
        eprintln!("connect_latency: a connect failed: {e}");
    }
    all.times.sort_unstable();
    let micros = |per_mille| quantile(&all.times, per_mille).as_secs_f64() * 1e6;
    // Every connect made, timed or failed, is a new connection the firewall decided.
    let made = all.times.len() as f64 + all.failures as f64;
    println!(
        "connects={} failures={} seconds={seconds:.3} per_second={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}",
        all.times.len(),
        all.failures,
        made / seconds,
        micros(500),
        micros(990),
        micros(999),
        micros(1000),
    );
    Ok(())
}

/// One client thread: connect, note the time, close; until `stop` (counted across threads in
/// `claimed`).
fn client(addr: SocketAddr, stop: Stop, claimed: &AtomicU64, start: Instant) -> Measured {
    let mut measured = Measured::default();
    loop {
        match stop {
            Stop::Count(n) => {
                if claimed.fetch_add(1, Ordering::Relaxed) >= n {
                    break;
                }
            }
            Stop::After(limit) => {
                if start.elapsed() >= limit {
                    break;
                }
            }
        }
        let before = Instant::now();
        match TcpStream::connect(addr) {
            Ok(stream) => {
                measured.times.push(before.elapsed());
                drop(stream);
            }
            Err(e) => {
                measured.failures += 1;
                measured.first_failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
    measured
}

/// The nearest-rank quantile of sorted times, in thousandths (500 is the median, 1000 the
/// largest); zero when there are none.
fn quantile(sorted: &[Duration], per_mille: usize) -> Duration {
    let rank = sorted.len().saturating_mul(per_mille).div_ceil(1000).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn number<T: std::str::FromStr>(value: Option<&String>, flag: &str) -> Result<T, String> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{flag} needs a number"))
}
