//! Reading the two socket tables: the client's here (the `procfs` crate), the
//! SSH server's over SSH (the session's remote shell, parsed by
//! [`crate::tcp::table`], which keeps the TIME_WAIT timers procfs drops).

use std::net::SocketAddr;

use anyhow::{Context, Result};

use crate::demo::tables::Table;
use crate::ssh::Session;
use crate::tcp::table::{Entry, TcpState};
use crate::timewait::measure::{measure_command, parse_measure_output};

/// Whether TCP timestamps are on there.
const TIMESTAMPS_READ: &str = "cat /proc/sys/net/ipv4/tcp_timestamps 2>/dev/null";

/// The client's own table (this process's network namespace). No timers:
/// procfs does not give them, and the client holds no TIME_WAIT of this run.
pub fn client(title: &str) -> Result<Table> {
    let mut rows = Vec::new();
    let tcp = procfs::net::tcp().context("could not read /proc/net/tcp")?;
    let tcp6 = procfs::net::tcp6().unwrap_or_default(); // no IPv6 in this kernel: fine
    for e in tcp.into_iter().chain(tcp6) {
        rows.push(Entry {
            local: canon(e.local_address),
            remote: canon(e.remote_address),
            state: state(&e.state),
            timer_active: 0,
            timer_ticks: 0,
            uid: e.uid,
            inode: e.inode,
        });
    }
    Ok(Table { title: title.to_string(), rows, clk_tck: None })
}

/// The SSH server's table, read over the session.
pub async fn server(session: &Session, title: &str) -> Result<Table> {
    let out = session.shell(&measure_command()).await.context("could not read the SSH server's socket table")?;
    let (clk_tck, rows) = parse_measure_output(&out);
    Ok(Table { title: title.to_string(), rows, clk_tck: Some(clk_tck) })
}

/// `net.ipv4.tcp_timestamps` on the SSH server (None when unreadable).
pub async fn server_timestamps(session: &Session) -> Option<bool> {
    let out = session.shell(TIMESTAMPS_READ).await.ok()?;
    match out.trim() {
        "0" => Some(false),
        "" => None,
        _ => Some(true),
    }
}

fn canon(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn state(s: &procfs::net::TcpState) -> TcpState {
    use procfs::net::TcpState as P;
    TcpState::from(match s {
        P::Established => 0x01,
        P::SynSent => 0x02,
        P::SynRecv => 0x03,
        P::FinWait1 => 0x04,
        P::FinWait2 => 0x05,
        P::TimeWait => 0x06,
        P::Close => 0x07,
        P::CloseWait => 0x08,
        P::LastAck => 0x09,
        P::Listen => 0x0A,
        P::Closing => 0x0B,
        P::NewSynRecv => 0x0C,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener and a connection of our own show up in the local reading, in their states.
    #[test]
    fn reads_the_local_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = std::net::TcpStream::connect(addr).unwrap();
        let table = client("here").unwrap();
        let find = |local: SocketAddr, st| table.rows.iter().any(|e| e.local == local && e.state == st);
        assert!(find(addr, TcpState::Listen), "{addr} LISTEN not in {:?}", table.rows.len());
        assert!(find(conn.local_addr().unwrap(), TcpState::Established));
    }
}
