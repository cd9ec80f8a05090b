//! The agent's own firewall chains on Linux: the only change it makes to the kernel's rules.
//!
//! Two chains, `PALISADE-OUT` (jumped to first from `OUTPUT`) and `PALISADE-IN` (first from
//! `INPUT`), in the `filter` table of IPv4 and IPv6, installed with `iptables-restore` so each
//! family changes at once. Nothing else is touched; [`remove`] deletes exactly these chains and
//! jumps, and [`Chains::install`] first removes whatever a crashed agent left.
//!
//! How a connection is decided (the pattern of keeping verdicts in the connection mark):
//! 1. the first packet of a new connection (conntrack state `NEW`) goes to an NFQUEUE queue;
//! 2. the agent answers `REPEAT` with the verdict in the packet mark ([`mark`]), so the packet
//!    runs through the chain again and the mark is saved in the connection mark;
//! 3. every later packet matches its connection mark in the kernel: allowed connections go on
//!    through the rest of the host's rules, blocked ones are dropped or rejected.
//!
//! The first data packets of allowed outbound TCP connections are also copied to an NFLOG group
//! ([`NAMES_GROUP`], read by [`crate::nflog`]) so the agent learns the TLS server name or HTTP
//! host each one asks for. NFLOG does not hold the packet: the kernel copies its first
//! [`COPY_LEN`] bytes and lets it go on, whether or not anyone reads the group. Which packets:
//! conntrack counts each packet of the original direction before the filter table sees it, so
//! at `OUTPUT` the SYN is packet 1, the client's handshake ACK packet 2 and the first data packet
//! 3; packets 3 and 4 are copied (the second one may be a bare ACK, or the rest of a request
//! split in two), unless they carry no data (no longer than the longest bare IP and TCP
//! headers) or close or reset it: a connection that sends nothing has nothing to name, and its
//! FIN or bare ACK would be packet 3. Counting needs conntrack accounting, which the `connbytes` match switches on;
//! connections tracked before it was on are not counted and not copied. Only the original
//! direction is copied (`--ctdir ORIGINAL`), so the answers of a server on this host to a local
//! client are not.
//!
//! Without a listener on a queue the kernel lets new connections through when the policy fails
//! open (`--queue-bypass`) and drops them when it fails closed. DNS responses (source port 53,
//! answering a query this host sent: conntrack state `ESTABLISHED`, so a forged "answer" nobody
//! asked for teaches the agent nothing) go to a queue of their own and are always let through
//! when nobody listens.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use palisade_policy::model::Fail;

use crate::intercept::Enforcement;
use crate::nflog::COPY_LEN;

/// The bits of the packet and connection marks the agent uses; other software may use the rest.
pub const MARK_MASK: u32 = 0x0c00_0000;

/// The mark that carries an enforcement from the agent to the kernel.
pub fn mark(enforcement: Enforcement) -> u32 {
    match enforcement {
        Enforcement::Allow => 0x0400_0000,
        Enforcement::Drop => 0x0800_0000,
        Enforcement::Reject => 0x0c00_0000,
    }
}

/// The NFLOG group that receives copies of the first data packets of allowed outbound TCP
/// connections (see the module documentation).
pub const NAMES_GROUP: u16 = 0x5041;

/// Which packets of a connection's original direction are copied to [`NAMES_GROUP`], as
/// conntrack counts them (the SYN is 1).
const NAMED_PACKETS: &str = "3:4";

const OUT: &str = "PALISADE-OUT";
const IN: &str = "PALISADE-IN";

/// An IP version, for the two rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`iptables`).
    V4,
    /// IPv6 (`ip6tables`).
    V6,
}

impl Family {
    fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// The longest packet without payload: an IP header without options and a TCP header with
    /// the most options. Longer packets carry data (or IP options, rarely).
    fn longest_bare_tcp(self) -> u16 {
        match self {
            Family::V4 => 20 + 60,
            Family::V6 => 40 + 60,
        }
    }

    fn unreachable(self) -> &'static str {
        match self {
            Family::V4 => "icmp-port-unreachable",
            Family::V6 => "icmp6-port-unreachable",
        }
    }
}

/// What the chains send to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chains {
    /// Queues for new connections: `first_queue .. first_queue + queues`, spread by flow.
    pub first_queue: u16,
    /// How many connection queues (at least 1).
    pub queues: u16,
    /// The queue for DNS responses.
    pub dns_queue: u16,
    /// Whether new connections pass or are dropped while no agent listens.
    pub fail: Fail,
    /// Whether new inbound connections are decided too (when the policy has inbound rules).
    pub inbound: bool,
}

