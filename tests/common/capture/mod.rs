//! Packet capture on the lab's veth: the proof that nothing crosses the network in plaintext.
//!
//! ```ignore
//! let capture = Capture::start("ftpssh-client", "ftpssh-c");
//! // ... run the transfer ...
//! let captured = capture.stop();
//! let mut secrets = vec![(&b"hunter2"[..], "the FTP password")];
//! let samples = file_samples(&content);
//! secrets.extend(samples.iter().map(|s| (&s[..], "the file's content")));
//! assert_encrypted(&captured, 22, &secrets, content.len() as u64);
//! ```
//!
//! - [`Capture::start`] runs `tcpdump` inside the namespace and returns once it is capturing;
//!   [`Capture::stop`] flushes, stops it and parses the file into a [`Captured`].
//! - [`Captured::assert_absent`] looks for a secret in every raw frame *and* across segment
//!   boundaries of every reassembled TCP stream, so a secret split over two segments is found.
//! - [`Captured::assert_only_tcp_port`] fails on any TCP packet not to or from the SSH port.
//! - [`Captured::tcp_payload_bytes`] is how a test shows its traffic flowed at all: an empty
//!   capture passes every absence check and proves nothing.
//! - [`read_pcap`] is the pure parser (classic pcap, Ethernet, IPv4/IPv6, TCP/UDP).
//!
//! Lab tests need root and `scripts/lab up`. Every test's traffic crosses the same veth, and a
//! capture records whatever another test sends meanwhile, so run lab tests with
//! `cargo test -- --test-threads=1`. [`Capture::start`] also takes a process-wide lock, held until
//! the capture is stopped or dropped, so that two captures in one test binary never overlap.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::Range;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempPath;

/// How long tcpdump may take to open the interface and print "listening on".
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the flush marker may take to reach the pcap file. libpcap hands packets over in
/// blocks, at the latest after its 1 s block timeout, so this is generous.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between two looks at the pcap file while waiting for the marker.
const FLUSH_POLL: Duration = Duration::from_millis(20);
/// How long tcpdump may take to exit after SIGINT.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Kernel capture buffer for tcpdump (`-B`, KiB): 64 MiB, so a 100 MiB transfer is not dropped.
const BUFFER_KIB: &str = "65536";
/// Larger records than this are a corrupt file, not a frame (tcpdump's snaplen is 256 KiB).
const MAX_RECORD: usize = 16 << 20;
/// Length of each needle [`file_samples`] takes from a file.
pub const SAMPLE_LEN: usize = 64;
/// Set this environment variable to keep the pcap file of every capture (its path is printed).
pub const KEEP_PCAP_ENV: &str = "FTPSSH_KEEP_PCAP";

/// Serializes captures within one test binary: they all share the lab's veth.
static LOCK: Mutex<()> = Mutex::new(());

/// A running `tcpdump` inside a network namespace. Dropping it without [`Capture::stop`] kills
/// tcpdump and deletes the file.
pub struct Capture {
    netns: String,
    iface: String,
    /// The interface's IPv4 address, source of the flush marker.
    addr: Ipv4Addr,
    child: Option<Child>,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
    pcap: Option<TempPath>,
    /// None for a capture started beside another one ([`Capture::also`]), which holds it.
    _lock: Option<MutexGuard<'static, ()>>,
}

impl Capture {
    /// Starts `ip netns exec NETNS tcpdump -i IFACE -U -w FILE -s 0 -n` and returns once tcpdump
    /// reports "listening on". `-Z root` keeps tcpdump from dropping to a user that cannot
    /// write the temporary file; `-B` enlarges the kernel buffer so fast transfers are not dropped.
    pub fn start(netns: &str, iface: &str) -> Capture {
        Capture::begin(netns, iface, Some(LOCK.lock().unwrap_or_else(PoisonError::into_inner)))
    }

    /// A second capture at the same time as this one (another wire of the same run), under
    /// the lock this one holds.
    pub fn also(&self, netns: &str, iface: &str) -> Capture {
        Capture::begin(netns, iface, None)
    }

