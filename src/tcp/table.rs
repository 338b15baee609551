//! Pure parser of Linux `/proc/net/tcp` and `/proc/net/tcp6` text.
//!
//! The text is read on the SSH server (`cat /proc/net/tcp /proc/net/tcp6`), so this parses
//! text rather than the local `/proc`; the `procfs` crate also drops the timer fields we need.
//!
//! Row layout: `sl local rem st tx:rx tr:tm->when retrnsmt uid timeout inode ...`. Addresses are
//! hex words in the host's byte order (little-endian on x86 and arm64, assumed here); ports are
//! big-endian hex.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// TCP state, from the kernel's `st` column (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// `01`
    Established,
    /// `02`
    SynSent,
    /// `03`
    SynRecv,
    /// `04`
    FinWait1,
    /// `05`
    FinWait2,
    /// `06`: the row then carries uid 0, inode 0 and the remaining time in `tm->when`.
    TimeWait,
    /// `07`
    Close,
    /// `08`
    CloseWait,
    /// `09`
    LastAck,
    /// `0A`
    Listen,
    /// `0B`
    Closing,
    /// Any other code, kept rather than guessed (e.g. `0C` NEW_SYN_RECV).
    Other(u8),
}

impl From<u8> for TcpState {
    fn from(code: u8) -> Self {
        use TcpState::*;
        match code {
            0x01 => Established,
            0x02 => SynSent,
            0x03 => SynRecv,
            0x04 => FinWait1,
            0x05 => FinWait2,
            0x06 => TimeWait,
            0x07 => Close,
            0x08 => CloseWait,
            0x09 => LastAck,
            0x0A => Listen,
            0x0B => Closing,
            other => Other(other),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Local end; IPv4-mapped IPv6 addresses are returned as IPv4.
    pub local: SocketAddr,
    /// Remote end; IPv4-mapped IPv6 addresses are returned as IPv4.
    pub remote: SocketAddr,
    /// Connection state.
    pub state: TcpState,
    /// `tr`: which timer runs (0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero window probe).
    pub timer_active: u8,
    /// `tm->when`: time until the timer fires, in USER_HZ ticks (`getconf CLK_TCK`).
    pub timer_ticks: u64,
    /// Owner's uid (0 for TIME_WAIT rows, which no longer belong to a socket).
    pub uid: u32,
    /// Socket inode (0 for TIME_WAIT rows).
    pub inode: u64,
}

/// The shell command that prints a Linux host's socket tables, IPv4 then IPv6, as [`parse`]
/// reads them (a kernel without IPv6 has no `tcp6`: that error is dropped).
pub const READ_COMMAND: &str = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null";

/// [`READ_COMMAND`] for only the rows with `port` at either end: a busy host's table is
/// megabytes. It succeeds with no rows too.
pub fn read_rows_with_port(port: u16) -> String {
    format!("grep -h ':{port:04X} ' /proc/net/tcp /proc/net/tcp6 2>/dev/null; true")
}

/// The most TIME_WAIT time left that is believed: [`super::TIME_WAIT_LEN`] plus a margin. The
/// table is read on the SSH server, so a larger timer is a lie or a misread CLK_TCK, and the
/// pacing that waits for it would wait up to 10^19 s.
pub const MAX_TIME_WAIT: Duration = super::TIME_WAIT_LEN.saturating_add(Duration::from_secs(5));

impl Entry {
    /// Time left in TIME_WAIT, at most [`MAX_TIME_WAIT`]; `None` for any other state (or
    /// `clk_tck == 0`).
    pub fn time_wait_left(&self, clk_tck: u64) -> Option<Duration> {
        if self.state != TcpState::TimeWait || clk_tck == 0 {
            return None;
        }
        let secs = self.timer_ticks / clk_tck;
        // u128 so that a hostile tick count cannot overflow the nanosecond product.
        let nanos = u128::from(self.timer_ticks % clk_tck) * 1_000_000_000 / u128::from(clk_tck);
        let left = Duration::from_secs(secs).saturating_add(Duration::from_nanos(nanos as u64));
        Some(left.min(MAX_TIME_WAIT))
    }
}

/// Parses the concatenation of `tcp` and `tcp6` tables. Header lines (`sl ...`), blank lines and
/// malformed lines are skipped: one odd row must not hide the others.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines().filter_map(parse_line).collect()
}

/// Rows of `after` whose (local, remote) pair is not in `before`.
pub fn new_entries<'a>(before: &[Entry], after: &'a [Entry]) -> Vec<&'a Entry> {
    let seen: HashSet<_> = before.iter().map(|e| (e.local, e.remote)).collect();
    after.iter().filter(|e| !seen.contains(&(e.local, e.remote))).collect()
}

fn parse_line(line: &str) -> Option<Entry> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 || !f[0].ends_with(':') {
        return None; // also skips the `sl ...` headers
    }
    let (tr, when) = f[5].split_once(':')?;
    Some(Entry {
        local: parse_addr(f[1])?,
        remote: parse_addr(f[2])?,
        state: TcpState::from(u8::try_from(hex(f[3])?).ok()?),
        timer_active: u8::try_from(hex(tr)?).ok()?,
        timer_ticks: hex(when)?,
        uid: f[7].parse().ok()?,
        inode: f[9].parse().ok()?,
    })
}

