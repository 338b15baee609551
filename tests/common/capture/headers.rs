//! One captured frame, dissected: the Ethernet header (VLAN tags skipped), IPv4 or IPv6 (with
//! extension headers), then TCP or UDP down to the payload. Pure, on bytes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// UDP over IPv4 or IPv6.
    Udp,
    /// Another IP protocol (ICMP is 1, ICMPv6 58), or a fragment without a transport header.
    Ip(u8),
    /// Not IP (ARP is 0x0806), with its EtherType; 0 if the frame is too short to have one.
    NotIp(u16),
}

/// One captured frame, dissected.
#[derive(Clone, Debug)]
pub struct Packet {
    /// The Ethernet frame as captured.
    pub frame: Vec<u8>,
    /// What the frame carries.
    pub protocol: Protocol,
    /// IP source, for IP frames.
    pub src: Option<IpAddr>,
    /// IP destination, for IP frames.
    pub dst: Option<IpAddr>,
    /// TCP or UDP source port.
    pub src_port: Option<u16>,
    /// TCP or UDP destination port.
    pub dst_port: Option<u16>,
    /// Where the TCP or UDP payload sits in `frame` (Ethernet padding excluded).
    pub(super) payload: Range<usize>,
    pub(super) tcp_seq: u32,
}

impl Packet {
    /// The TCP or UDP payload; empty for other frames.
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload.clone()]
    }

    pub(super) fn flow(&self) -> Option<Flow> {
        Some(Flow { src: SocketAddr::new(self.src?, self.src_port?), dst: SocketAddr::new(self.dst?, self.dst_port?) })
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.flow(), self.src, self.dst) {
            (Some(flow), ..) => write!(f, "{:?} {flow}", self.protocol),
            (None, Some(src), Some(dst)) => write!(f, "{:?} {src} -> {dst}", self.protocol),
            _ => write!(f, "{:?}", self.protocol),
        }
    }
}

/// One direction of a TCP or UDP conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.src, self.dst)
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Dissects an Ethernet frame (VLAN tags skipped) down to the TCP or UDP payload.
pub(super) fn dissect(frame: Vec<u8>) -> Packet {
    let mut p = Packet {
        frame: Vec::new(),
        protocol: Protocol::NotIp(0),
        src: None,
        dst: None,
        src_port: None,
        dst_port: None,
        payload: 0..0,
        tcp_seq: 0,
    };
    dissect_into(&frame, &mut p);
    p.frame = frame;
    p
}

fn dissect_into(f: &[u8], p: &mut Packet) -> Option<()> {
    let mut ethertype = be16(f, 12)?;
    let mut at = 14;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = be16(f, at + 2)?;
        at += 4;
    }
    p.protocol = Protocol::NotIp(ethertype);
    // The network layer yields the IP protocol and where the transport header starts and the
    // IP packet ends (Ethernet pads short frames: the padding is not payload).
    let (proto, start, end) = match ethertype {
        0x0800 => {
            let h = f.get(at..at + 20)?;
            let total = usize::from(be16(h, 2)?);
            p.src = Some(IpAddr::from(<[u8; 4]>::try_from(&h[12..16]).ok()?));
            p.dst = Some(IpAddr::from(<[u8; 4]>::try_from(&h[16..20]).ok()?));
            p.protocol = Protocol::Ip(h[9]);
            if be16(h, 6)? & 0x1fff != 0 {
                return None; // a later fragment: no transport header
            }
            let end = if total == 0 { f.len() } else { (at + total).min(f.len()) }; // 0: TSO
            (h[9], at + usize::from(h[0] & 0x0f) * 4, end)
        }
        0x86dd => {
            let h = f.get(at..at + 40)?;
            p.src = Some(IpAddr::from(<[u8; 16]>::try_from(&h[8..24]).ok()?));
            p.dst = Some(IpAddr::from(<[u8; 16]>::try_from(&h[24..40]).ok()?));
            let len = usize::from(be16(h, 4)?);
            let end = if len == 0 { f.len() } else { (at + 40 + len).min(f.len()) };
            let (mut next, mut start) = (h[6], at + 40);
            // Skip extension headers: hop-by-hop, routing, fragment, destination options.
            while matches!(next, 0 | 43 | 44 | 60) {
                p.protocol = Protocol::Ip(next);
                let ext = f.get(start..start + 8)?;
                if next == 44 && be16(ext, 2)? & 0xfff8 != 0 {
                    return None; // a later fragment
                }
                start += if next == 44 { 8 } else { (usize::from(ext[1]) + 1) * 8 };
                next = ext[0];
            }
            p.protocol = Protocol::Ip(next);
            (next, start, end)
        }
        _ => return None,
    };
    match proto {
        6 => {
            let t = f.get(start..start + 20)?;
            let data = (start + usize::from(t[12] >> 4) * 4).min(end);
            p.protocol = Protocol::Tcp;
            p.src_port = be16(t, 0);
            p.dst_port = be16(t, 2);
            p.tcp_seq = u32::from_be_bytes(t[4..8].try_into().ok()?);
            p.payload = data..end.max(data);
        }
        17 => {
            let u = f.get(start..start + 8)?;
            let end = end.min(start + usize::from(be16(u, 4)?).max(8));
            p.protocol = Protocol::Udp;
            p.src_port = be16(u, 0);
            p.dst_port = be16(u, 2);
            p.payload = (start + 8).min(end)..end;
        }
        _ => {}
    }
    Some(())
}
