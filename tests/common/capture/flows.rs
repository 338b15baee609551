//! The TCP streams of a capture reassembled, and the assertions on a capture: no secret in any
//! frame or across segment boundaries, no traffic but SSH's, no drops.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufReader};
use std::ops::Range;
use std::path::Path;

use super::headers::{Flow, Packet, Protocol};
use super::pcap::read_pcap;
use super::SAMPLE_LEN;

/// One direction of a TCP connection: its payload in sequence order, each byte once.
struct Stream {
    flow: Flow,
    /// (packet index, byte range in that packet's frame), retransmitted bytes trimmed away.
    segments: Vec<(usize, Range<usize>)>,
}

/// The result of a [`Capture`]: every frame, dissected, and the TCP streams reassembled.
pub struct Captured {
    /// All frames in capture order (the flush marker removed).
    pub packets: Vec<Packet>,
    /// Packets tcpdump reported as dropped by the kernel; a capture with drops proves nothing.
    pub kernel_drops: u64,
    /// tcpdump's stderr, for diagnostics.
    pub tcpdump_stderr: String,
    streams: Vec<Stream>,
}

impl Captured {
    /// Builds the TCP streams of `packets`: per direction of each 4-tuple, segments ordered by
    /// sequence number (tracked from segment to segment, so wrap-around is fine), overlaps from
    /// retransmissions trimmed.
    pub fn new(packets: Vec<Packet>, kernel_drops: u64, tcpdump_stderr: String) -> Captured {
        let mut by_flow: HashMap<Flow, Vec<(i64, usize)>> = HashMap::new();
        let mut order = Vec::new();
        let mut last_seq: HashMap<Flow, (u32, i64)> = HashMap::new();
        for (i, p) in packets.iter().enumerate() {
            let Some(flow) = p.flow().filter(|_| p.protocol == Protocol::Tcp) else {
                continue;
            };
            if p.payload.is_empty() {
                continue;
            }
            let (prev_seq, prev_pos) = *last_seq.get(&flow).unwrap_or(&(p.tcp_seq, 0));
            let pos = prev_pos + i64::from(p.tcp_seq.wrapping_sub(prev_seq) as i32);
            last_seq.insert(flow, (p.tcp_seq, pos));
            by_flow
                .entry(flow)
                .or_insert_with(|| {
                    order.push(flow);
                    Vec::new()
                })
                .push((pos, i));
        }
        let streams = order
            .into_iter()
            .map(|flow| {
                let mut segs = by_flow.remove(&flow).unwrap_or_default();
                segs.sort_by_key(|&(pos, _)| pos); // stable: first arrival of equal data wins
                let mut covered = i64::MIN;
                let mut segments = Vec::new();
                for (pos, i) in segs {
                    let range = packets[i].payload.clone();
                    let end = pos + range.len() as i64;
                    if end <= covered {
                        continue;
                    }
                    let skip = (covered.max(pos) - pos) as usize;
                    segments.push((i, range.start + skip..range.end));
                    covered = end;
                }
                Stream { flow, segments }
            })
            .collect();
        Captured { packets, kernel_drops, tcpdump_stderr, streams }
    }

    /// Parses a pcap file (for looking at a kept capture, or a hand-made one).
    pub fn from_file(path: &Path) -> io::Result<Captured> {
        let packets = read_pcap(BufReader::with_capacity(1 << 20, File::open(path)?))?;
        Ok(Captured::new(packets, 0, String::new()))
    }

    /// Panics if `needle` appears in any raw frame, or in the payload of any TCP stream read in
    /// sequence order (so a secret split across segments is found). `what` names the secret in
    /// the message; the secret itself is never printed.
    pub fn assert_absent(&self, needle: &[u8], what: &str) {
        assert!(!needle.is_empty(), "assert_absent({what}): an empty needle proves nothing");
        let finder = Finder::new(needle);
        for (i, p) in self.packets.iter().enumerate() {
            if let Some(at) = finder.find(&p.frame) {
                panic!("{what} crossed the network in plaintext: frame #{i} ({p}), offset {at}");
            }
        }
        // Occurrences inside one frame were found above; what is left are the ones that start
        // in the last `keep` bytes before a segment and end in that segment.
        let keep = needle.len() - 1;
        let mut joint = Vec::with_capacity(2 * keep);
        for stream in &self.streams {
            let mut tail: Vec<u8> = Vec::with_capacity(keep);
            for (i, range) in &stream.segments {
                let bytes = &self.packets[*i].frame[range.clone()];
                joint.clear();
                joint.extend_from_slice(&tail);
                joint.extend_from_slice(&bytes[..bytes.len().min(keep)]);
                if finder.find(&joint).is_some() {
                    panic!(
                        "{what} crossed the network in plaintext, split across TCP segments of \
                         {} (ending in frame #{i})",
                        stream.flow
                    );
                }
                tail.extend_from_slice(&bytes[bytes.len().saturating_sub(keep)..]);
                tail.drain(..tail.len().saturating_sub(keep));
            }
        }
    }

