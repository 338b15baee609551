//! SO_REUSEADDR on the client's own control socket, set from outside, so that the book's
//! `sendport` off works with the classic clients on Linux.
//!
//! With `sendport` off, inetutils `ftp` and tnftp bind their data listener to their control
//! socket's local address and port C, setting SO_REUSEADDR on the listener only. Linux binds a
//! port that an established connection uses only when both sockets have it set
//! (docs/real-systems.md), so their `bind` fails: `Address already in use`. The tunnel sets it
//! for them as it accepts the control connection, before its greeting: the client's socket is
//! found in the local socket table (its two ends give its inode), the inode among a process's
//! open files (`/proc/PID/fd`, processes of the client's uid only), and `pidfd_getfd` (Linux
//! 5.6) gives the tunnel a duplicate of that descriptor: the same socket, whose option is set
//! and the duplicate closed. The kernel allows it where the tunnel may ptrace the client (same
//! uid, and Yama's `ptrace_scope` 0, or the tunnel its ancestor, or CAP_SYS_PTRACE).

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;

use crate::tcp::table::{self, Entry, TcpState};

/// Where the client's control socket was found, or why SO_REUSEADDR could not be set on it.
#[derive(Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Set on the descriptor `fd` of process `pid`.
    Set {
        /// The client's process.
        pid: u32,
        /// Its descriptor of the control socket.
        fd: RawFd,
    },
    /// Not set, and why.
    NotSet(String),
}

/// `socket:[INODE]`, the target of a socket's link in `/proc/PID/fd`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The inode of the live socket whose own end is `local` and whose peer is `remote`.
pub fn inode_in(entries: &[Entry], local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let same = |a: SocketAddr, b: SocketAddr| a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical();
    entries
        .iter()
        .find(|e| e.state == TcpState::Established && e.inode != 0 && same(e.local, local) && same(e.remote, remote))
        .map(|e| e.inode)
}

/// Set SO_REUSEADDR on the client's socket whose ends are `peer` (the client's, C) and
/// `ours`, held by a process of `uid`.
pub fn client_socket(peer: SocketAddr, ours: SocketAddr, uid: u32) -> Reuse {
    let mut entries = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            entries.extend(table::parse(&text));
        }
    }
    let Some(inode) = inode_in(&entries, peer, ours) else {
        return Reuse::NotSet(format!("no socket {peer} -> {ours} in the socket table"));
    };
    let holders = holders(inode, uid);
    if holders.is_empty() {
        return Reuse::NotSet(format!("no process of uid {uid} holds the socket (inode {inode}) in /proc/PID/fd"));
    }
    let mut why = String::new();
    for (pid, fd) in holders {
        match set_on(pid, fd) {
            Ok(()) => return Reuse::Set { pid, fd },
            Err(e) => why = format!("pidfd_getfd on process {pid}'s descriptor {fd}: {e}"),
        }
    }
    Reuse::NotSet(why)
}

/// The (pid, fd) of every process of `uid` holding socket `inode`.
fn holders(inode: u64, uid: u32) -> Vec<(u32, RawFd)> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for proc in procs.flatten() {
        let Some(pid) = proc.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || proc.metadata().map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let link = std::fs::read_link(fd.path()).ok();
            if link.as_ref().and_then(|l| socket_inode(l.to_str()?)) == Some(inode) {
                if let Some(n) = fd.file_name().to_str().and_then(|n| n.parse().ok()) {
                    found.push((pid, n));
                }
            }
        }
    }
    found
}

/// Duplicate process `pid`'s descriptor `fd` and set SO_REUSEADDR on the socket; the
/// duplicate is closed on return, the client's own descriptor untouched.
fn set_on(pid: u32, fd: RawFd) -> std::io::Result<()> {
    use rustix::process::{pidfd_getfd, pidfd_open, Pid, PidfdFlags, PidfdGetfdFlags};
    let pid = Pid::from_raw(pid as i32).ok_or_else(|| std::io::Error::other("pid 0"))?;
    let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
    let socket = pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty())?;
    socket2::SockRef::from(&socket).set_reuse_address(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[41002]"), Some(41002));
        assert_eq!(socket_inode("pipe:[41002]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[]"), None);
    }

    /// A client namespace: the classic ftp (uid 0) connected from 45768 to the tunnel on 2121,
    /// the tunnel's end of it, a closed connection's leftover on the same ports.
    const TABLE: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0849 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:B2C8 0100007F:0849 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   2: 0100007F:B2C8 0100007F:0849 01 00000000:00000000 00:00000000 00000000     0        0 41002 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:0849 0100007F:B2C8 01 00000000:00000000 00:00000000 00000000     0        0 41003 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn the_clients_socket_in_the_table() {
        let entries = table::parse(TABLE);
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(inode_in(&entries, addr("127.0.0.1:45768"), addr("127.0.0.1:2121")), Some(41002));
        assert_eq!(inode_in(&entries, addr("127.0.0.1:2121"), addr("127.0.0.1:45768")), Some(41003));
        assert_eq!(inode_in(&entries, addr("[::ffff:127.0.0.1]:45768"), addr("127.0.0.1:2121")), Some(41002));
        assert_eq!(inode_in(&entries, addr("127.0.0.1:45769"), addr("127.0.0.1:2121")), None);
    }

    /// This process's own socket, found and set as a client's would be (a child process is
    /// not needed: pidfd_getfd works on the caller itself).
    #[test]
    fn sets_the_option_on_a_socket_of_this_process() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!socket2::SockRef::from(&client).reuse_address().unwrap());
        set_on(std::process::id(), client.as_raw_fd()).unwrap();
        assert!(socket2::SockRef::from(&client).reuse_address().unwrap(), "the same socket, not a copy");
    }
}
