//! How long a reply may take beyond `--timeout`. A hash command (HASH, XSHA256, ...) is answered
//! only once the server has read the whole file, and ProFTPD sends nothing meanwhile (its
//! "Computing..." lines are queued behind the digest): a 3 GiB file took it 2.3 s in the lab, a
//! server reading from a slow disk takes minutes. Where the server gave the file's size just
//! before (SIZE, which goes with every transfer), its hash may take one more second for each
//! [`HASH_RATE_FLOOR`] bytes; a hostile server can hold a reply no longer than that.

use std::time::Duration;

/// The slowest hashing a server is allowed without a larger `--timeout`.
pub const HASH_RATE_FLOOR: u64 = 16 << 20;
/// At most this much more, whatever size a server claims.
const MOST: Duration = Duration::from_secs(24 * 3600);

/// The commands answered once the server has read the whole file.
const HASH_VERBS: [&str; 8] = ["HASH", "XSHA256", "XSHA512", "XSHA1", "XSHA", "XMD5", "MD5", "XCRC"];

/// The last file size a server gave: `SIZE path` answered `213 n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sized(Option<(String, u64)>);

impl Sized {
    /// Note the final reply `code text` to `line` (a command as traced).
    pub fn note(&mut self, line: &str, code: u16, text: &str) {
        let Some(path) = line.strip_prefix("SIZE ") else { return };
        let size = text.get(4..).and_then(|n| n.trim().parse().ok());
        self.0 = size.filter(|_| code == 213).map(|n| (path.to_string(), n));
    }

    /// The time beyond `--timeout` the reply to `line` (the oldest command owed) may take.
    pub fn allowance(&self, line: &str) -> Duration {
        let (verb, path) = line.split_once(' ').unwrap_or((line, ""));
        match &self.0 {
            Some((sized, n)) if sized == path && HASH_VERBS.iter().any(|v| v.eq_ignore_ascii_case(verb)) => {
                Duration::from_secs(n / HASH_RATE_FLOOR).min(MOST)
            }
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(line: &str, reply: &str) -> Sized {
        let mut s = Sized::default();
        s.note(line, reply[..3].parse().unwrap(), reply);
        s
    }

    #[test]
    fn a_hash_of_the_file_just_sized_may_take_a_second_per_16_mib() {
        let s = sized("SIZE big.bin", "213 3221225472");
        assert_eq!(s.allowance("HASH big.bin"), Duration::from_secs(192));
        assert_eq!(s.allowance("XSHA256 big.bin"), Duration::from_secs(192));
        assert_eq!(s.allowance("HASH other.bin"), Duration::ZERO);
        assert_eq!(s.allowance("RETR big.bin"), Duration::ZERO);
        assert_eq!(s.allowance("SIZE big.bin"), Duration::ZERO);
    }

    #[test]
    fn a_refused_or_unreadable_size_allows_nothing() {
        for reply in ["550 No such file", "213 lots", "213 -5", "213"] {
            assert_eq!(sized("SIZE f", reply).allowance("HASH f"), Duration::ZERO, "{reply}");
        }
        let mut s = sized("SIZE f", "213 1073741824");
        s.note("SIZE f", 550, "550 gone");
        assert_eq!(s.allowance("HASH f"), Duration::ZERO);
    }

    #[test]
    fn a_claimed_size_of_2_to_the_64_is_capped() {
        assert_eq!(sized("SIZE f", "213 18446744073709551615").allowance("HASH f"), MOST);
    }
}
