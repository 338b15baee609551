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

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod flows;
mod headers;
mod pcap;

// Not every test binary uses every part.
#[allow(unused_imports)]
pub use flows::{assert_encrypted, contains, file_samples, Captured};
#[allow(unused_imports)]
pub use headers::{Flow, Packet, Protocol};
#[allow(unused_imports)]
pub use pcap::read_pcap;

use flows::Finder;

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
