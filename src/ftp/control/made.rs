//! The data connections the FTP server says it made: a transfer command
//! answered with a preliminary reply (1xx) and then a final one other than
//! 425 (which says the connection could not be made). Some servers say 150
//! before they connect (Pure-FTPd), some after (ProFTPD); either way the
//! final reply settles it. The link compares this count with the connections
//! that reached it ([`crate::dataport::gate`]): one the server made for a transfer
//! we gave up on, and that has not arrived yet, must not be taken for the
//! next transfer's.

use crate::ftp::Reply;

/// The tally, fed every reply in order.
#[derive(Debug, Default)]
pub(super) struct Made {
    count: u64,
    preliminary: bool,
}

impl Made {
    /// Note one reply.
    pub(super) fn note(&mut self, reply: &Reply) {
        if reply.is_preliminary() {
            self.preliminary = true;
        } else if std::mem::take(&mut self.preliminary) && reply.code != 425 {
            self.count += 1;
        }
    }

    /// Connections made so far.
    pub(super) fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(codes: &[u16]) -> u64 {
        let mut made = Made::default();
        for code in codes {
            made.note(&Reply { code: *code, lines: vec![format!("{code} x")] });
        }
        made.count()
    }

    #[test]
    fn a_connection_is_one_preliminary_reply_then_a_final_one_but_425() {
        assert_eq!(tally(&[150, 226]), 1);
        assert_eq!(tally(&[150, 426]), 1, "made, then broken");
        assert_eq!(tally(&[150, 425]), 0, "announced, then not made (Pure-FTPd)");
        assert_eq!(tally(&[425, 550, 213]), 0);
        assert_eq!(tally(&[213, 150, 226, 213, 150, 150, 226]), 2);
    }
}