/// Strict hex: `from_str_radix` alone would also accept a leading `+`.
fn hex(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::try_from(hex(port)?).ok()?;
    let word = |w: &str| hex(w).map(|v| (v as u32).to_le_bytes());
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on the dev machine (CLK_TCK 100) by a Python script that listened on 127.0.0.1, ::1
    // and :: (dual stack), connected to each (the 127.0.0.1 client from a child that had dropped
    // to uid 1000), then closed one 127.0.0.1 connection client side first to leave a TIME_WAIT,
    // and ran `cat /proc/net/tcp /proc/net/tcp6; ss -tanoe`. Rows abridged, trailing padding
    // trimmed. `ss` printed, for these rows:
    //   LISTEN    127.0.0.1:35845      0.0.0.0:*                      ino:31201
    //   ESTAB     127.0.0.1:36282      127.0.0.1:35845 uid:1000       ino:30521
    //   TIME-WAIT 127.0.0.1:36288      127.0.0.1:35845 timer:(timewait,59sec,0)
    //   TIME-WAIT 192.0.2.2:49714      203.0.113.80:80 timer:(timewait,180ms,0)
    //   ESTAB     [::1]:42150          [::1]:54173                    ino:31206
    //   LISTEN    *:45877              *:*                v6only:0    ino:31203
    //   ESTAB     [::ffff:127.0.0.1]:45877 [::ffff:127.0.0.1]:54784   ino:31209
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   1: 0100007F:8C05 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31201 1 00000000086bb627 100 0 0 10 0
   7: 0100007F:8DBA 0100007F:8C05 01 00000000:00000000 00:00000000 00000000  1000        0 30521 2 00000000a059b868 20 0 0 10 -1
   8: 0100007F:8DC0 0100007F:8C05 06 00000000:00000000 03:0000173E 00000000     0        0 0 3 000000005a145369
   9: 020200C0:C232 507100CB:0050 06 00000000:00000000 03:00000013 00000000     0        0 0 3 000000006b78f0dc
";
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   1: 00000000000000000000000000000000:B335 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31203 1 000000009e6f6676 100 0 0 10 0
   3: 00000000000000000000000001000000:A4A6 00000000000000000000000001000000:D39D 01 00000000:00000000 00:00000000 00000000     0        0 31206 2 00000000a7cf5537 20 0 0 10 -1
   4: 0000000000000000FFFF00000100007F:B335 0000000000000000FFFF00000100007F:D600 01 00000000:00000000 00:00000000 00000000     0        0 31209 1 000000009ca8f500 20 0 0 10 -1
";

    #[test]
    fn decodes_captured_tables() {
        let show = |e: &Entry| format!("{} {} {:?} {} {}", e.local, e.remote, e.state, e.uid, e.inode);
        let got: Vec<String> = parse(&format!("{TCP}{TCP6}")).iter().map(show).collect();
        let want = [
            "127.0.0.1:35845 0.0.0.0:0 Listen 0 31201",
            "127.0.0.1:36282 127.0.0.1:35845 Established 1000 30521",
            "127.0.0.1:36288 127.0.0.1:35845 TimeWait 0 0",
            "192.0.2.2:49714 203.0.113.80:80 TimeWait 0 0",
            "[::]:45877 [::]:0 Listen 0 31203",
            "[::1]:42150 [::1]:54173 Established 0 31206",
            "127.0.0.1:45877 127.0.0.1:54784 Established 0 31209", // IPv4-mapped, as IPv4
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn time_wait_timer() {
        let e = parse(TCP);
        assert_eq!((e[2].timer_active, e[2].timer_ticks, e[1].timer_active), (3, 0x173E, 0));
        // 0x173E = 5950 ticks: ss said 59sec; 0x13 = 19 ticks: ss said 180ms a moment later.
        let ms = Duration::from_millis;
        assert_eq!(e[2].time_wait_left(100), Some(ms(59_500)));
        assert_eq!(e[3].time_wait_left(100), Some(ms(190)));
        assert_eq!(e[3].time_wait_left(0), None);
        assert_eq!(e[1].time_wait_left(100), None);
    }

    #[test]
    fn a_hostile_timer_is_capped_at_time_wait_s_length() {
        // A table as a hostile SSH server could print it: the largest timer the field holds.
        let row =
            "   8: 0100007F:8DC0 0100007F:8C05 06 00000000:00000000 03:FFFFFFFFFFFFFFFF 00000000     0        0 0 3";
        let e = parse(row);
        assert_eq!(e[0].timer_ticks, u64::MAX);
        for clk_tck in [1, 100, 1000] {
            assert_eq!(e[0].time_wait_left(clk_tck), Some(MAX_TIME_WAIT), "CLK_TCK {clk_tck}");
        }
        assert_eq!(e[0].time_wait_left(u64::MAX), Some(Duration::from_secs(1)));
    }

    #[test]
    fn skips_blank_and_malformed_lines() {
        let text = format!(
            "\n{TCP}garbage\n   2: 0100007F:ZZZZ 0100007F:8C05 01 0:0 00:0 0 0 0 1\n   \
             3: 0100007F 0100007F:8C05 01 0:0 00:0 0 0 0 1\n   4: +100007F:0001 0100007F:8C05 01 0:0 00:0 0 0 0 1\n"
        );
        assert_eq!(parse(&text).len(), 4);
        assert!(parse("").is_empty());
    }

    #[test]
    fn other_state_is_kept() {
        let e = parse("   0: 0100007F:0001 0100007F:0002 0C 0:0 00:00000000 0 5 0 9");
        assert_eq!((e[0].state, e[0].uid), (TcpState::Other(0x0C), 5));
    }

    #[test]
    fn new_entries_compares_endpoints() {
        let after = parse(&format!("{TCP}{TCP6}"));
        let before: Vec<Entry> = after[..5].to_vec();
        let mut changed = after[6].clone();
        changed.state = TcpState::CloseWait; // same endpoints, other state: not new
        let new = new_entries(&[before, vec![changed]].concat(), &after);
        assert_eq!(new, vec![&after[5]]);
    }
}
