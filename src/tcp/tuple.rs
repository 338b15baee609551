//! The data connection's 4-tuple: the FTP server's data source port S and the
//! proxy port T that sshd forwards. In default-port mode every data
//! connection of one control connection has the same one, and its TIME_WAIT
//! is what the book's last step paces around.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::tcp::table::Entry;

/// The default-port data connection's 4-tuple, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DataTuple {
    /// The FTP server's address, as the SSH server sees it.
    pub server: IpAddr,
    /// The FTP server's data source port S, when fixed and known (ProFTPD with `RootRevoke off`:
    /// its control port minus 1); `None` matches any port.
    pub server_port: Option<u16>,
    /// Where the FTP server connects to: the reverse forward on the SSH server host (port T).
    pub proxy: SocketAddr,
}

/// `127.0.0.1:2020 -> 127.0.0.1:40000`, with `*` for an unknown source port.
impl fmt::Display for DataTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.server_port.map_or_else(|| "*".to_owned(), |p| p.to_string());
        match self.server {
            IpAddr::V4(ip) => write!(f, "{ip}:{port} -> {}", self.proxy),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{port} -> {}", self.proxy),
        }
    }
}

/// The longest TIME_WAIT left among rows for `tuple`, seen from either end: the FTP server's
/// (local = server:S, after a download, where it closed first) or the proxy's (local = proxy,
/// after an upload, where sshd closed first). `None` when no such row is in TIME_WAIT.
pub fn time_wait_left(entries: &[Entry], tuple: &DataTuple, clk_tck: u64) -> Option<Duration> {
    let server = tuple.server.to_canonical();
    let proxy = SocketAddr::new(tuple.proxy.ip().to_canonical(), tuple.proxy.port());
    let is_server = |a: &SocketAddr| a.ip() == server && tuple.server_port.is_none_or(|p| a.port() == p);
    entries
        .iter()
        .filter(|e| (is_server(&e.local) && e.remote == proxy) || (e.local == proxy && is_server(&e.remote)))
        .filter_map(|e| e.time_wait_left(clk_tck))
        .max()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tcp::table;

    // Rows as the kernel prints them. 127.0.0.1:2020 -> 127.0.0.1:39999 (0x9C3F) 6000 ticks on
    // the FTP server's side; the proxy's side of another one, 39999 -> 2020, 3000 ticks; an
    // ESTABLISHED row for the same tuple; a TIME_WAIT from 2020 to another port (0x9C40 = 40000).
    pub(crate) const ROWS: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   5: 0100007F:07E4 0100007F:9C3F 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   6: 0100007F:9C3F 0100007F:07E4 06 00000000:00000000 03:00000BB8 00000000     0        0 0 3 0000000000000000
   7: 0100007F:07E4 0100007F:9C3F 01 00000000:00000000 00:00000000 00000000     0        0 3001 1 0000000000000000 20 4 30 10 -1
   8: 0100007F:07E4 0100007F:9C40 06 00000000:00000000 03:00002000 00000000     0        0 0 3 0000000000000000
";

    fn tuple(server_port: Option<u16>, proxy_port: u16) -> DataTuple {
        DataTuple {
            server: "127.0.0.1".parse().unwrap(),
            server_port,
            proxy: SocketAddr::new("127.0.0.1".parse().unwrap(), proxy_port),
        }
    }

    #[test]
    fn time_wait_of_the_tuple_from_either_side() {
        let rows = table::parse(ROWS);
        let s = Duration::from_secs;
        assert_eq!(time_wait_left(&rows, &tuple(Some(2020), 39999), 100), Some(s(60)));
        assert_eq!(time_wait_left(&rows[1..], &tuple(Some(2020), 39999), 100), Some(s(30))); // proxy side
        assert_eq!(time_wait_left(&rows[2..3], &tuple(Some(2020), 39999), 100), None); // ESTABLISHED
        assert_eq!(time_wait_left(&rows, &tuple(Some(2021), 39999), 100), None);
        assert_eq!(time_wait_left(&rows, &tuple(None, 39999), 250), Some(s(24)));
        // 0x2000 ticks, 81.92 s: longer than TIME_WAIT lasts, so capped.
        assert_eq!(time_wait_left(&rows, &tuple(None, 40000), 100), Some(table::MAX_TIME_WAIT));
        assert_eq!(time_wait_left(&rows, &tuple(None, 40001), 100), None);
    }

    #[test]
    fn ipv4_mapped_tuple_matches_ipv4_rows() {
        let rows = table::parse(ROWS);
        let mapped = |p| SocketAddr::new("::ffff:127.0.0.1".parse().unwrap(), p);
        let t =
            DataTuple { server: "::ffff:127.0.0.1".parse().unwrap(), server_port: Some(2020), proxy: mapped(39999) };
        assert_eq!(time_wait_left(&rows, &t, 100), Some(Duration::from_secs(60)));
    }

    #[test]
    fn display() {
        assert_eq!(tuple(Some(2020), 40000).to_string(), "127.0.0.1:2020 -> 127.0.0.1:40000");
        assert_eq!(tuple(None, 40000).to_string(), "127.0.0.1:* -> 127.0.0.1:40000");
    }
}
