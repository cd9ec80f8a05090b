//! `palisade agent` enforcing in a network namespace, as a user would see it: two client programs
//! (copies of curl named `client-a` and `client-b`) inside the namespace, a DNS server and web
//! servers on the host end of the veth pair. Needs root; runs only with
//! `PALISADE_TEST_PRIVILEGED=1` (CI sets it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::install::Node;
use crate::lab::Lab;

const SKIP: &str = "skipped: set PALISADE_TEST_PRIVILEGED=1 (needs root)";

fn privileged() -> bool {
    std::env::var("PALISADE_TEST_PRIVILEGED").as_deref() == Ok("1")
}

/// A lab with name service: every name resolves to the host end; web servers on ports 80, 443
/// and 8080 of the host end answer `ok` (8080 after a pause, as a server that thinks: a
/// monitoring agent sees connections after the fact, and a client that has already exited
/// cannot be named).
struct Site {
    lab: Lab,
    dir: tempfile::TempDir,
    client_a: PathBuf,
    client_b: PathBuf,
}

impl Site {
    fn new(test: u32) -> Site {
        let lab = Lab::new("agent", test);
        let resolv = Path::new("/etc/netns").join(&lab.ns);
        std::fs::create_dir_all(&resolv).unwrap();
        std::fs::write(
            resolv.join("resolv.conf"),
            format!("nameserver {}\noptions timeout:1 attempts:2\n", lab.host_ip),
        )
        .unwrap();
        dns_server(lab.host_ip);
        for (port, pause) in [(80, 0), (443, 0), (8080, 300)] {
            web_server(lab.host_ip, port, Duration::from_millis(pause));
        }
        let dir = tempfile::tempdir().unwrap();
        let client_a = dir.path().join("client-a");
        let client_b = dir.path().join("client-b");
        for client in [&client_a, &client_b] {
            std::fs::copy("/usr/bin/curl", client).unwrap();
        }
        Site {
            lab,
            dir,
            client_a,
            client_b,
        }
    }

    fn policy(&self, yaml: &str) -> PathBuf {
        let path = self.dir.path().join("policy.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// Whether `client` gets `ok` from `http://HOST:PORT/` inside the namespace.
    fn reaches(&self, client: &Path, host: &str, port: u16) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.lab.ns])
            .arg(client)
            .args(["-s", "--max-time", "3"])
            .arg(format!("http://{host}:{port}/"))
            .output()
            .unwrap();
        out.status.success() && out.stdout == b"ok"
    }

    /// Sets a sysctl of the namespace.
    fn sysctl(&self, key: &str, value: &str) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.lab.ns, "sysctl", "-qw"])
            .arg(format!("{key}={value}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// Whether the agent's chains are in the namespace's IPv4 rules.
    fn chains_installed(&self) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.lab.ns, "iptables", "-S"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("PALISADE")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.lab.ns));
    }
}

/// A running agent inside a lab's namespace; killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(site: &Site, args: &[&str], data: &Path) -> Agent {
        let log = data.with_extension("log");
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &site.lab.ns,
                env!("CARGO_BIN_EXE_palisade"),
                "agent",
            ])
            .args(args)
            .arg("--data")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("palisade agent ") => break,
                Some(_) => {}
                None => panic!(
                    "the agent exited before enforcing:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
        thread::spawn(move || lines.for_each(drop));
        Agent { child, log }
    }

    fn standalone(site: &Site, policy: &Path) -> Agent {
        let data = site.dir.path().join("agent");
        Agent::start(site, &["--policy", policy.to_str().unwrap()], &data)
    }

    fn signal(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        // `ip netns exec` runs the agent in its own process (exec): the pid is the agent's.
        Command::new("kill").args([signal, &pid]).status().unwrap();
        wait(&mut self.child, Duration::from_secs(10))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- agent log ---\n{log}");
        }
    }
}

/// `limit` from now.
#[allow(clippy::disallowed_methods)]
pub fn after(limit: Duration) -> Instant {
    Instant::now() + limit
}

/// Whether `deadline` has passed.
#[allow(clippy::disallowed_methods)]
pub fn passed(deadline: Instant) -> bool {
    Instant::now() >= deadline
}

fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let until = after(limit);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(!passed(until), "the agent did not exit");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_domain_rule_blocks_one_application_and_not_another() {
    if !privileged() {
        println!("{SKIP}");
        return;
    }
    let site = Site::new(0);
    assert!(
        site.reaches(&site.client_a, "shop.test", 80),
        "without the agent"
    );
    // TCP only: the lab's DNS server has the same address as the web server, so its queries
    // are named shop.test too once that name was resolved.
    let policy = site.policy(
        "version: 1\nname: lab\ndefault_action: allow\nrules:\n\
         \x20 - id: a-not-to-shop\n    action: block\n    match:\n      app_name: client-a\n      protocol: tcp\n      domain: shop.test\n",
    );
    let mut agent = Agent::standalone(&site, &policy);
    assert!(
        !site.reaches(&site.client_a, "shop.test", 80),
        "client-a to shop.test"
    );
    assert!(
        site.reaches(&site.client_b, "shop.test", 80),
        "client-b to shop.test"
    );
    // The same address under another name is not blocked for client-a.
    assert!(
        site.reaches(&site.client_a, "news.test", 80),
        "client-a to news.test"
    );
    assert!(agent.signal("-TERM").success());
    assert!(!site.chains_installed(), "the agent's chains outlived it");
    assert!(
        site.reaches(&site.client_a, "shop.test", 80),
        "after the agent stopped"
    );
}

#[test]
fn address_block_and_port_rules_and_monitor_mode() {
    if !privileged() {
        println!("{SKIP}");
        return;
    }
    let site = Site::new(1);
    let host = site.lab.host_ip.to_string();
    let [a, b, c, d] = site.lab.host_ip.octets();
    let block = format!("{a}.{b}.{c}.{}/30", d & 0xfc);
    let rules = format!(
        "rules:\n\
         \x20 - id: no-8080\n    action: block\n    match:\n      dst_port: 8080\n\
         \x20 - id: no-tls-to-lab\n    action: block\n    match:\n      dst_ip: {block}\n      dst_port: 443\n"
    );
    let policy = site.policy(&format!(
        "version: 1\nname: lab\ndefault_action: allow\n{rules}"
    ));
    let mut agent = Agent::standalone(&site, &policy);
    assert!(site.reaches(&site.client_a, &host, 80));
    assert!(!site.reaches(&site.client_a, &host, 8080));
    assert!(!site.reaches(&site.client_b, &host, 443));

    // The same rules in monitor mode, reloaded from the changed file: nothing is blocked.
    std::fs::write(
        &policy,
        format!("version: 1\nname: lab\ndefault_action: allow\nmode: monitor\n{rules}"),
    )
    .unwrap();
    let until = after(Duration::from_secs(5));
    while !site.reaches(&site.client_a, &host, 8080) {
        assert!(!passed(until), "the monitor-mode policy was not loaded");
        thread::sleep(Duration::from_millis(200));
    }
    assert!(site.reaches(&site.client_b, &host, 443));
    assert!(agent.signal("-TERM").success());
}

