//! The netlink socket that receives conntrack events, and the sysctl switch that makes the
//! kernel put counters in them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::parse::event;
use super::{CtError, CtEvent};
use crate::netlink::Messages;

/// A receive buffer that holds any single datagram the kernel sends on these groups.
pub const RECV_BUFFER_LEN: usize = 64 * 1024;

/// The socket receive buffer asked for, in bytes; the kernel caps it at `net.core.rmem_max`.
/// A large buffer rides out bursts of short connections without losing events.
const SOCKET_BUFFER_BYTES: i32 = 8 * 1024 * 1024;

/// Which events to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Groups {
    /// New connections (`NFNLGRP_CONNTRACK_NEW`).
    pub new: bool,
    /// Ended connections with their counters (`NFNLGRP_CONNTRACK_DESTROY`).
    pub destroy: bool,
}

impl Groups {
    /// Both new and ended connections.
    pub const ALL: Groups = Groups {
        new: true,
        destroy: true,
    };
}

/// A netlink socket subscribed to conntrack events in the current network namespace.
///
/// Opening it needs `CAP_NET_ADMIN`. It blocks in [`Listener::recv`] unless made non-blocking;
/// its file descriptor ([`AsFd`]) can be registered with an event loop.
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    overflows: u64,
    malformed: u64,
}

impl Listener {
    /// Opens the socket, joins the chosen groups and enlarges its receive buffer.
    pub fn open(groups: Groups) -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind(&SocketAddr::new(0, 0))?;
        socket.set_rx_buf_sz(SOCKET_BUFFER_BYTES)?;
        if groups.new {
            socket.add_membership(NFNLGRP_CONNTRACK_NEW)?;
        }
        if groups.destroy {
            socket.add_membership(NFNLGRP_CONNTRACK_DESTROY)?;
        }
        Ok(Listener {
            socket,
            overflows: 0,
            malformed: 0,
        })
    }

    /// Makes [`Listener::recv`] return [`io::ErrorKind::WouldBlock`] instead of waiting.
    pub fn set_non_blocking(&self, non_blocking: bool) -> io::Result<()> {
        self.socket.set_non_blocking(non_blocking)
    }

    /// Makes [`Listener::recv`] give up waiting after `timeout` (with
    /// [`io::ErrorKind::WouldBlock`]); `None` waits for ever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        socket2::SockRef::from(self).set_read_timeout(timeout)
    }

    /// Receives one datagram into `buf` and returns its events (possibly none), waiting for one
    /// if the socket blocks. `buf` should be [`RECV_BUFFER_LEN`] bytes long.
    ///
    /// When the kernel reports that it dropped events because the socket's buffer was full, the
    /// report is counted ([`Listener::overflows`]) and receiving goes on. Datagrams not sent by
    /// the kernel are ignored; malformed messages are counted ([`Listener::malformed`]) and
    /// skipped.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Vec<CtEvent>> {
        loop {
            let mut space: &mut [u8] = buf;
            let (len, from) = match self.socket.recv_from(&mut space, 0) {
                Ok(received) => received,
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.overflows = self.overflows.saturating_add(1);
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if from.port_number() != 0 {
                continue;
            }
            let datagram = buf.get(..len).unwrap_or(buf);
            return Ok(events(datagram, &mut self.malformed));
        }
    }

    /// How many times the kernel reported dropping events for this socket (`ENOBUFS`); each
    /// report stands for one or more lost events.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// How many malformed messages were skipped.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Turns on conntrack accounting (`net.netfilter.nf_conntrack_acct`) in the current network
/// namespace, so that ended connections carry packet and byte counters. Only entries made
/// afterwards are counted. Fails without privilege or when conntrack is not loaded.
pub fn enable_accounting() -> io::Result<()> {
    std::fs::write("/proc/sys/net/netfilter/nf_conntrack_acct", b"1\n")
}

