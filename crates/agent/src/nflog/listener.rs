//! The netlink socket bound to an NFLOG group, receiving the copies the kernel makes.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::COPY_LEN;
use super::parse::{Message, NFNL_SUBSYS_ULOG, messages, packets};
use crate::netlink::{NFGENMSG_LEN, NLA_HDRLEN, NLMSG_HDRLEN};

/// A receive buffer that holds any single datagram the kernel sends to the group.
pub const RECV_BUFFER_LEN: usize = 64 * 1024;

/// The socket receive buffer asked for, in bytes; the kernel caps it at `net.core.rmem_max`.
const SOCKET_BUFFER_BYTES: i32 = 4 * 1024 * 1024;

/// A netlink socket bound to one NFLOG group in the current network namespace.
///
/// Opening it needs `CAP_NET_ADMIN`, and fails when another socket holds the group. The kernel
/// sends each copy at once (queue threshold 1). [`Listener::recv`] blocks unless the socket is
/// made non-blocking; its file descriptor ([`AsFd`]) can be registered with an event loop.
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    /// Packets received while waiting for the kernel's answer to the configuration.
    early: Vec<Vec<u8>>,
    overflows: u64,
    malformed: u64,
}

impl Listener {
    /// Opens the socket, binds it to `group` with copies of up to [`COPY_LEN`] bytes of each
    /// packet, and enlarges its receive buffer.
    pub fn open(group: u16) -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind(&SocketAddr::new(0, 0))?;
        socket.set_rx_buf_sz(SOCKET_BUFFER_BYTES)?;
        let mut listener = Listener {
            socket,
            early: Vec::new(),
            overflows: 0,
            malformed: 0,
        };
        let mut mode = u32::from(COPY_LEN).to_be_bytes().to_vec();
        mode.extend([NFULNL_COPY_PACKET, 0]);
        let config = [
            attr(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]),
            attr(NFULA_CFG_MODE, &mode),
            attr(NFULA_CFG_QTHRESH, &1u32.to_be_bytes()),
        ]
        .concat();
        listener.configure(group, 1, &config)?;
        Ok(listener)
    }

    /// Makes [`Listener::recv`] return [`io::ErrorKind::WouldBlock`] instead of waiting.
    pub fn set_non_blocking(&self, non_blocking: bool) -> io::Result<()> {
        self.socket.set_non_blocking(non_blocking)
    }

    /// Receives one datagram into `buf` and returns the copied packets in it (possibly none),
    /// each from its IP header on and at most [`COPY_LEN`] bytes, waiting for one if the socket
    /// blocks. `buf` should be [`RECV_BUFFER_LEN`] bytes long.
    ///
    /// When the kernel reports that it dropped copies because the socket's buffer was full, the
    /// report is counted ([`Listener::overflows`]) and receiving goes on. Datagrams not sent by
    /// the kernel are ignored; malformed messages are counted ([`Listener::malformed`]) and
    /// skipped.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Vec<Vec<u8>>> {
        if !self.early.is_empty() {
            return Ok(std::mem::take(&mut self.early));
        }
        let len = self.recv_datagram(buf)?;
        let datagram = buf.get(..len).unwrap_or(buf);
        Ok(packets(datagram, &mut self.malformed))
    }

    /// How many times the kernel reported dropping copies for this socket (`ENOBUFS`); each
    /// report stands for one or more lost copies.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// How many malformed messages were skipped.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Receives one datagram from the kernel into `buf`, returning its length.
    fn recv_datagram(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut space: &mut [u8] = buf;
            match self.socket.recv_from(&mut space, 0) {
                Ok((len, from)) if from.port_number() == 0 => return Ok(len),
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.overflows = self.overflows.saturating_add(1);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends one configuration message for `group` and waits for the kernel's answer; packets
    /// that arrive meanwhile are kept for the first [`Listener::recv`].
    fn configure(&mut self, group: u16, seq: u32, attrs: &[u8]) -> io::Result<()> {
        let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
        let mut request = u32::try_from(len)
            .map_err(|_| io::Error::other("NFLOG configuration too long"))?
            .to_ne_bytes()
            .to_vec();
        request.extend((NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG).to_ne_bytes());
        request.extend((NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        request.extend(seq.to_ne_bytes());
        request.extend(0u32.to_ne_bytes());
        request.extend([AF_UNSPEC, NFNETLINK_V0]);
        request.extend(group.to_be_bytes());
        request.extend(attrs);
        self.socket.send_to(&request, &SocketAddr::new(0, 0), 0)?;
        let mut buf = vec![0; RECV_BUFFER_LEN];
        loop {
            let len = self.recv_datagram(&mut buf)?;
            for message in messages(buf.get(..len).unwrap_or_default()) {
                match message {
                    Ok(Message::Ack { seq: acked, error }) if acked == seq => {
                        return match error {
                            0 => Ok(()),
                            errno => Err(io::Error::from_raw_os_error(errno.saturating_neg())),
                        };
                    }
                    Ok(Message::Packet(packet)) => self.early.push(packet.to_vec()),
                    Ok(_) => {}
                    Err(_) => self.malformed = self.malformed.saturating_add(1),
                }
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// One netlink attribute, padded to 4 bytes.
fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = u16::try_from(NLA_HDRLEN + value.len()).unwrap_or(u16::MAX);
    let mut a = len.to_ne_bytes().to_vec();
    a.extend(kind.to_ne_bytes());
    a.extend(value);
    a.resize(a.len().saturating_add(3) & !3, 0);
    a
}

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const AF_UNSPEC: u8 = 0;
const NFNETLINK_V0: u8 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;

#[cfg(test)]
mod tests {
    //! A live test against the kernel of the machine running it, run only when asked (see
    //! `unavailable`). It runs the agent's real chains in a
    //! network namespace of its own, by running this test binary again inside it.

    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::Command;
    use std::time::Duration;

    use palisade_policy::model::Fail;

    use super::*;
    use crate::intercept::{Enforcement, Interceptor};
    use crate::netfilter::{Chains, NAMES_GROUP};
    use crate::nfqueue::{NfQueue, QueueKind};
    use crate::server_name::{Named, named, tests::client_hello};

    /// Names the namespace the inner test runs in; set only by the outer test.
    const INSIDE: &str = "PALISADE_NFLOG_TEST_NAMESPACE";
    const INNER: &str = "nflog::listener::tests::inside_a_namespace_allowed_connections_are_named";

    /// Why this test cannot run: it needs root and the `ip` and `iptables` tools, and runs only
    /// when asked (`PALISADE_TEST_PRIVILEGED=1`, as CI does); asked, it must run.
    fn unavailable() -> Option<String> {
        if std::env::var("PALISADE_TEST_PRIVILEGED").as_deref() != Ok("1") {
            return Some("set PALISADE_TEST_PRIVILEGED=1 (as root) to run it".into());
        }
        None
    }

    struct Namespace(String);

    impl Drop for Namespace {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    #[test]
    fn allowed_connections_are_named_by_their_first_data_packets() {
        if let Some(reason) = unavailable() {
            println!("skipped: {reason}");
            return;
        }
        let ns = Namespace(format!("palisade-nflog-{}", std::process::id()));
        let added = Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap();
        assert!(added.success());
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(exe)
            .args(["--exact", INNER, "--nocapture", "--test-threads", "1"])
            .env(INSIDE, &ns.0)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("named both connections"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Opens a connection to `server`, sends `first` and returns its local address once the
    /// server has read it.
    fn connect_and_send(server: &TcpListener, first: &[u8]) -> SocketAddr {
        let mut client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        client.write_all(first).unwrap();
        let (mut accepted, _) = server.accept().unwrap();
        let mut received = vec![0; first.len()];
        accepted.read_exact(&mut received).unwrap();
        // The server's answer crosses OUTPUT too, in the reply direction: it must not be copied,
        // and it would be named if it were.
        accepted
            .write_all(b"GET /reply HTTP/1.1\r\nHost: reply.invalid\r\n\r\n")
            .unwrap();
        let mut answer = [0; 8];
        client.read_exact(&mut answer).unwrap();
        client.local_addr().unwrap()
    }

    #[test]
    fn inside_a_namespace_allowed_connections_are_named() {
        let Ok(ns) = std::env::var(INSIDE) else {
            println!(
                "skipped: runs inside the namespace of allowed_connections_are_named_by_their_first_data_packets"
            );
            return;
        };
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(up.unwrap().success(), "lo in {ns}");
        Chains {
            first_queue: 0,
            queues: 1,
            dns_queue: 1,
            fail: Fail::Closed,
            inbound: false,
        }
        .install()
        .unwrap();
        let mut queue = NfQueue::bind(0, QueueKind::Connections, false).unwrap();
        std::thread::spawn(
            move || {
                while queue.serve(&mut |_| Enforcement::Allow).is_ok() {}
            },
        );
        let mut listener = Listener::open(NAMES_GROUP).unwrap();
        listener.set_non_blocking(true).unwrap();
        assert!(
            Listener::open(NAMES_GROUP).is_err(),
            "a group has one reader"
        );

        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let http = connect_and_send(
            &server,
            b"GET / HTTP/1.1\r\nHost: example.test:8080\r\nUser-Agent: test\r\n\r\n",
        );
        let tls = connect_and_send(&server, &client_hello("tls.example.test", 64));

        let mut found: Vec<Named> = Vec::new();
        let mut copies = 0;
        let mut buf = vec![0; RECV_BUFFER_LEN];
        for _ in 0..100 {
            match listener.recv(&mut buf) {
                Ok(packets) => {
                    copies += packets.len();
                    found.extend(packets.iter().filter_map(|p| named(p)));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => panic!("recv: {error}"),
            }
        }
        let by = |local| found.iter().find(|n| n.flow.local == local);
        let http_named = by(http).unwrap_or_else(|| panic!("{http} not named in {found:?}"));
        assert_eq!(http_named.http_host.as_deref(), Some("example.test:8080"));
        assert_eq!(http_named.flow.remote, server.local_addr().unwrap());
        let tls_named = by(tls).unwrap_or_else(|| panic!("{tls} not named in {found:?}"));
        assert_eq!(tls_named.sni.as_deref(), Some("tls.example.test"));
        assert_eq!(found.len(), 2, "the replies were copied: {found:?}");
        // Each client sent one data packet, and perhaps one ACK of the answer: nothing else.
        assert!((2..=4).contains(&copies), "{copies} copies");
        assert_eq!((listener.overflows(), listener.malformed()), (0, 0));
        println!("named both connections with {copies} copies");
    }
}
