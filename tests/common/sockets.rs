//! The lab's socket tables as `ss` shows them, read by the tests themselves
//! (not through the tool's own parser): what the demo says must match them.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One `ss -Htane` row: state, local, peer (as printed) and uid (0 when ss shows none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub state: String,
    pub local: String,
    pub peer: String,
    pub uid: u32,
}

impl Row {
    pub fn local_port(&self) -> u16 {
        port(&self.local)
    }
    pub fn peer_port(&self) -> u16 {
        port(&self.peer)
    }
}

fn port(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// Every TCP row in network namespace `ns`.
pub fn read(ns: &str) -> Vec<Row> {
    let out = Command::new("ip").args(["netns", "exec", ns, "ss", "-Htane"]).output().expect("ss");
    assert!(out.status.success(), "ss in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(parse).collect()
}

fn parse(line: &str) -> Option<Row> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 5 {
        return None;
    }
    let uid = f.iter().find_map(|x| x.strip_prefix("uid:")).and_then(|u| u.parse().ok()).unwrap_or(0);
    Some(Row { state: f[0].to_string(), local: f[3].to_string(), peer: f[4].to_string(), uid })
}

/// Reads both namespaces every few milliseconds until stopped, keeping every row seen.
pub struct Poller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(BTreeSet<Row>, BTreeSet<Row>)>>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    pub fn start(client_ns: &str, server_ns: &str) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<(BTreeSet<Row>, BTreeSet<Row>)>> = Arc::default();
        let (c, s) = (client_ns.to_string(), server_ns.to_string());
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let (client, server) = (read(&c), read(&s));
                let mut seen = seen2.lock().unwrap();
                seen.0.extend(client);
                seen.1.extend(server);
                drop(seen);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Poller { stop, seen, thread: Some(thread) }
    }

    /// Stop and return every row seen: (client's, server's).
    pub fn stop(mut self) -> (BTreeSet<Row>, BTreeSet<Row>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}
