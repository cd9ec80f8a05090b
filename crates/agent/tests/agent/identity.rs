//! The Linux process lookup against real sockets and processes on this host. The lookups need
//! root (reading other processes' descriptor tables); without it each test says so and returns.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use palisade_agent::flow::FlowKey;
use palisade_agent::identity::{ProcIdentity, procfs};
use palisade_agent::process::{Process, ProcessLookup};
use palisade_proto::{Direction, Protocol};

fn is_root() -> bool {
    let status = std::fs::read("/proc/self/status").unwrap();
    if procfs::parse_status_uid(&status) == Ok(0) {
        return true;
    }
    eprintln!("skipped: the process lookup reads other processes' /proc/<pid>/fd and needs root");
    false
}

fn flow(protocol: Protocol, local: SocketAddr, remote: SocketAddr) -> FlowKey {
    FlowKey {
        protocol,
        local,
        remote,
        direction: Direction::Outbound,
    }
}

fn sha256sum(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn this_exe() -> String {
    std::fs::read_link("/proc/self/exe")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A bash that connects to `port` on 127.0.0.1 and keeps the connection open until its stdin
/// closes (or, if `then_exec` is given, until a line arrives, then runs that command).
struct Connector {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The server's end of the connection, held open for the test.
    _accepted: TcpStream,
    /// The child's end, as seen by the server.
    client: SocketAddr,
}

fn spawn_connector(listener: &TcpListener, then_exec: &str) -> Connector {
    let port = listener.local_addr().unwrap().port();
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}; read -r _; {then_exec}");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let (accepted, client) = listener.accept().unwrap();
    Connector {
        child,
        stdin,
        _accepted: accepted,
        client,
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bash_path() -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg("readlink /proc/$$/exe; :")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn expect_process(lookup: &mut ProcIdentity, key: &FlowKey) -> Arc<Process> {
    lookup
        .try_lookup(key)
        .unwrap()
        .unwrap_or_else(|| panic!("no process for {key:?}"))
}

#[test]
fn tcp_connection_of_this_process() {
    if !is_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_accepted, _) = listener.accept().unwrap();
    let mut lookup = ProcIdentity::new().unwrap();
    let key = flow(
        Protocol::Tcp,
        client.local_addr().unwrap(),
        listener.local_addr().unwrap(),
    );
    let process = expect_process(&mut lookup, &key);
    assert_eq!(process.pid, std::process::id());
    assert_eq!(process.exe.as_deref(), Some(this_exe().as_str()));
    // The process that looks up is the agent, whose own connections are never decided: its
    // executable is not read (in a debug build it takes most of a second).
    assert_eq!(process.sha256, None);
    assert_eq!(process.uid, Some(0));
    assert_eq!(process.user.as_deref(), Some("root"));
    let cmdline = process.cmdline.as_deref().unwrap();
    let first_arg = std::env::args().next().unwrap();
    assert!(cmdline.starts_with(&first_arg), "{cmdline}");
    assert!(process.cgroup.is_some());

    // The server's end of the same connection belongs to this process too.
    let inbound = FlowKey {
        protocol: Protocol::Tcp,
        local: listener.local_addr().unwrap(),
        remote: client.local_addr().unwrap(),
        direction: Direction::Inbound,
    };
    assert_eq!(
        lookup.lookup(&inbound).map(|p| p.pid),
        Some(std::process::id())
    );

    // Asked again, the answer comes from the index and the cache.
    let before = lookup.stats();
    assert_eq!(lookup.lookup(&key), Some(process));
    assert_eq!(lookup.stats().index_hits, before.index_hits + 1);
    assert_eq!(lookup.exe_hashes_computed(), 0);
}

#[test]
fn tcp_connection_of_a_child_process() {
    if !is_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let connector = spawn_connector(&listener, "");
    let mut lookup = ProcIdentity::new().unwrap();
    let key = flow(
        Protocol::Tcp,
        connector.client,
        listener.local_addr().unwrap(),
    );
    let process = expect_process(&mut lookup, &key);
    assert_eq!(process.pid, connector.child.id());
    let bash = bash_path();
    assert_eq!(process.exe.as_deref(), Some(bash.as_str()));
    assert_eq!(process.sha256.as_deref(), Some(sha256sum(&bash).as_str()));
    let cmdline = process.cmdline.as_deref().unwrap();
    assert!(
        cmdline.starts_with("bash -c exec 3<>/dev/tcp/127.0.0.1/"),
        "{cmdline}"
    );
    assert_eq!(process.parent_exe.as_deref(), Some(this_exe().as_str()));
    assert_eq!(process.user.as_deref(), Some("root"));
}

#[test]
fn connection_stays_attributed_after_its_process_exits() {
    if !is_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut connector = spawn_connector(&listener, "");
    let pid = connector.child.id();
    let mut lookup = ProcIdentity::new().unwrap();
    let key = flow(
        Protocol::Tcp,
        connector.client,
        listener.local_addr().unwrap(),
    );
    assert_eq!(expect_process(&mut lookup, &key).pid, pid);

    // EOF on stdin: bash exits; its end of the connection lingers (FIN_WAIT2) with no owner.
    drop(connector.stdin.take());
    connector.child.wait().unwrap();
    let process = expect_process(&mut lookup, &key);
    assert_eq!(process.pid, pid);
    assert_eq!(process.exe.as_deref(), Some(bash_path().as_str()));
    assert!(lookup.stats().ownerless >= 1);

    // A lookup that never saw the process still gets the socket's user.
    let mut fresh = ProcIdentity::new().unwrap();
    let process = expect_process(&mut fresh, &key);
    assert_eq!(
        (process.pid, process.uid, process.user.as_deref()),
        (0, Some(0), Some("root"))
    );
}

#[test]
fn exec_in_place_is_noticed() {
    if !is_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut connector = spawn_connector(&listener, "exec cat");
    let mut lookup = ProcIdentity::new().unwrap();
    let key = flow(
        Protocol::Tcp,
        connector.client,
        listener.local_addr().unwrap(),
    );
    assert_eq!(expect_process(&mut lookup, &key).exe, Some(bash_path()));

    // Same pid, same start time, new program (which inherits the socket).
    let stdin = connector.stdin.as_mut().unwrap();
    stdin.write_all(b"go\nping\n").unwrap();
    let mut echoed = String::new();
    BufReader::new(connector.child.stdout.as_mut().unwrap())
        .read_line(&mut echoed)
        .unwrap();
    assert_eq!(echoed, "ping\n");
    let process = expect_process(&mut lookup, &key);
    assert_eq!(process.pid, connector.child.id());
    let cat = process.exe.as_deref().unwrap();
    assert!(cat.ends_with("/cat"), "{cat}");
    assert_eq!(process.cmdline.as_deref(), Some("cat"));
}

#[test]
fn udp_sockets_connected_and_not() {
    if !is_root() {
        return;
    }
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut lookup = ProcIdentity::new().unwrap();

    let unconnected = UdpSocket::bind("0.0.0.0:0").unwrap();
    unconnected
        .send_to(b"x", receiver.local_addr().unwrap())
        .unwrap();
    let local = SocketAddr::new(
        [127, 0, 0, 1].into(),
        unconnected.local_addr().unwrap().port(),
    );
    let process = expect_process(
        &mut lookup,
        &flow(Protocol::Udp, local, receiver.local_addr().unwrap()),
    );
    assert_eq!(process.pid, std::process::id());

    let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
    connected.connect(receiver.local_addr().unwrap()).unwrap();
    connected.send(b"y").unwrap();
    let key = flow(
        Protocol::Udp,
        connected.local_addr().unwrap(),
        receiver.local_addr().unwrap(),
    );
    assert_eq!(expect_process(&mut lookup, &key).pid, std::process::id());

    let v6 = UdpSocket::bind("[::1]:0");
    if let Ok(v6) = v6 {
        let peer: SocketAddr = "[::1]:9".parse().unwrap();
        let key = flow(Protocol::Udp, v6.local_addr().unwrap(), peer);
        assert_eq!(expect_process(&mut lookup, &key).pid, std::process::id());
    }
}

#[test]
fn unknown_flows_have_no_process() {
    if !is_root() {
        return;
    }
    let free_port = |_| {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (a, b): (SocketAddr, SocketAddr) = (free_port(0), free_port(1));
    let mut lookup = ProcIdentity::new().unwrap();
    assert_eq!(lookup.try_lookup(&flow(Protocol::Tcp, a, b)).unwrap(), None);
    let free_udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(
        lookup
            .try_lookup(&flow(Protocol::Udp, free_udp, b))
            .unwrap(),
        None
    );
    assert_eq!(
        lookup.try_lookup(&flow(Protocol::Icmp, a, b)).unwrap(),
        None
    );
    assert_eq!(lookup.stats().no_socket, 2);
}

/// Prints the cost of a lookup: `cargo test -p palisade-agent --release -- --ignored --nocapture lookup_cost`.
#[test]
#[ignore = "prints timings; not a pass/fail check"]
#[allow(
    clippy::disallowed_methods,
    reason = "a timing harness reads the clock"
)]
fn lookup_cost() {
    if !is_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut lookup = ProcIdentity::new().unwrap();
    lookup.warm();
    let server = listener.local_addr().unwrap();

    // Warm hit: the same connection again.
    let client = TcpStream::connect(server).unwrap();
    let _accepted = listener.accept().unwrap();
    let key = flow(Protocol::Tcp, client.local_addr().unwrap(), server);
    lookup.lookup(&key).unwrap();
    let rounds = 2000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        lookup.lookup(&key).unwrap();
    }
    let hit = start.elapsed() / rounds;

    // Miss, owner among recent pids: a new connection of this process each time.
    let mut clients = Vec::new();
    let mut miss = std::time::Duration::ZERO;
    let n = 200u32;
    for _ in 0..n {
        let client = TcpStream::connect(server).unwrap();
        let key = flow(Protocol::Tcp, client.local_addr().unwrap(), server);
        let start = Instant::now();
        lookup.lookup(&key).unwrap();
        miss += start.elapsed();
        let accepted = listener.accept().unwrap();
        clients.push((client, accepted));
    }
    let miss_recent = miss / n;
    drop(clients);

    // Miss, owner a process never seen: a new bash each time, found by scanning /proc.
    let mut cold = std::time::Duration::ZERO;
    let n = 20u32;
    for _ in 0..n {
        let connector = spawn_connector(&listener, "");
        let key = flow(Protocol::Tcp, connector.client, server);
        let start = Instant::now();
        let process = lookup.lookup(&key).unwrap();
        cold += start.elapsed();
        assert_eq!(process.pid, connector.child.id());
    }
    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .parse::<u32>()
                .is_ok()
        })
        .count();
    eprintln!("warm hit: {:.1} µs", hit.as_secs_f64() * 1e6);
    eprintln!(
        "miss, recent owner: {:.1} µs",
        miss_recent.as_secs_f64() * 1e6
    );
    eprintln!(
        "miss, new process (first exec, hash included): {:.1} µs with {processes} processes",
        (cold / n).as_secs_f64() * 1e6
    );
    eprintln!("{:?}", lookup.stats());
}