/// The events of a datagram from the kernel; a malformed message is counted in `malformed` and
/// skipped, and one whose framing is broken ends the datagram.
fn events(datagram: &[u8], malformed: &mut u64) -> Vec<CtEvent> {
    let mut events = Vec::new();
    for message in Messages::new(datagram) {
        match message
            .map_err(CtError::from)
            .and_then(|message| event(&message))
        {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {}
            Err(_) => *malformed = malformed.saturating_add(1),
        }
    }
    events
}

const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

#[cfg(test)]
mod tests {
    //! Live tests against the kernel of the machine running them: they need root, `nft` and
    //! the `conntrack` tool, and skip (saying why) without them.

    use std::io::{Read, Write};
    use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
    use std::process::Command;
    use std::time::Duration;

    use palisade_proto::Direction;

    use super::*;
    use crate::conntrack::Tuple;

    /// An nftables table whose rule makes the kernel track connections in this namespace, for
    /// as long as it exists.
    struct Tracking {
        table: String,
    }

    impl Tracking {
        fn start(tag: &str) -> Tracking {
            let table = format!("palisade_test_{}_{tag}", std::process::id());
            let rules = format!(
                "table inet {table} {{\n chain out {{\n type filter hook output priority 0;\n \
                 ct state new counter\n }}\n}}\n"
            );
            let status = Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut nft| {
                    nft.stdin.take().unwrap().write_all(rules.as_bytes())?;
                    nft.wait()
                });
            assert!(status.unwrap().success(), "nft refused {rules}");
            Tracking { table }
        }
    }

    impl Drop for Tracking {
        fn drop(&mut self) {
            let _ = Command::new("nft")
                .args(["delete", "table", "inet", &self.table])
                .status();
        }
    }

    /// Why the live tests cannot run here, if they cannot.
    /// Why these tests cannot run: they need root and the `conntrack` and `nft` tools, and
    /// run only when asked (`PALISADE_TEST_PRIVILEGED=1`, as CI does); asked, they must run.
    fn unavailable() -> Option<String> {
        if std::env::var("PALISADE_TEST_PRIVILEGED").as_deref() != Ok("1") {
            return Some("set PALISADE_TEST_PRIVILEGED=1 (as root) to run it".into());
        }
        None
    }

    /// Receives until `wanted` picks an event, for up to five seconds.
    fn wait_for(listener: &mut Listener, wanted: impl Fn(&CtEvent) -> bool) -> Option<CtEvent> {
        let mut buf = vec![0; RECV_BUFFER_LEN];
        for _ in 0..250 {
            match listener.recv(&mut buf) {
                Ok(events) => {
                    if let Some(event) = events.into_iter().find(|e| wanted(e)) {
                        return Some(event);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => panic!("recv: {error}"),
            }
        }
        None
    }

    /// Runs the conntrack tool on the TCP entry from `src` to `dst`.
    fn conntrack(action: &[&str], src: SocketAddr, dst: SocketAddr) {
        let status = Command::new("conntrack")
            .args(action)
            .args(["-p", "tcp", "--orig-src", &src.ip().to_string()])
            .args(["--orig-dst", &dst.ip().to_string()])
            .args(["--orig-port-src", &src.port().to_string()])
            .args(["--orig-port-dst", &dst.port().to_string()])
            .output()
            .unwrap();
        assert!(status.status.success(), "conntrack {action:?}: {status:?}");
    }

    #[test]
    fn a_malformed_message_is_counted_and_the_rest_of_the_datagram_still_read() {
        use crate::conntrack::parse::tests::{destroy_v4, message, tuple_attr};
        let no_id = message(
            2,
            0,
            2,
            &[tuple_attr(
                "10.0.0.5:1".parse().unwrap(),
                "10.0.0.6:2".parse().unwrap(),
                6,
            )],
        );
        let mut malformed = 0;
        let datagram = [destroy_v4(1), no_id, destroy_v4(3)].concat();
        let read = events(&datagram, &mut malformed);
        assert_eq!(malformed, 1);
        assert_eq!(read.len(), 2);
        assert!(matches!(read[1], CtEvent::Destroy { id: 3, .. }));
    }

    fn is_loopback(ip: IpAddr) -> bool {
        ip.is_loopback()
    }

    #[test]
    fn a_new_tcp_connection_gives_a_new_event_with_its_outbound_key() {
        if let Some(reason) = unavailable() {
            println!("skipped: {reason}");
            return;
        }
        let mut listener = Listener::open(Groups {
            new: true,
            destroy: false,
        })
        .unwrap();
        listener.set_non_blocking(true).unwrap();
        let _tracking = Tracking::start("new");

        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = server.local_addr().unwrap();
        let client = TcpStream::connect(dst).unwrap();
        let src = client.local_addr().unwrap();
        let expected = Tuple {
            protocol: 6,
            src,
            dst,
        };

        let event = wait_for(
            &mut listener,
            |event| matches!(event, CtEvent::New { orig, .. } if *orig == expected),
        )
        .expect("no NEW event for the connection within 5 s");
        let CtEvent::New { orig, .. } = event else {
            unreachable!()
        };
        let key = orig.flow_key(&is_loopback).unwrap();
        assert_eq!(key.direction, Direction::Outbound);
        assert_eq!((key.local, key.remote), (src, dst));
        drop(client);
        conntrack(&["-D"], src, dst);
    }

    #[test]
    fn a_deleted_tcp_connection_gives_its_counters_mark_and_times() {
        if let Some(reason) = unavailable() {
            println!("skipped: {reason}");
            return;
        }
        enable_accounting().unwrap();
        std::fs::write("/proc/sys/net/netfilter/nf_conntrack_timestamp", b"1\n").unwrap();
        let mut listener = Listener::open(Groups {
            new: false,
            destroy: true,
        })
        .unwrap();
        listener.set_non_blocking(true).unwrap();
        let _tracking = Tracking::start("destroy");

        const SENT: usize = 100_000;
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = server.local_addr().unwrap();
        let mut client = TcpStream::connect(dst).unwrap();
        let src = client.local_addr().unwrap();
        let (mut accepted, _) = server.accept().unwrap();
        client.write_all(&[7; SENT]).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut received = Vec::new();
        accepted.read_to_end(&mut received).unwrap();
        assert_eq!(received.len(), SENT);
        accepted.write_all(b"done").unwrap();
        drop(accepted);
        drop(client);

        // The closed connection would stay in TIME_WAIT for two minutes; mark it as the agent
        // marks its verdicts, then delete it to get the DESTROY event now.
        conntrack(&["-U", "--mark", "42"], src, dst);
        conntrack(&["-D"], src, dst);
        let expected = Tuple {
            protocol: 6,
            src,
            dst,
        };
        let event = wait_for(
            &mut listener,
            |event| matches!(event, CtEvent::Destroy { orig, .. } if *orig == expected),
        )
        .expect("no DESTROY event for the connection within 5 s");
        let CtEvent::Destroy {
            mark,
            acct,
            start_ns,
            stop_ns,
            orig,
            ..
        } = event
        else {
            unreachable!()
        };
        assert_eq!(mark, 42);
        let key = orig.flow_key(&is_loopback).unwrap();
        let traffic = acct
            .expect("accounting is on, so the entry has counters")
            .traffic(key.direction);
        assert!(
            traffic.sent.bytes >= SENT as u64,
            "sent {} bytes",
            traffic.sent.bytes
        );
        assert!(traffic.received.bytes >= 4 && traffic.received.packets >= 2);
        assert!(traffic.sent.packets >= 3);
        let (start, stop) = (start_ns.unwrap(), stop_ns.unwrap());
        assert!(
            stop >= start,
            "stopped at {stop}, before starting at {start}"
        );
        assert_eq!(listener.malformed(), 0);
    }
}
