//! `palisade sensor --interface IF`: live capture. The tests that capture need root (a network
//! namespace, a veth pair, AF_PACKET) and run only with `PALISADE_ROOT_TESTS=1`; each builds its
//! own namespace and veth pair, named after the process id and the test, and removes them even
//! when it fails.
//!
//! A device in the namespace announces itself (mDNS or DHCP), asks the host end for a name over
//! DNS and makes an HTTP request to it; the sensor on the host end must write those flows, each
//! naming the device. A managed sensor must deliver them to its server instead, and keep its
//! identity across a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::{after, passed};
use crate::install::Node;
use crate::lab::{Cleanup, Lab, ip};

const SKIP: &str = "skipped: set PALISADE_ROOT_TESTS=1 (needs root)";
const HTTP_HOST: &str = "device-test.example";
/// What the test's DNS server answers for [`HTTP_HOST`].
const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

fn root_tests() -> bool {
    std::env::var("PALISADE_ROOT_TESTS").as_deref() == Ok("1")
}

#[test]
fn an_unknown_interface_is_named_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["sensor", "--interface", "no-such-if0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no network interface named \"no-such-if0\""),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_device_named_by_mdns_is_the_client_of_its_flows() {
    if !root_tests() {
        println!("{SKIP}");
        return;
    }
    let lab = Lab::new("sensor", 0);
    let name = format!("kiosk-{}.local", std::process::id());
    let dns = dns_server(lab.host_ip);
    let (http, http_port) = http_server(lab.host_ip);
    let sensor = Sensor::start(&lab.host_if, None);

    lab.device(
        MDNS_DNS_HTTP,
        &[&name, &lab.host_ip.to_string(), &http_port.to_string()],
    );
    dns.join().unwrap();
    http.join().unwrap();
    let (status, stdout, stderr) = sensor.stop();
    assert!(status.success(), "{status}: {stderr}");
    let records = json_lines(&stdout);

    let device = json!({"mac": &lab.ns_mac, "ip": lab.ns_ip.to_string(), "hostname": &name});
    let mdns = find(&records, |r| r["src_port"] == 5353 && r["dst_port"] == 5353);
    assert_eq!(mdns["proto"], "udp");
    assert_eq!(mdns["dst_ip"], "224.0.0.251");
    assert_eq!(mdns["dst_mac"], "01:00:5e:00:00:fb");
    assert_eq!(mdns["device"], device);

    let query = find(&records, |r| r["proto"] == "udp" && r["dst_port"] == 53);
    assert_eq!(query["src_ip"], lab.ns_ip.to_string());
    assert_eq!(query["dst_ip"], lab.host_ip.to_string());
    assert_eq!(query["app_proto"], "dns");
    assert_eq!(
        (&query["pkts_out"], &query["pkts_in"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(
        query["dns"]["queries"],
        json!([{"name": HTTP_HOST, "type": "A"}])
    );
    assert_eq!(query["dns"]["answers"][0]["data"], ANSWER.to_string());
    assert_eq!(query["src_mac"], lab.ns_mac.as_str());
    assert_eq!(query["device"], device);

    let http = find(&records, |r| {
        r["proto"] == "tcp" && r["dst_port"] == http_port
    });
    assert_eq!(http["src_ip"], lab.ns_ip.to_string());
    assert_eq!(http["app_proto"], "http");
    assert_eq!(http["http"]["host"], HTTP_HOST);
    assert_eq!(http["http"]["path"], "/status");
    assert_eq!(http["tcp_state"], "closed");
    assert_eq!(http["device"], device);

    // Flows still open at the signal are written with the reason a user reads.
    assert_eq!(http["end"], "end_of_capture");
    assert!(stderr.contains("flows       "), "{stderr}");
    assert!(stderr.contains("1 named"), "{stderr}");
}

#[test]
fn a_device_named_by_dhcp_is_the_client_of_its_flows_appended_to_a_file() {
    if !root_tests() {
        println!("{SKIP}");
        return;
    }
    let lab = Lab::new("sensor", 1);
    let name = format!("printer-{}", std::process::id());
    let (http, http_port) = http_server(lab.host_ip);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    std::fs::write(&file, "{\"earlier\":true}\n").unwrap();
    let sensor = Sensor::start(&lab.host_if, Some(&file));

    lab.device(
        DHCP_HTTP,
        &[
            &name,
            &lab.host_ip.to_string(),
            &http_port.to_string(),
            &lab.ns_if,
            &lab.ns_mac,
            &lab.ns_ip.to_string(),
        ],
    );
    http.join().unwrap();
    let (status, stdout, stderr) = sensor.stop();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stdout.is_empty(), "records go to the file: {stdout}");
    let records = json_lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(
        records[0],
        json!({"earlier": true}),
        "the file is appended to"
    );

    let dhcp = find(&records, |r| r["src_port"] == 68 && r["dst_port"] == 67);
    assert_eq!(dhcp["dst_ip"], "255.255.255.255");
    assert_eq!(dhcp["dst_mac"], "ff:ff:ff:ff:ff:ff");

    let http = find(&records, |r| {
        r["proto"] == "tcp" && r["dst_port"] == http_port
    });
    assert_eq!(http["app_proto"], "http");
    assert_eq!(http["http"]["host"], HTTP_HOST);
    assert_eq!(
        http["device"],
        json!({"mac": &lab.ns_mac, "ip": lab.ns_ip.to_string(), "hostname": &name})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_managed_sensor_ships_its_flows_to_its_server_and_keeps_its_identity() {
    if !root_tests() {
        println!("{SKIP}");
        return;
    }
    let lab = Lab::new("sensor", 2);
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    std::fs::create_dir(&server_dir).unwrap();
    let node = Node::start(
        &server_dir,
        None,
        ("127.0.0.1:0", "127.0.0.1:0"),
        dir.path().join("server.log"),
    );
    let token = node.enrollment_token().await;
    let data = dir.path().join("sensor");
    let data = data.to_str().unwrap();
    let ca = node.ca.to_str().unwrap();
    let host = lab.host_ip.to_string();

    // First start: enrolls with the token.
    let (http, http_port) = http_server(lab.host_ip);
    let (sensor, before) = Sensor::start_with(
        &lab.host_if,
        &[
            "--server",
            &node.grpc,
            "--enroll-token",
            &token,
            "--ca",
            ca,
            "--data",
            data,
        ],
    );
    assert!(
        before.iter().any(|l| l.contains("enrolled as ")),
        "{before:?}"
    );
    lab.device(HTTP, &[&host, &http_port.to_string()]);
    let client = http.join().unwrap();
    let (status, stdout, stderr) = sensor.stop();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stdout.is_empty(), "records go to the server: {stdout}");
    assert!(!stderr.contains("stay in the spool"), "{stderr}");

    let agents = node.get("/api/v1/agents").await;
    assert_eq!(agents.as_array().unwrap().len(), 1, "{agents}");
    let sensor_id = agents[0]["id"].as_str().unwrap().to_owned();
    let event = stored_flow(&node, &sensor_id, http_port).await;
    let conn = &event["connection"];
    assert_eq!(conn["src_ip"], lab.ns_ip.to_string(), "{event}");
    assert_eq!(conn["src_port"], client.port(), "{event}");
    assert_eq!(conn["dst_ip"], host.as_str(), "{event}");
    assert_eq!(conn["protocol"], "tcp", "{event}");
    assert_eq!(conn["direction"], "outbound", "{event}");
    assert_eq!(conn["domain"], HTTP_HOST, "{event}");
    assert_eq!(event["http_host"], HTTP_HOST, "{event}");
    assert!(conn.get("app_path").is_none(), "{event}");
    assert_eq!(event["action"], "allow", "{event}");
    let traffic = &event["traffic"];
    // The request (headers and all) went out, the answer came in, both with the handshake.
    assert!(traffic["bytes_out"].as_u64() > Some(100), "{event}");
    assert!(traffic["bytes_in"].as_u64() > Some(60), "{event}");
    assert!(traffic["packets_out"].as_u64() >= Some(3), "{event}");
    assert!(traffic["packets_in"].as_u64() >= Some(2), "{event}");

    // Second start: the identity kept in --data is enough, no token and no CA.
    let (http, http_port) = http_server(lab.host_ip);
    let (sensor, before) =
        Sensor::start_with(&lab.host_if, &["--server", &node.grpc, "--data", data]);
    assert!(
        !before.iter().any(|l| l.contains("enrolled as ")),
        "{before:?}"
    );
    lab.device(HTTP, &[&host, &http_port.to_string()]);
    http.join().unwrap();
    // Its heartbeats carry the sensor's counters.
    let until = after(Duration::from_secs(20));
    loop {
        let about = node.get(&format!("/api/v1/agents/{sensor_id}")).await;
        if about["counters"]["frames"].is_u64() && about["counters"]["spool_pending"].is_u64() {
            break;
        }
        assert!(!passed(until), "no heartbeat with the counters: {about}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _, stderr) = sensor.stop();
    assert!(status.success(), "{status}: {stderr}");
    let event = stored_flow(&node, &sensor_id, http_port).await;
    assert_eq!(event["connection"]["src_ip"], lab.ns_ip.to_string());
    let agents = node.get("/api/v1/agents").await;
    assert_eq!(
        agents.as_array().unwrap().len(),
        1,
        "enrolled again: {agents}"
    );
}

/// The event that `sensor` sent for the flow to port `port`, once the server stored it.
async fn stored_flow(node: &Node, sensor: &str, port: u16) -> Value {
    let until = after(Duration::from_secs(20));
    loop {
        let events = node.get(&format!("/api/v1/events?agent={sensor}")).await;
        let found: Vec<&Value> = events["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["connection"]["dst_port"] == port)
            .collect();
        if let [event] = found.as_slice() {
            return (*event).clone();
        }
        assert!(found.len() < 2, "one flow, reported twice: {events}");
        assert!(
            !passed(until),
            "the flow to port {port} never reached the server: {events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn capturing_needs_root_or_cap_net_raw() {
    if !root_tests() {
        println!("{SKIP}");
        return;
    }
    // As nobody, without capabilities.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .args([
            env!("CARGO_BIN_EXE_palisade"),
            "sensor",
            "--interface",
            "lo",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("capturing on lo needs root or the CAP_NET_RAW capability"),
        "{stderr}"
    );
}

#[test]
fn a_non_ethernet_interface_is_refused_with_exit_2() {
    if !root_tests() {
        println!("{SKIP}");
        return;
    }
    let tun = format!("ptun{}", std::process::id());
    let _cleanup = Cleanup(vec![vec!["link".into(), "del".into(), tun.clone()]]);
    ip(&["tuntap", "add", "dev", &tun, "mode", "tun"]);
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["sensor", "--interface", &tun])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("interface {tun} is not Ethernet")),
        "{stderr}"
    );
}

/// Sent from inside the namespace: an mDNS response naming the device (argv 1) at its own
/// address, a DNS query for HTTP_HOST to the host end (argv 2) port 53, an HTTP request to the
/// host end's port argv 3.
const MDNS_DNS_HTTP: &str = r#"
import socket, struct, sys
name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
me = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
me.connect((host, 9))
my_ip = me.getsockname()[0]

def qname(n):
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"

mdns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
mdns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
mdns.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(my_ip))
mdns.bind(("0.0.0.0", 5353))
answer = qname(name) + struct.pack("!HHIH", 1, 0x8001, 120, 4) + socket.inet_aton(my_ip)
mdns.sendto(struct.pack("!6H", 0, 0x8400, 0, 1, 0, 0) + answer, ("224.0.0.251", 5353))

dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.settimeout(5)
dns.sendto(struct.pack("!6H", 0x4242, 0x0100, 1, 0, 0, 0) + qname("device-test.example") + struct.pack("!HH", 1, 1), (host, 53))
reply = dns.recv(512)
assert reply[:2] == b"\x42\x42", reply

http = socket.create_connection((host, port), timeout=5)
http.sendall(b"GET /status HTTP/1.1\r\nHost: device-test.example\r\nUser-Agent: sensor-test\r\n\r\n")
while http.recv(4096):
    pass
http.close()
"#;

/// Sent from inside the namespace: an HTTP request for HTTP_HOST to the host end (argv 1) port
/// argv 2.
const HTTP: &str = r#"
import socket, sys
http = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
http.sendall(b"GET /status HTTP/1.1\r\nHost: device-test.example\r\nUser-Agent: sensor-test\r\n\r\n")
while http.recv(4096):
    pass
http.close()
"#;

/// Sent from inside the namespace: a DHCPREQUEST broadcast on interface argv 4 with MAC argv 5,
/// naming the device argv 1 and asking for its address argv 6; then an HTTP request to the host
/// end (argv 2) port argv 3.
const DHCP_HTTP: &str = r#"
import socket, sys
name, host, port, ifname, mac, my_ip = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
msg = bytearray(240)
msg[0:4] = bytes([1, 1, 6, 0])
msg[4:8] = b"\x12\x34\x56\x78"
msg[28:34] = bytes.fromhex(mac.replace(":", ""))
msg[236:240] = bytes([99, 130, 83, 99])
msg += bytes([53, 1, 3, 50, 4]) + socket.inet_aton(my_ip)
msg += bytes([12, len(name)]) + name.encode() + bytes([255])
dhcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dhcp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
dhcp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
dhcp.bind(("0.0.0.0", 68))
dhcp.sendto(bytes(msg), ("255.255.255.255", 67))

http = socket.create_connection((host, port), timeout=5)
http.sendall(b"GET / HTTP/1.1\r\nHost: device-test.example\r\n\r\n")
while http.recv(4096):
    pass
http.close()
"#;

/// A running sensor, killed on drop if a test fails before stopping it.
struct Sensor {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Sensor {
    /// Starts `palisade sensor` on `interface` and waits until it says it is capturing, which
    /// must be the first thing it says.
    fn start(interface: &str, output: Option<&Path>) -> Sensor {
        let output = output.map(|path| path.to_str().unwrap());
        let args = match output {
            Some(path) => vec!["--output", path],
            None => Vec::new(),
        };
        let (sensor, before) = Sensor::start_with(interface, &args);
        assert!(before.is_empty(), "{before:?}");
        sensor
    }

    /// Starts `palisade sensor` on `interface` with `args` and waits until it says it is
    /// capturing; returns what it said before.
    fn start_with(interface: &str, args: &[&str]) -> (Sensor, Vec<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["sensor", "--interface", interface])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let sensor = Sensor { child, stderr };
        let mut before = Vec::new();
        loop {
            let line = sensor
                .stderr
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("{e}: no capture started after {before:?}"));
            if line.starts_with(&format!("palisade sensor: capturing on {interface}")) {
                return (sensor, before);
            }
            before.push(line);
        }
    }

    /// Sends SIGTERM once the last frames are in, and returns how the sensor exited, its
    /// standard output and the rest of its standard error.
    fn stop(mut self) -> (ExitStatus, String, String) {
        thread::sleep(Duration::from_secs(1));
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        // Up to 20 s, in steps of 50 ms.
        let mut status = None;
        for _ in 0..400 {
            status = self.child.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let status = status.expect("the sensor exits within 20 s of SIGTERM");
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (status, stdout, stderr.join("\n"))
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Answers one DNS query on `ip` port 53 with [`ANSWER`].
fn dns_server(ip: Ipv4Addr) -> thread::JoinHandle<()> {
    let socket = UdpSocket::bind((ip, 53)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (len, from) = socket.recv_from(&mut buf).unwrap();
        let mut reply = buf[..len].to_vec();
        reply[2] |= 0x80; // QR: a response
        reply[7] = 1; // one answer
        reply.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend(ANSWER.octets());
        socket.send_to(&reply, from).unwrap();
    })
}

/// Answers one HTTP request on `ip`, on a port of its own choosing (returned); the thread returns
/// the client's address.
fn http_server(ip: Ipv4Addr) -> (thread::JoinHandle<SocketAddr>, u16) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut stream, client) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut request: Vec<u8> = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the request ended early");
            request.extend(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .unwrap();
        client
    });
    (handle, port)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The one record that `matches`.
fn find(records: &[Value], matches: impl Fn(&Value) -> bool) -> &Value {
    let found: Vec<&Value> = records.iter().filter(|r| matches(r)).collect();
    assert_eq!(found.len(), 1, "records: {records:#?}");
    found[0]
}