impl Chains {
    /// The `iptables-restore` input for one family: both chains (created, or emptied when they
    /// exist) with their rules, and the jumps to them when `jumps`.
    pub fn script(&self, family: Family, jumps: bool) -> String {
        let mut s = String::from("*filter\n");
        s += &format!(":{OUT} - [0:0]\n:{IN} - [0:0]\n");
        let queue = self.queue_target();
        self.verdict_rules(&mut s, OUT, family, true);
        s += &format!("-A {OUT} -m conntrack --ctstate NEW -j {queue}\n");
        for protocol in ["udp", "tcp"] {
            s += &format!(
                "-A {IN} -p {protocol} --sport 53 -m conntrack --ctstate ESTABLISHED -j NFQUEUE --queue-num {} --queue-bypass\n",
                self.dns_queue
            );
        }
        if self.inbound {
            self.verdict_rules(&mut s, IN, family, false);
            s += &format!("-A {IN} -m conntrack --ctstate NEW -j {queue}\n");
        }
        if jumps {
            s += &format!("-I OUTPUT 1 -j {OUT}\n-I INPUT 1 -j {IN}\n");
        }
        s += "COMMIT\n";
        s
    }

    /// Removes any chains left by an earlier agent, then installs these, IPv4 and IPv6.
    pub fn install(&self) -> io::Result<()> {
        remove()?;
        for family in [Family::V4, Family::V6] {
            restore(family, &self.script(family, true))?;
        }
        Ok(())
    }

    /// Replaces the rules of chains this agent installed, each family in one transaction, so no
    /// new connection slips through undecided while they change.
    pub fn replace(&self) -> io::Result<()> {
        for family in [Family::V4, Family::V6] {
            restore(family, &self.script(family, false))?;
        }
        Ok(())
    }

    fn queue_target(&self) -> String {
        let bypass = match self.fail {
            Fail::Open => " --queue-bypass",
            Fail::Closed => "",
        };
        match self.queues {
            0 | 1 => format!("NFQUEUE --queue-num {}{bypass}", self.first_queue),
            n => format!(
                "NFQUEUE --queue-balance {}:{}{bypass}",
                self.first_queue,
                self.first_queue.saturating_add(n - 1)
            ),
        }
    }

    /// The rules that apply a decided connection's verdict, and before an allowed one's
    /// `RETURN`, when `names`, the copy of its first data packets to [`NAMES_GROUP`].
    fn verdict_rules(&self, s: &mut String, chain: &str, family: Family, names: bool) {
        let m = |e| format!("{:#x}/{MARK_MASK:#x}", mark(e));
        *s += &format!(
            "-A {chain} -m mark ! --mark 0x0/{MARK_MASK:#x} -j CONNMARK --save-mark --nfmask {MARK_MASK:#x} --ctmask {MARK_MASK:#x}\n"
        );
        if names {
            *s += &format!(
                "-A {chain} -p tcp --tcp-flags SYN,FIN,RST NONE -m length --length {}:65535 -m connmark --mark {} -m conntrack --ctdir ORIGINAL -m connbytes --connbytes {NAMED_PACKETS} --connbytes-dir original --connbytes-mode packets -j NFLOG --nflog-group {NAMES_GROUP} --nflog-size {COPY_LEN}\n",
                family.longest_bare_tcp() + 1,
                m(Enforcement::Allow)
            );
        }
        *s += &format!(
            "-A {chain} -m connmark --mark {} -j RETURN\n",
            m(Enforcement::Allow)
        );
        *s += &format!(
            "-A {chain} -m connmark --mark {} -j DROP\n",
            m(Enforcement::Drop)
        );
        // The reset or ICMP error a REJECT sends belongs to the refused connection (conntrack
        // state RELATED); it must reach the application, not be refused in turn.
        *s += &format!(
            "-A {chain} -m connmark --mark {} -m conntrack --ctstate RELATED -j RETURN\n",
            m(Enforcement::Reject)
        );
        *s += &format!(
            "-A {chain} -p tcp -m connmark --mark {} -j REJECT --reject-with tcp-reset\n",
            m(Enforcement::Reject)
        );
        *s += &format!(
            "-A {chain} -m connmark --mark {} -j REJECT --reject-with {}\n",
            m(Enforcement::Reject),
            family.unreachable()
        );
    }
}

/// Deletes the agent's chains and the jumps to them, IPv4 and IPv6; absent chains are fine.
pub fn remove() -> io::Result<()> {
    for family in [Family::V4, Family::V6] {
        for (builtin, chain) in [("OUTPUT", OUT), ("INPUT", IN)] {
            while iptables(family, &["-D", builtin, "-j", chain])? {}
            if iptables(family, &["-F", chain])? {
                iptables(family, &["-X", chain])?;
            }
        }
    }
    Ok(())
}

