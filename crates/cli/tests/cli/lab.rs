//! A network namespace joined to the host by a veth pair, for the tests that need root: the
//! sensor captures on the host end, the agent runs inside the namespace.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// A network namespace holding one end of a veth pair (the device), the other end on the host
/// (where the sensor captures), each with an address of a /30 of its own. Removed on drop.
pub struct Lab {
    pub ns: String,
    pub host_if: String,
    pub ns_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
    pub ns_mac: String,
    _cleanup: Cleanup,
}

impl Lab {
    /// The lab of test number `test` (0..4) of this process, for the tests of `role`
    /// (`sensor`, `agent`: each has addresses of its own).
    pub fn new(role: &str, test: u32) -> Lab {
        let pid = std::process::id();
        let ns = format!("palisade-{role}-{pid}-{test}");
        let letter = role.chars().next().unwrap_or('x');
        let host_if = format!("p{letter}h{pid}{test}");
        let ns_if = format!("p{letter}n{pid}{test}");
        let second = if role == "sensor" { 250 } else { 251 };
        // 10.250.0.0/16 (sensor) or 10.251.0.0/16 cut into /30s, one per process and test.
        let n = (pid % 4096) * 4 + test;
        let base = u8::try_from((n & 63) << 2).unwrap();
        let third = u8::try_from(n >> 6).unwrap();
        let host_ip = Ipv4Addr::new(10, second, third, base + 1);
        let ns_ip = Ipv4Addr::new(10, second, third, base + 2);
        let [p0, p1, p2, p3] = pid.to_be_bytes();
        let ns_mac = format!(
            "02:{:02x}:{p0:02x}:{p1:02x}:{p2:02x}:{:02x}",
            0x50 + test,
            p3
        );
        // The namespace is removed first: that removes the veth pair with it.
        let cleanup = Cleanup(vec![
            vec!["netns".into(), "del".into(), ns.clone()],
            vec!["link".into(), "del".into(), host_if.clone()],
        ]);
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns, "ip"];
            all.extend(args);
            ip(&all);
        };
        in_ns(&["link", "set", &ns_if, "address", &ns_mac]);
        in_ns(&["addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        in_ns(&["link", "set", &ns_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        Lab {
            ns,
            host_if,
            ns_if,
            host_ip,
            ns_ip,
            ns_mac,
            _cleanup: cleanup,
        }
    }

    /// Runs a Python `script` with `args` inside the namespace, as the device.
    pub fn device(&self, script: &str, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", script])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the device's traffic failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `ip` commands run on drop, whatever their outcome: removes what a test created.
pub struct Cleanup(pub Vec<Vec<String>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in &self.0 {
            let _ = Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