#[test]
fn a_killed_agent_fails_open_or_closed_as_the_policy_says() {
    if !privileged() {
        println!("{SKIP}");
        return;
    }
    let site = Site::new(2);
    let host = site.lab.host_ip.to_string();
    for (fail, passes) in [("open", true), ("closed", false)] {
        let policy = site.policy(&format!(
            "version: 1\nname: lab\ndefault_action: allow\nfail: {fail}\n"
        ));
        let mut agent = Agent::standalone(&site, &policy);
        assert!(
            site.reaches(&site.client_a, &host, 80),
            "fail {fail}, agent running"
        );
        agent.signal("-KILL");
        assert!(
            site.chains_installed(),
            "a killed agent cannot remove its chains"
        );
        assert_eq!(
            site.reaches(&site.client_a, &host, 80),
            passes,
            "fail {fail}, agent killed"
        );
        // The next agent replaces the chains left behind.
        let mut agent = Agent::standalone(&site, &policy);
        assert!(
            site.reaches(&site.client_a, &host, 80),
            "fail {fail}, agent restarted"
        );
        assert!(agent.signal("-TERM").success());
        assert!(!site.chains_installed());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_managed_agent_blocks_and_reports_connections_with_their_process() {
    if !privileged() {
        println!("{SKIP}");
        return;
    }
    let site = Site::new(3);
    let (reached, event, named) = managed(&site, &[]).await;
    assert!(!reached, "client-a reached port 8080");
    assert_eq!(event["action"], "block", "{event}");
    assert_eq!(event["verdict"], "block", "{event}");
    // The request's Host, read from a copy of its first data packet.
    assert_eq!(named["http_host"], "web.example:8080", "{named}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monitoring_agent_changes_nothing_and_reports_what_it_would_block() {
    if !privileged() {
        println!("{SKIP}");
        return;
    }
    let site = Site::new(4);
    // Connection tracking is on wherever a stateful firewall runs; in the bare namespace a
    // rule of the host's own switches it on.
    let out = Command::new("ip")
        .args(["netns", "exec", &site.lab.ns, "iptables", "-A", "OUTPUT"])
        .args([
            "-m",
            "conntrack",
            "--ctstate",
            "NEW,ESTABLISHED",
            "-j",
            "ACCEPT",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Where connections are counted, a monitoring agent reports their traffic too.
    site.sysctl("net.netfilter.nf_conntrack_acct", "1");
    let (reached, event, named) = managed(&site, &["--mode", "monitor"]).await;
    assert!(reached, "a monitoring agent blocked");
    assert!(
        !site.chains_installed(),
        "a monitoring agent changed the kernel's rules"
    );
    assert_eq!(event["action"], "block", "{event}");
    assert_eq!(event["verdict"], "allow", "{event}");
    // Reading server names needs a rule in the kernel: not when monitoring.
    assert!(named.get("http_host").is_none(), "{named}");
}

/// Enrolls an agent (started with `args`) in a server on the host end whose policy blocks
/// client-a to port 8080, makes that connection, and returns whether it got through and its
/// event as the server stores it, after checking the process identity in it; then checks that
/// an allowed connection of client-b to a name is reported with the name and, once it ends,
/// its traffic, and returns that event too.
async fn managed(site: &Site, args: &[&str]) -> (bool, Value, Value) {
    let host = site.lab.host_ip.to_string();
    let server_dir = site.dir.path().join("server");
    std::fs::create_dir(&server_dir).unwrap();
    let node = Node::start(
        &server_dir,
        None,
        ("127.0.0.1:0", &format!("{host}:0")),
        site.dir.path().join("server.log"),
    );
    let token = node.enrollment_token().await;
    let created = node
        .post(
            "/api/v1/policies",
            &json!({"name": "lab", "format": "yaml", "source":
                "version: 1\nname: lab\ndefault_action: allow\nrules:\n  - id: no-8080\n    action: block\n    match:\n      app_name: client-a\n      dst_port: 8080\n"}),
        )
        .await;
    node.put(
        "/api/v1/groups/default/policy",
        &json!({"policy_id": created["policy_id"]}),
    )
    .await;
    let data = site.dir.path().join("agent");
    let ca = node.ca.to_str().unwrap().to_owned();
    let mut all = vec![
        "--server",
        &node.grpc,
        "--enroll-token",
        &token,
        "--ca",
        &ca,
    ];
    all.extend(args);
    let mut agent = Agent::start(site, &all, &data);
    let agents = node.get("/api/v1/agents").await;
    let agent_id = agents[0]["id"].as_str().unwrap().to_owned();
    // Wait for the policy to be in force (the heartbeat reports it), then connect.
    let until = after(Duration::from_secs(30));
    loop {
        let about = node.get(&format!("/api/v1/agents/{agent_id}")).await;
        if about["policy_version"] == json!(1) {
            break;
        }
        assert!(
            !passed(until),
            "the policy never reached the agent: {about}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reached = site.reaches(&site.client_a, &host, 8080);
    let mut found = Value::Null;
    let until = after(Duration::from_secs(20));
    while found.is_null() {
        let events = node.get(&format!("/api/v1/events?agent={agent_id}")).await;
        if let Some(e) = events["events"]
            .as_array()
            .and_then(|all| all.iter().find(|e| e["connection"]["dst_port"] == 8080))
        {
            found = e.clone();
        }
        assert!(
            !passed(until),
            "the connection never reached the server: {events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let conn = &found["connection"];
    assert_eq!(conn["app_path"], site.client_a.to_str().unwrap(), "{found}");
    assert_eq!(conn["app_name"], "client-a", "{found}");
    assert_eq!(conn["user"], "root", "{found}");
    assert_eq!(conn["uid"], 0, "{found}");
    assert_eq!(conn["dst_ip"], host.as_str(), "{found}");
    assert_eq!(found["rule"], "no-8080", "{found}");
    assert_eq!(found["policy_version"], 1, "{found}");
    assert!(found["pid"].as_u64().is_some(), "{found}");
    // One connection, one event: a refused client gives up at once instead of trying again.
    let events = node.get(&format!("/api/v1/events?agent={agent_id}")).await;
    let attempts = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["connection"]["dst_port"] == 8080)
        .count();
    assert_eq!(attempts, 1, "{events}");

    // Port 8080 answers after a pause, so client-b is still running when a monitoring agent
    // sees its connection.
    assert!(
        site.reaches(&site.client_b, "web.example", 8080),
        "client-b was blocked"
    );
    // The kernel would forget the closed connection two minutes later (TIME_WAIT), and report
    // that only when its garbage collector passes; deleting the entry ends it now, counters
    // final.
    let deleted = Command::new("ip")
        .args(["netns", "exec", &site.lab.ns, "conntrack", "-D"])
        .args(["-p", "tcp", "--orig-port-dst", "8080"])
        .output()
        .unwrap();
    assert!(deleted.status.success(), "{deleted:?}");
    let until = after(Duration::from_secs(20));
    let ended = loop {
        let events = node.get(&format!("/api/v1/events?agent={agent_id}")).await;
        let ended = events["events"].as_array().and_then(|all| {
            all.iter()
                .find(|e| {
                    e["connection"]["dst_port"] == 8080
                        && e["connection"]["app_name"] == "client-b"
                        && e["traffic"]["bytes_in"].as_u64() > Some(0)
                })
                .cloned()
        });
        if let Some(e) = ended {
            break e;
        }
        assert!(
            !passed(until),
            "client-b's connection never ended with its traffic: {events}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let traffic = &ended["traffic"];
    // The request (a few hundred bytes with headers) went out, the answer came in.
    assert!(traffic["bytes_out"].as_u64() > Some(100), "{ended}");
    assert!(traffic["packets_out"].as_u64() >= Some(3), "{ended}");
    assert!(traffic["packets_in"].as_u64() >= Some(2), "{ended}");
    assert_eq!(ended["action"], "allow", "{ended}");
    // The name came from the DNS answer (a queue enforcing, a capture monitoring).
    assert_eq!(ended["connection"]["domain"], "web.example", "{ended}");
    assert!(agent.signal("-TERM").success());
    (reached, found, ended)
}

/// Answers every A query with `ip`, other queries with no answer, until the process ends.
fn dns_server(ip: Ipv4Addr) {
    let socket = UdpSocket::bind((ip, 53)).unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let query = &buf[..len];
            let mut reply = query.to_vec();
            reply[2] |= 0x80; // QR: a response
            reply[3] = 0x80; // RA, NOERROR
            let qtype = &query[len - 4..len - 2];
            if qtype == [0, 1] {
                reply[7] = 1; // one answer
                reply.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                reply.extend(ip.octets());
            }
            let _ = socket.send_to(&reply, from);
        }
    });
}

/// Answers `ok` to every HTTP request on `ip:port` after `pause`, until the process ends.
fn web_server(ip: Ipv4Addr, port: u16, pause: Duration) {
    let listener = TcpListener::bind((ip, port)).unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request: Vec<u8> = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend(&buf[..n]),
                    }
                }
                thread::sleep(pause);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
}
