//! Both socket tables side by side: the client's (read here) and the SSH
//! server's (read over SSH), with the rows of this run labelled C, P, U-1
//! (or U) and S, in their states, TIME_WAIT rows with their timers.

use std::net::SocketAddr;

use crate::demo::run_facts::Facts;
use crate::demo::terminal::Style;
use crate::tcp::table::{Entry, TcpState};

/// One host's table as read at one moment.
#[derive(Debug, Clone)]
pub struct Table {
    /// Whose table: a heading.
    pub title: String,
    /// Every row.
    pub rows: Vec<Entry>,
    /// USER_HZ for the timers (None: this reading has no timers).
    pub clk_tck: Option<u64>,
}

/// Which host a table is from: the same port means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The host the tool runs on.
    Client,
    /// The SSH server's host (where the FTP server also is, or which reaches it).
    Server,
}

/// Width of one table's column on the screen.
pub const COLUMN: usize = 66;

/// The label of a row that belongs to this run, if any.
pub fn label(e: &Entry, facts: &Facts, side: Side) -> Option<&'static str> {
    let is = |a: &SocketAddr, b: &SocketAddr| a.ip() == b.ip() && a.port() == b.port();
    if let Some((client, server)) = facts.ssh {
        let ours = match side {
            Side::Client => is(&e.local, &client) && e.remote.port() == server.port(),
            // sshd's end, or both ends when client and server are one host.
            Side::Server => e.remote.port() == client.port() && e.local.port() == server.port(),
        };
        if ours || (side == Side::Client && is(&e.remote, &client) && e.local.port() == server.port()) {
            return Some("C");
        }
    }
    if side == Side::Client {
        return None;
    }
    for (t, _) in &facts.tuples {
        if is(&e.local, &t.from) && is(&e.remote, &t.to) {
            return Some("S");
        }
        if is(&e.local, &t.to) && is(&e.remote, &t.from) {
            return Some(facts.data_port_name());
        }
    }
    if let (Some((proxy, ftp)), Some(p)) = (facts.control, facts.p()) {
        if (e.local.port() == p && is(&e.remote, &ftp)) || (is(&e.local, &ftp) && is(&e.remote, &proxy)) {
            return Some("P");
        }
    }
    if let (Some(listen), TcpState::Listen) = (facts.listen, e.state) {
        if e.local.port() == listen.port() {
            return Some(facts.data_port_name());
        }
    }
    None
}

/// `ss`'s name for a state.
pub fn state_name(s: TcpState) -> String {
    match s {
        TcpState::Established => "ESTAB".into(),
        TcpState::SynSent => "SYN-SENT".into(),
        TcpState::SynRecv => "SYN-RECV".into(),
        TcpState::FinWait1 => "FIN-WAIT-1".into(),
        TcpState::FinWait2 => "FIN-WAIT-2".into(),
        TcpState::TimeWait => "TIME-WAIT".into(),
        TcpState::Close => "CLOSE".into(),
        TcpState::CloseWait => "CLOSE-WAIT".into(),
        TcpState::LastAck => "LAST-ACK".into(),
        TcpState::Listen => "LISTEN".into(),
        TcpState::Closing => "CLOSING".into(),
        TcpState::Other(code) => format!("{code:02X}"),
    }
}

/// One row as text, unpainted: `P   ESTAB      127.0.0.1:40000 > 127.0.0.1:2021`.
pub fn row_text(e: &Entry, label: &str, clk_tck: Option<u64>) -> String {
    let timer =
        clk_tck.and_then(|t| e.time_wait_left(t)).map(|d| format!(" {:.1}s", d.as_secs_f64())).unwrap_or_default();
    format!("{label:<4}{:<11}{} > {}{timer}", state_name(e.state), e.local, e.remote)
}