/// Whether the agent's outbound chain exists (IPv4).
pub fn installed() -> io::Result<bool> {
    iptables(Family::V4, &["-S", OUT])
}

/// Runs one `iptables` command: `Ok(false)` when it ran and failed (a chain or rule that is not
/// there), an error when it could not run at all.
fn iptables(family: Family, args: &[&str]) -> io::Result<bool> {
    let status = Command::new(family.tool())
        .arg("-w")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", family.tool())))?;
    Ok(status.success())
}

fn restore(family: Family, script: &str) -> io::Result<()> {
    let tool = format!("{}-restore", family.tool());
    let mut child = Command::new(&tool)
        .args(["--noflush", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {tool}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{tool} refused the agent's chains: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chains(fail: Fail, queues: u16, inbound: bool) -> Chains {
        Chains {
            first_queue: 0,
            queues,
            dns_queue: 9,
            fail,
            inbound,
        }
    }

    #[test]
    fn failing_open_bypasses_the_queue_and_failing_closed_does_not() {
        let open = chains(Fail::Open, 1, false).script(Family::V4, true);
        assert!(
            open.contains("-j NFQUEUE --queue-num 0 --queue-bypass"),
            "{open}"
        );
        let closed = chains(Fail::Closed, 2, false).script(Family::V4, true);
        assert!(
            closed.contains("-j NFQUEUE --queue-balance 0:1\n"),
            "{closed}"
        );
    }

    #[test]
    fn inbound_connections_are_queued_only_when_asked() {
        let out_only = chains(Fail::Open, 1, false).script(Family::V6, true);
        assert!(!out_only.contains("-A PALISADE-IN -m conntrack --ctstate NEW"));
        let both = chains(Fail::Open, 1, true).script(Family::V6, true);
        assert!(both.contains("-A PALISADE-IN -m conntrack --ctstate NEW"));
        assert!(both.contains("icmp6-port-unreachable"));
    }

    #[test]
    fn only_answers_to_this_hosts_queries_reach_the_dns_queue() {
        let script = chains(Fail::Open, 1, false).script(Family::V4, true);
        let dns: Vec<&str> = script
            .lines()
            .filter(|l| l.contains("--sport 53"))
            .collect();
        assert_eq!(dns.len(), 2, "{script}");
        for rule in dns {
            assert!(
                rule.contains("--ctstate ESTABLISHED -j NFQUEUE --queue-num 9"),
                "{rule}"
            );
        }
    }

    #[test]
    fn first_data_packets_of_allowed_outbound_tcp_are_copied_before_they_return() {
        for family in [Family::V4, Family::V6] {
            let script = chains(Fail::Open, 1, true).script(family, true);
            let lines: Vec<&str> = script.lines().collect();
            let copies: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].contains("-j NFLOG"))
                .collect();
            assert_eq!(copies.len(), 1, "{script}");
            let copy = lines[copies[0]];
            assert!(copy.starts_with("-A PALISADE-OUT -p tcp "), "{copy}");
            for part in [
                "-m connmark --mark 0x4000000/0xc000000 ",
                "--ctdir ORIGINAL ",
                "--tcp-flags SYN,FIN,RST NONE ",
                &format!(
                    "-m length --length {}:65535 ",
                    family.longest_bare_tcp() + 1
                ),
                "--connbytes 3:4 --connbytes-dir original --connbytes-mode packets ",
                "--nflog-group 20545 --nflog-size 4096",
            ] {
                assert!(copy.contains(part), "{part} missing from {copy}");
            }
            let allowed_return = lines
                .iter()
                .position(|l| {
                    l.starts_with(
                        "-A PALISADE-OUT -m connmark --mark 0x4000000/0xc000000 -j RETURN",
                    )
                })
                .unwrap();
            let saved = lines
                .iter()
                .position(|l| l.starts_with("-A PALISADE-OUT -m mark ! --mark"))
                .unwrap();
            assert!(saved < copies[0] && copies[0] < allowed_return, "{script}");
        }
    }

    #[test]
    fn marks_differ_and_stay_inside_the_mask() {
        let marks = [Enforcement::Allow, Enforcement::Drop, Enforcement::Reject].map(mark);
        for (i, m) in marks.iter().enumerate() {
            assert_eq!(m & !MARK_MASK, 0);
            assert_ne!(*m, 0);
            assert!(!marks.iter().skip(i + 1).any(|other| other == m));
        }
    }
}