    fn begin(netns: &str, iface: &str, lock: Option<MutexGuard<'static, ()>>) -> Capture {
        let addr = ipv4_of(netns, iface);
        let pcap = tempfile::Builder::new()
            .prefix("ftpssh-capture-")
            .suffix(".pcap")
            .tempfile()
            .expect("could not create the capture file")
            .into_temp_path();
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "tcpdump", "-i", iface, "-U", "-w"])
            .arg(&*pcap)
            .args(["-s", "0", "-n", "-Z", "root", "-B", BUFFER_KIB])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run tcpdump in netns {netns}: {e}"));
        let stderr = forward_lines(child.stderr.take().expect("stderr is piped"));
        let mut capture = Capture {
            netns: netns.to_owned(),
            iface: iface.to_owned(),
            addr,
            child: Some(child),
            stderr,
            stderr_seen: Vec::new(),
            pcap: Some(pcap),
            _lock: lock,
        };
        capture.wait_until_listening();
        capture
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let ready = line.contains("listening on");
                    self.stderr_seen.push(line);
                    if ready {
                        return;
                    }
                }
                Err(e) => {
                    let why = match e {
                        RecvTimeoutError::Timeout => {
                            format!("not capturing after {START_TIMEOUT:?}")
                        }
                        RecvTimeoutError::Disconnected => "exited".to_owned(),
                    };
                    panic!(
                        "tcpdump on {} in netns {} {why}; its stderr:\n{}",
                        self.iface,
                        self.netns,
                        self.stderr_seen.join("\n")
                    );
                }
            }
        }
    }

    /// Stops the capture and parses it. Before stopping, a UDP broadcast marker is sent out of
    /// the interface and awaited in the file: libpcap delivers packets in blocks, and a plain
    /// SIGINT would lose the last ones, which are often the ones a test cares about.
    pub fn stop(mut self) -> Captured {
        let marker = format!(
            "ftpssh-capture-flush-{}-{}",
            std::process::id(),
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
        )
        .into_bytes();
        let path = self.pcap.take().expect("stop runs once");
        self.send_marker(&marker);
        if !wait_for_bytes(&path, &marker, FLUSH_TIMEOUT) {
            panic!("the flush marker sent out of {} never reached the capture file", self.iface);
        }
        let status = self.interrupt();
        let stderr: Vec<String> = self.stderr_seen.drain(..).chain(self.stderr.iter()).collect();
        let stderr = stderr.join("\n");
        assert!(status.success(), "tcpdump on {} failed ({status}):\n{stderr}", self.iface);
        let kernel_drops = stderr
            .lines()
            .find_map(|l| l.trim().strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);

        let file = File::open(&path).expect("the capture file exists");
        let mut packets = read_pcap(BufReader::with_capacity(1 << 20, file))
            .unwrap_or_else(|e| panic!("could not parse {}: {e}", path.display()));
        packets.retain(|p| !(p.protocol == Protocol::Udp && p.payload() == marker));
        if std::env::var_os(KEEP_PCAP_ENV).is_some() {
            let kept = path.keep().expect("could not keep the capture file");
            eprintln!("capture on {} kept in {}", self.iface, kept.display());
        }
        Captured::new(packets, kernel_drops, stderr)
    }

    /// Broadcasts the marker from inside the namespace, bound to the interface's address so the
    /// kernel routes it out of that interface.
    fn send_marker(&self, marker: &[u8]) {
        let (addr, marker) = (self.addr, marker.to_vec());
        in_netns(&self.netns, move || -> io::Result<()> {
            let socket = UdpSocket::bind((addr, 0))?;
            socket.set_broadcast(true)?;
            socket.send_to(&marker, (Ipv4Addr::BROADCAST, 9))?;
            Ok(())
        })
        .join()
        .expect("marker thread panicked")
        .unwrap_or_else(|e| panic!("could not send the flush marker from {addr}: {e}"));
    }

    /// SIGINT (tcpdump then writes its statistics and closes the file), and wait for the exit.
    fn interrupt(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("tcpdump is running");
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGINT).unwrap_or_else(|e| panic!("could not interrupt tcpdump: {e}"));
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("could not wait for tcpdump") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "tcpdump ignored SIGINT for {EXIT_TIMEOUT:?}");
            thread::sleep(FLUSH_POLL);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `f` on a new thread that first enters the named network namespace
/// (`/var/run/netns/NAME`). Sockets keep the namespace they were created in, so `f` may return
/// a bound listener or a connected stream for use on any thread.
pub fn in_netns<T, F>(netns: &str, f: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = format!("/var/run/netns/{netns}");
    thread::spawn(move || {
        let ns = File::open(&path).unwrap_or_else(|e| panic!("could not open {path}: {e}"));
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("could not enter {path}: {e}"));
        f()
    })
}

fn ipv4_of(netns: &str, iface: &str) -> Ipv4Addr {
    let out = Command::new("ip")
        .args(["-n", netns, "-o", "-4", "addr", "show", "dev", iface])
        .output()
        .unwrap_or_else(|e| panic!("could not run ip: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    words
        .find(|w| *w == "inet")
        .and_then(|_| words.next())
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{iface} in netns {netns} has no IPv4 address (is the lab up?): {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn forward_lines(stderr: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads the growing file until `needle` shows up or `timeout` passes.
fn wait_for_bytes(path: &Path, needle: &[u8], timeout: Duration) -> bool {
    let finder = Finder::new(needle);
    let deadline = Instant::now() + timeout;
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let (mut buf, mut window) = (vec![0; 1 << 20], Vec::new());
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => {
                if Instant::now() > deadline {
                    return false;
                }
                thread::sleep(FLUSH_POLL);
            }
            Ok(n) => {
                window.extend_from_slice(&buf[..n]);
                if finder.find(&window).is_some() {
                    return true;
                }
                let keep = needle.len() - 1;
                window.drain(..window.len().saturating_sub(keep));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsed packets and the assertions on them.

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
    payload: Range<usize>,
    tcp_seq: u32,
}

impl Packet {
    /// The TCP or UDP payload; empty for other frames.
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload.clone()]
    }

    fn flow(&self) -> Option<Flow> {
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
struct Finder<'a> {
    needle: &'a [u8],
    shift: [usize; 256],
}

impl<'a> Finder<'a> {
    fn new(needle: &'a [u8]) -> Self {
        let m = needle.len();
        let mut shift = [m.max(1); 256];
        for (i, &b) in needle.iter().enumerate().take(m.saturating_sub(1)) {
            shift[usize::from(b)] = m - 1 - i;
        }
        Finder { needle, shift }
    }

    fn find(&self, haystack: &[u8]) -> Option<usize> {
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

// ---------------------------------------------------------------------------------------------
// The pcap parser: pure, over any reader, one frame in memory at a time besides the result.

/// Reads a classic pcap file (either byte order, microsecond or nanosecond magic) of Ethernet
/// frames (link type 1) and dissects every frame. Frames it does not understand are kept with
/// [`Protocol::NotIp`] or [`Protocol::Ip`]; only a malformed file is an error.
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

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Dissects an Ethernet frame (VLAN tags skipped) down to the TCP or UDP payload.
fn dissect(frame: Vec<u8>) -> Packet {
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