/// The rows of one table that matter, in label order, then how many others there are.
fn column(table: &Table, facts: &Facts, side: Side, style: Style) -> Vec<String> {
    const ORDER: [&str; 5] = ["C", "P", "U-1", "U", "S"];
    let mut mine: Vec<(usize, &'static str, &Entry)> = table
        .rows
        .iter()
        .filter_map(|e| label(e, facts, side).map(|l| (ORDER.iter().position(|o| *o == l).unwrap_or(9), l, e)))
        .collect();
    mine.sort_by_key(|(rank, _, e)| (*rank, e.local.port(), e.remote.port()));
    let mut lines = vec![pad(&table.title, style, |s| style.heading(s))];
    for (_, l, e) in &mine {
        lines.push(pad(&row_text(e, l, table.clk_tck), style, |s| style.label(l, s)));
    }
    if mine.is_empty() {
        lines.push(pad("(no row of this run)", style, |s| style.dim(s)));
    }
    let others = table.rows.len() - mine.len();
    lines.push(pad(&format!("... and {others} other rows (other services)"), style, |s| style.dim(s)));
    lines
}

/// Pad to [`COLUMN`] characters before painting, so colour codes do not skew the columns.
fn pad(text: &str, _style: Style, paint: impl Fn(&str) -> String) -> String {
    let len = text.chars().count();
    let text: String = if len > COLUMN { text.chars().take(COLUMN).collect() } else { text.to_string() };
    let fill = COLUMN.saturating_sub(text.chars().count());
    format!("{}{}", paint(&text), " ".repeat(fill))
}

/// The two tables side by side, client on the left.
pub fn side_by_side(client: &Table, server: &Table, facts: &Facts, style: Style) -> String {
    let left = column(client, facts, Side::Client, style);
    let right = column(server, facts, Side::Server, style);
    let blank = " ".repeat(COLUMN);
    let mut out = String::new();
    for i in 0..left.len().max(right.len()) {
        let l = left.get(i).unwrap_or(&blank);
        let r = right.get(i).map(|r| r.trim_end()).unwrap_or("");
        out.push_str(&format!("  {l} | {r}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Via};
    use crate::ftp::Dialect;
    use crate::tcp::table::parse;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The lab after one download from ProFTPD on 2021 (data from 2020): C = 51000 (0xC738),
    /// P = 40000 (0x9C40), U-1 = 39999 (0x9C3F).
    fn facts() -> Facts {
        let mut f = Facts::default();
        f.see(&Event::SshConnected { client: a("10.250.0.1:51000"), server: a("10.250.0.2:22") });
        f.see(&Event::ControlOpened { via: Via::Relay("perl"), proxy: a("127.0.0.1:40000"), ftp: a("127.0.0.1:2021") });
        f.see(&Event::DialectChosen { dialect: Dialect::ProFtpd, data_port: 39999 });
        f.see(&Event::ForwardListening { listen: a("127.0.0.1:39999"), spare: None });
        f.see(&Event::DataAccepted { from: a("127.0.0.1:2020"), to: a("127.0.0.1:39999"), incarnation: 1 });
        f
    }

    // 10.250.0.1 = 0100FA0A, 10.250.0.2 = 0200FA0A; 22 = 0016; 2021 = 07E5; 2020 = 07E4.
    const SERVER: &str = "\
   0: 0200FA0A:0016 0100FA0A:C738 01 00000000:00000000 00:00000000 00000000     0        0 100 1
   1: 0100007F:9C40 0100007F:07E5 01 00000000:00000000 00:00000000 00000000  1000        0 101 1
   2: 0100007F:07E5 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 102 1
   3: 0100007F:9C3F 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 103 1
   4: 0100007F:07E4 0100007F:9C3F 06 00000000:00000000 03:00001770 00000000     0        0 0 3
   5: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 104 1
";
    const CLIENT: &str = "\
   0: 0100FA0A:C738 0200FA0A:0016 01 00000000:00000000 00:00000000 00000000     0        0 200 1
   1: 0100FA0A:C739 0200FA0A:0050 01 00000000:00000000 00:00000000 00000000     0        0 201 1
";

    #[test]
    fn labels_the_rows_of_this_run() {
        let f = facts();
        let labels: Vec<Option<&str>> = parse(SERVER).iter().map(|e| label(e, &f, Side::Server)).collect();
        assert_eq!(labels, [Some("C"), Some("P"), Some("P"), Some("U-1"), Some("S"), None]);
        let labels: Vec<Option<&str>> = parse(CLIENT).iter().map(|e| label(e, &f, Side::Client)).collect();
        assert_eq!(labels, [Some("C"), None]);
    }

    #[test]
    fn side_by_side_with_timers() {
        let client = Table { title: "client".into(), rows: parse(CLIENT), clk_tck: None };
        let server = Table { title: "SSH server".into(), rows: parse(SERVER), clk_tck: Some(100) };
        let text = side_by_side(&client, &server, &facts(), Style { color: false });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("C   ESTAB      10.250.0.1:51000 > 10.250.0.2:22"), "{text}");
        assert!(text.contains("| S   TIME-WAIT  127.0.0.1:2020 > 127.0.0.1:39999 60.0s"), "{text}");
        assert!(text.contains("U-1 LISTEN     127.0.0.1:39999 > 0.0.0.0:0"), "{text}");
        assert!(text.contains("... and 1 other rows"), "{text}");
        // Every left column is the same width: the server's rows line up.
        let bars: Vec<usize> = lines.iter().map(|l| l.find(" | ").unwrap()).collect();
        assert!(bars.iter().all(|&b| b == bars[0]), "{text}");
    }
}