    /// Panics unless every TCP packet has `port` as source or destination, listing the flows
    /// that do not.
    pub fn assert_only_tcp_port(&self, port: u16) {
        let offending: BTreeSet<String> = self
            .packets
            .iter()
            .filter(|p| p.protocol == Protocol::Tcp)
            .filter(|p| p.src_port != Some(port) && p.dst_port != Some(port))
            .map(|p| p.to_string())
            .collect();
        if !offending.is_empty() {
            let list: Vec<String> = offending.into_iter().collect();
            panic!("TCP outside port {port}: {} flow(s):\n  {}", list.len(), list.join("\n  "));
        }
    }

    /// Panics if tcpdump reported kernel drops: absent bytes might just be unrecorded ones.
    pub fn assert_complete(&self) {
        assert_eq!(
            self.kernel_drops, 0,
            "tcpdump lost {} packets in the kernel; the capture proves nothing:\n{}",
            self.kernel_drops, self.tcpdump_stderr
        );
    }

    /// Total TCP payload in the capture, each byte counted once (retransmissions excluded).
    pub fn tcp_payload_bytes(&self) -> u64 {
        let segments = self.streams.iter().flat_map(|s| &s.segments);
        segments.map(|(_, r)| r.len() as u64).sum()
    }

    /// One line for messages: packet count, TCP payload and flows.
    pub fn summary(&self) -> String {
        let flows: Vec<String> = self.streams.iter().map(|s| s.flow.to_string()).collect();
        format!(
            "{} frames, {} TCP payload bytes in {} stream(s) [{}]",
            self.packets.len(),
            self.tcp_payload_bytes(),
            flows.len(),
            flows.join(", ")
        )
    }
}

/// All the checks a transfer test needs: tcpdump lost nothing, every TCP packet went to or from
/// `ssh_port`, none of `secrets` (needle, name) is visible, and at least `min_payload` bytes of
/// TCP payload flowed (so the capture did see the transfer).
pub fn assert_encrypted(captured: &Captured, ssh_port: u16, secrets: &[(&[u8], &str)], min_payload: u64) {
    captured.assert_complete();
    captured.assert_only_tcp_port(ssh_port);
    for (needle, what) in secrets {
        captured.assert_absent(needle, what);
    }
    let seen = captured.tcp_payload_bytes();
    assert!(
        seen >= min_payload,
        "only {seen} bytes of TCP payload captured, expected at least {min_payload}: the capture \
         did not see the transfer ({})",
        captured.summary()
    );
}

/// A few needles that stand for a large file: distinctive 64-byte windows taken near the start,
/// the quarters and the end (the whole content if it is at most 64 bytes).
///
/// Why not the whole file: searching for 100 MiB as one needle only finds a leak of the entire
/// file in one piece, and costs a full comparison per candidate. Any plaintext copy of the file,
/// or of a large part of it, contains some of these windows, while 64 bytes of varied data
/// cannot match encrypted bytes by chance. "Distinctive" means at least 16 different byte values:
/// a run of zeros or spaces would also match innocent padding.
pub fn file_samples(content: &[u8]) -> Vec<Vec<u8>> {
    const POINTS: usize = 4;
    const TRIES: usize = 64;
    assert!(!content.is_empty(), "file_samples: an empty file has nothing to look for");
    if content.len() <= SAMPLE_LEN {
        return vec![content.to_vec()];
    }
    let last = content.len() - SAMPLE_LEN;
    let distinctive = |w: &[u8]| {
        let mut seen = [false; 256];
        w.iter().for_each(|&b| seen[usize::from(b)] = true);
        seen.iter().filter(|&&s| s).count() >= 16
    };
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for point in 0..=POINTS {
        let anchor = last / POINTS * point;
        let window = (0..TRIES)
            .map(|t| match point {
                POINTS => last.saturating_sub(t * SAMPLE_LEN), // the end: look backwards
                _ => (anchor + t * SAMPLE_LEN).min(last),
            })
            .map(|at| &content[at..at + SAMPLE_LEN])
            .find(|w| distinctive(w));
        if let Some(w) = window.filter(|w| !samples.iter().any(|s| s == w)) {
            samples.push(w.to_vec());
        }
    }
    assert!(!samples.is_empty(), "file_samples: no 64-byte window with 16 distinct bytes; use varied test data");
    samples
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    Finder::new(needle).find(haystack).is_some()
}

/// Boyer-Moore-Horspool: on varied data it skips about a needle's length per step, which keeps
/// a search through a 110 MB capture fast even in an unoptimized test build.
pub(super) struct Finder<'a> {
    needle: &'a [u8],
    shift: [usize; 256],
}

impl<'a> Finder<'a> {
    pub(super) fn new(needle: &'a [u8]) -> Self {
        let m = needle.len();
        let mut shift = [m.max(1); 256];
        for (i, &b) in needle.iter().enumerate().take(m.saturating_sub(1)) {
            shift[usize::from(b)] = m - 1 - i;
        }
        Finder { needle, shift }
    }

    pub(super) fn find(&self, haystack: &[u8]) -> Option<usize> {
        let m = self.needle.len();
        let (&last, init) = self.needle.split_last()?;
        let mut i = 0;
        while i + m <= haystack.len() {
            let b = haystack[i + m - 1];
            if b == last && &haystack[i..i + m - 1] == init {
                return Some(i);
            }
            i += self.shift[usize::from(b)];
        }
        None
    }
}
