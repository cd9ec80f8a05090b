//! DNS answers read without changing the kernel, for monitor mode: a packet socket on every
//! interface in cooked mode (each packet from its IP header on), with a classic BPF filter so
//! that only UDP and TCP packets from port 53 that this host receives reach the agent.
//!
//! Unlike the enforcing agent's DNS queue, which only reads answers to queries this host sent
//! (conntrack state `ESTABLISHED`), a capture cannot tell a forged answer from a real one: in
//! monitor mode a forged answer can put a wrong name on a connection's event, never change
//! what the kernel does.

use std::io::{self, Read};

use socket2::{Domain, Protocol, SockFilter, Socket, Type};

/// The socket receive buffer asked for, in bytes (the kernel caps it at `net.core.rmem_max`).
const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Every protocol (`ETH_P_ALL`), in network byte order as `socket(2)` wants it.
const ETH_P_ALL: u16 = 0x0003;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const RSH_K: u16 = 0x74;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
/// The ancillary load of the packet's type (`SKF_AD_OFF + SKF_AD_PKTTYPE`).
const PKTTYPE: u32 = 0xffff_f004;
/// `PACKET_OUTGOING`: a packet this host sends.
const OUTGOING: u32 = 4;

/// Accepts IPv4 (first fragment or whole) and IPv6 UDP or TCP packets whose source port is 53
/// and that this host did not send; the jumps count the instructions skipped.
const FILTER: [(u16, u8, u8, u32); 21] = [
    (LD_W_ABS, 0, 0, PKTTYPE),
    (JEQ_K, 18, 0, OUTGOING), // sent by this host: refuse
    (LD_B_ABS, 0, 0, 0),
    (RSH_K, 0, 0, 4),
    (JEQ_K, 0, 8, 4), // not IPv4: to the IPv6 test
    (LD_B_ABS, 0, 0, 9),
    (JEQ_K, 1, 0, 17),
    (JEQ_K, 0, 12, 6),
    (LD_H_ABS, 0, 0, 6),
    (JSET_K, 10, 0, 0x1fff), // a later fragment: refuse
    (LDX_B_MSH, 0, 0, 0),
    (LD_H_IND, 0, 0, 0),
    (JEQ_K, 6, 7, 53),
    (JEQ_K, 0, 6, 6), // not IPv6 either: refuse
    (LD_B_ABS, 0, 0, 6),
    (JEQ_K, 1, 0, 17),
    (JEQ_K, 0, 3, 6),
    (LD_H_ABS, 0, 0, 40),
    (JEQ_K, 0, 1, 53),
    (RET_K, 0, 0, 65_535),
    (RET_K, 0, 0, 0),
];

/// A capture of the DNS answers this host receives, on every interface.
#[derive(Debug)]
pub struct DnsCapture {
    socket: Socket,
}

impl DnsCapture {
    /// Opens the packet socket and attaches its filter. Needs `CAP_NET_RAW`.
    pub fn open() -> io::Result<DnsCapture> {
        let protocol = Protocol::from(i32::from(ETH_P_ALL.to_be()));
        let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(protocol))?;
        let filter: Vec<SockFilter> = FILTER
            .iter()
            .map(|&(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
            .collect();
        socket.attach_filter(&filter)?;
        socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES)?;
        socket.set_nonblocking(true)?;
        Ok(DnsCapture { socket })
    }

    /// Passes every packet already captured to `each`, from its IP header on (cut to `buf`'s
    /// length), and returns without waiting for more.
    ///
    /// A connection is opened after the answer that named its server was received, so once
    /// the connection is seen, draining the capture is enough to know its name.
    pub fn drain(&mut self, buf: &mut [u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
        loop {
            match (&self.socket).read(buf) {
                Ok(n) => each(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_received_packets_from_port_53_are_captured() {
        if std::env::var("PALISADE_TEST_PRIVILEGED").as_deref() != Ok("1") {
            println!("skipped: set PALISADE_TEST_PRIVILEGED=1 (as root) to run it");
            return;
        }
        let mut capture = DnsCapture::open().unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = UdpSocket::bind("127.53.0.9:53").unwrap();
        other.send_to(b"palisade: not from 53", to).unwrap();
        server.send_to(b"palisade: from 53", to).unwrap();

        let mut buf = vec![0; 2048];
        let mut seen = Vec::new();
        // The loopback device hands packets on a moment after they were sent.
        for _ in 0..30 {
            capture
                .drain(&mut buf, |packet| seen.push(packet.to_vec()))
                .unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        let copies = |payload: &[u8]| seen.iter().filter(|p| p.ends_with(payload)).count();
        // Loopback shows every packet twice, as sent and as received: only the received copy.
        assert_eq!(copies(b"palisade: from 53"), 1);
        assert_eq!(copies(b"palisade: not from 53"), 0);
        let answer = seen
            .iter()
            .find(|p| p.ends_with(b"palisade: from 53"))
            .unwrap();
        assert_eq!(
            answer.first().map(|b| b >> 4),
            Some(4),
            "from the IP header on"
        );
    }
}
