//! The pcap file: its header and records, one frame in memory at a time besides the result.
//! Pure, over any reader.

use std::io::{self, Read};

use super::headers::{dissect, Packet};

/// Larger records than this are a corrupt file, not a frame (tcpdump's snaplen is 256 KiB).
const MAX_RECORD: usize = 16 << 20;

/// Reads a classic pcap file (either byte order, microsecond or nanosecond magic) of Ethernet
/// frames (link type 1) and dissects every frame. Frames it does not understand are kept with
/// [`super::Protocol::NotIp`] or [`super::Protocol::Ip`]; only a malformed file is an error.
pub fn read_pcap(mut r: impl Read) -> io::Result<Vec<Packet>> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
    let mut header = [0u8; 24];
    r.read_exact(&mut header).map_err(|e| invalid(format!("no pcap header: {e}")))?;
    let big_endian = match header[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        _ => return Err(invalid(format!("not a classic pcap file (magic {:02x?})", &header[..4]))),
    };
    let u32_at = |b: &[u8], at: usize| {
        let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    };
    let link_type = u32_at(&header, 20) & 0x0fff_ffff; // the top bits describe the FCS
    if link_type != 1 {
        return Err(invalid(format!("link type {link_type} is not Ethernet (1)")));
    }
    let mut packets = Vec::new();
    let mut record = [0u8; 16];
    loop {
        match read_full(&mut r, &mut record)? {
            0 => return Ok(packets),
            16 => {}
            _ => return Err(invalid(format!("truncated record header after {} frames", packets.len()))),
        }
        let len = u32_at(&record, 8) as usize;
        if len > MAX_RECORD {
            return Err(invalid(format!("record of {len} bytes after {} frames", packets.len())));
        }
        let mut frame = vec![0; len];
        r.read_exact(&mut frame)
            .map_err(|e| invalid(format!("truncated frame after {} frames: {e}", packets.len())))?;
        packets.push(dissect(frame));
    }
}

/// Like `read_exact`, but a clean end of file before the first byte returns 0.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
