//! Server replies (RFC 959 §4.2): a 3-digit code, on one line or spread over several.
//!
//! A multi-line reply opens with `NNN-` and ends at the first line that starts with the same
//! `NNN ` (code, space); lines in between may start with anything, other digits included.

use std::fmt;

/// Longest accepted line, terminator excluded: a hostile server must not make us buffer forever.
pub const MAX_LINE: usize = 8 * 1024;
/// Most lines accepted in one reply.
pub const MAX_LINES: usize = 1000;
/// Most bytes accepted in one reply, terminators included.
pub const MAX_REPLY: usize = 64 * 1024;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The code as sent (e.g. 227), raw: an unexpected code is never mapped to "unknown".
    pub code: u16,
    /// Every line as received, code prefix included, line terminator removed (lossy UTF-8).
    pub lines: Vec<String>,
}

/// Why a reply could not be parsed; the control connection is unusable after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line exceeded [`MAX_LINE`].
    #[error("FTP reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// The reply exceeded [`MAX_LINES`] lines or [`MAX_REPLY`] bytes.
    #[error("FTP reply longer than {MAX_LINES} lines or {MAX_REPLY} bytes")]
    TooLong,
    /// The first line does not start with 3 digits and a space or `-`.
    #[error("malformed FTP reply: {0}")]
    Malformed(String),
}

impl Reply {
    /// The text without the code: from every line a leading `NNN-` or `NNN ` (this reply's code)
    /// is removed, other lines are kept verbatim, and the lines are joined with `'\n'`.
    /// `211-Features:` / ` SIZE` / `211 End` gives `"Features:\n SIZE\nEnd"`.
    pub fn text(&self) -> String {
        let (dash, space) = (format!("{:03}-", self.code), format!("{:03} ", self.code));
        let strip = |l: &String| l.strip_prefix(&dash).or_else(|| l.strip_prefix(&space)).unwrap_or(l).to_owned();
        self.lines.iter().map(strip).collect::<Vec<_>>().join("\n")
    }

    /// 1xx: the action has started; expect another reply.
    pub fn is_preliminary(&self) -> bool {
        self.code / 100 == 1
    }

    /// 2xx: the action succeeded.
    pub fn is_completion(&self) -> bool {
        self.code / 100 == 2
    }

    /// The size a 1xx reply announces in its LAST `(N bytes)` group, as ProFTPD, vsftpd and
    /// inetutils do; the last one because a file name may itself contain `(5 bytes)`.
    pub fn announced_size(&self) -> Option<u64> {
        let text = self.is_preliminary().then(|| self.text())?;
        let digits = text.match_indices('(').rev().find_map(|(i, _)| {
            let rest = &text[i + 1..];
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            let tail = rest[n..].get(..7)?;
            (n > 0 && tail.eq_ignore_ascii_case(" bytes)")).then_some(&rest[..n])
        })?;
        file_size(digits)
    }

    /// True for a 421/425/426 whose text blames a busy address or port: the server could not bind or
    /// connect its data socket, which a later retry fixes. Other 425s (`Use PORT or PASV first.`,
    /// `No data connection`, `Can't open data connection.`) are refusals, not collisions.
    pub fn blames_busy_address(&self) -> bool {
        // strerror() texts: glibc, BSD ("Can't assign ..."), musl, Windows; then bare errno names.
        const REASONS: [&str; 6] = [
            "assign requested address",
            "address already in use",
            "address not available",
            "only one usage of each socket address",
            "eaddrinuse",
            "eaddrnotavail",
        ];
        if !matches!(self.code, 421 | 425 | 426) {
            return false;
        }
        let text = self.text().to_ascii_lowercase();
        REASONS.iter().any(|r| text.contains(r))
    }
}

/// A file size a server gives (SIZE, a 150's `(N bytes)`, MLSD's `size=`): decimal digits, at
/// most `i64::MAX`, the most a file can hold (`off_t`). Anything larger is no size at all, and
/// so can be added to an offset below it without overflow.
pub fn file_size(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().filter(|&n| i64::try_from(n).is_ok())
}

/// The lines as received, joined with `'\n'`: `550 No such file`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

/// Parses the first reply in `buf`. `Ok(None)` means "need more input"; `Ok(Some((reply, n)))`
/// means the reply took the first `n` bytes. Lines end with CRLF; a bare LF is accepted too.
/// Inside a multi-line reply, a line with another code and a space (which RFC 959 has a server
/// pad) is taken as text.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    parse_reply_in(buf, false)
}

/// Like [`parse_reply`]; `pipelined`: more replies are owed behind this one, and a line with
/// another code and a space inside a multi-line reply is an error. Taken as text, a later
/// command's reply could close this one, and that command's data be taken for this one's.
pub fn parse_reply_in(buf: &[u8], pipelined: bool) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut lines = Vec::new();
    let mut prefix: Option<[u8; 3]> = None;
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // Fail as soon as the pending line can no longer fit, instead of buffering more.
            if rest.len() > MAX_LINE + 1 {
                return Err(ReplyError::LineTooLong); // +1: its CR may be pending
            }
            if buf.len() > MAX_REPLY {
                return Err(ReplyError::TooLong);
            }
            return Ok(None);
        };
        let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
        if line.len() > MAX_LINE {
            return Err(ReplyError::LineTooLong);
        }
        pos += nl + 1;
        if pos > MAX_REPLY || lines.len() >= MAX_LINES {
            return Err(ReplyError::TooLong);
        }
        let done = match prefix {
            None => {
                let code = first_line_code(line)?;
                prefix = Some(code);
                line[3] == b' '
            }
            Some(code) => match line {
                [a, b, c, b' ', ..]
                    if pipelined && [a, b, c].iter().all(|d| d.is_ascii_digit()) && [*a, *b, *c] != code =>
                {
                    let (code, other) = (String::from_utf8_lossy(&code), String::from_utf8_lossy(&line[..3]));
                    return Err(ReplyError::Malformed(format!("a multi-line {code} reply closed by a {other} line")));
                }
                _ => line.len() >= 4 && line[..3] == code && line[3] == b' ',
            },
        };
        lines.push(String::from_utf8_lossy(line).into_owned());
        if done {
            let code = prefix.map_or(0, |c| c.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')));
            return Ok(Some((Reply { code, lines }, pos)));
        }
    }
}

fn first_line_code(line: &[u8]) -> Result<[u8; 3], ReplyError> {
    match line {
        [a, b, c, b' ' | b'-', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => Ok([*a, *b, *c]),
        _ => {
            let shown = String::from_utf8_lossy(&line[..line.len().min(40)]);
            let msg = format!("no `NNN ` or `NNN-` in {shown:?}");
            Err(ReplyError::Malformed(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Reply {
        let (r, n) = parse_reply(s.as_bytes()).unwrap().unwrap();
        assert_eq!(n, s.len());
        r
    }

    #[test]
    fn single_line_banners() {
        let r = one("220 ProFTPD Server (Debian) [127.0.0.1]\r\n");
        assert_eq!(r.text(), "ProFTPD Server (Debian) [127.0.0.1]");
        assert!(r.code == 220 && r.is_completion());
        let inetutils = "220 host FTP server (GNU inetutils 2.4) ready.";
        assert_eq!(one(&format!("{inetutils}\r\n")).to_string(), inetutils);
        let r = one("425 Use PORT or PASV first.\r\n");
        assert_eq!(r.code / 100, 4);
        assert_eq!(one("550 No such file\n").code, 550); // bare LF
        assert!(!one("331 Password required for u\r\n").is_completion());
    }

    #[test]
    fn multi_line_feat() {
        let r = one("211-Features:\r\n AUTH TLS\r\n MFF modify;UNIX.group;UNIX.mode;\r\n SIZE\r\n211 End\r\n");
        assert_eq!((r.code, r.lines.len()), (211, 5));
        let text = "Features:\n AUTH TLS\n MFF modify;UNIX.group;UNIX.mode;\n SIZE\nEnd";
        assert_eq!(r.text(), text);
    }

    #[test]
    fn pure_ftpd_banner_and_foreign_digits() {
        let r = one("220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n\
             220-You are user number 1 of 50 allowed.\r\n220-Local time is now 10:02. Server port: 21.\r\n\
             220 You will be disconnected after 15 minutes of inactivity.\r\n");
        assert_eq!(r.lines.len(), 4);
        assert!(r.text().starts_with("--------- Welcome to Pure-FTPd [privsep]"));
        let r = one("123-First\r\n456 x\r\n123-y\r\n1234 z\r\n123 Last\r\n");
        assert_eq!((r.code, r.lines.len()), (123, 5));
    }

    #[test]
    fn byte_by_byte_and_two_in_one_buffer() {
        let buf = b"211-Features:\r\n SIZE\r\n211 End\r\n200 Type set to I\r\n";
        for i in 0..31 {
            assert_eq!(parse_reply(&buf[..i]), Ok(None), "prefix of {i} bytes");
        }
        let (r, n) = parse_reply(buf).unwrap().unwrap();
        assert_eq!((r.code, n), (211, 31));
        let (r, n) = parse_reply(&buf[n..]).unwrap().unwrap();
        assert_eq!((r.code, r.text(), n), (200, "Type set to I".into(), 19));
    }

    #[test]
    fn hostile_inputs() {
        for bad in ["hello", "22 x", "220x", "220", "", "-220 x", " 220 x"] {
            let got = parse_reply(format!("{bad}\r\n").as_bytes());
            assert!(matches!(got, Err(ReplyError::Malformed(_))), "{bad:?}");
        }
        let long = vec![b'2'; MAX_LINE + 2];
        assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));
        let long = [b"220 ".as_slice(), &[b'x'; MAX_LINE], b"\r\n"].concat();
        assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));
        let ok = [b"220 ".as_slice(), &[b'x'; MAX_LINE - 4], b"\r\n"].concat();
        assert!(parse_reply(&ok).unwrap().is_some());
        let mismatched = b"150-Opening data connection\r\n226 Transfer complete\r\n";
        let why = "a multi-line 150 reply closed by a 226 line";
        assert_eq!(parse_reply_in(mismatched, true), Err(ReplyError::Malformed(why.into())));
        assert_eq!(parse_reply(mismatched), Ok(None), "alone, the reply goes on");
        let padded = parse_reply_in(b"211-Status\r\n 226 files\r\n211 End\r\n", true).unwrap().unwrap();
        assert_eq!(padded.0.lines.len(), 3);
        let many = format!("211-x\r\n{}", " y\r\n".repeat(MAX_LINES));
        assert_eq!(parse_reply(many.as_bytes()), Err(ReplyError::TooLong));
        let line = format!("{}\r\n", "y".repeat(1000)); // 70 of them exceed MAX_REPLY
        let big = format!("211-x\r\n{}", line.repeat(70));
        assert_eq!(parse_reply(big.as_bytes()), Err(ReplyError::TooLong));
        let (r, _) = parse_reply(b"550 \xff\xfe\r\n").unwrap().unwrap();
        assert_eq!(r.lines[0], "550 \u{fffd}\u{fffd}");
    }

    #[test]
    fn announced_size() {
        const P: &str = "150 Opening BINARY mode data connection for";
        let size = |s: &str| one(&format!("{s}\r\n")).announced_size();
        // ProFTPD, then inetutils.
        assert_eq!(size(&format!("{P} small.bin (10876 bytes)")), Some(10876));
        assert_eq!(size(&format!("{P} 'small.bin' (10876 bytes).")), Some(10876));
        assert_eq!(size(&format!("{P} a (5 bytes).bin (42 bytes)")), Some(42));
        assert_eq!(size(&format!("{P} x (bytes) (")), None);
        assert_eq!(size(&format!("{P} file list")), None);
        assert_eq!(size("226 Transfer complete (10876 bytes)"), None);
        assert_eq!(size("150 x (99999999999999999999999 bytes)"), None);
        // What a hostile server announced on a resumed download: no file is that large.
        assert_eq!(size("150 Opening BINARY mode data connection for x (18446744073709551615 bytes)"), None);
        assert_eq!(size("150 x (9223372036854775808 bytes)"), None);
        assert_eq!(size("150 x (9223372036854775807 bytes)"), Some(i64::MAX as u64));
    }

    #[test]
    fn file_sizes() {
        assert_eq!(file_size("10876"), Some(10876));
        assert_eq!(file_size("0"), Some(0));
        for no in ["", "+5", "-1", " 5", "5 ", "0x10", "18446744073709551615", "9223372036854775808"] {
            assert_eq!(file_size(no), None, "{no:?}");
        }
    }

    fn reply(line: &str) -> Reply {
        Reply { code: line[..3].parse().unwrap(), lines: vec![line.to_owned()] }
    }

    #[test]
    fn busy_address_by_real_wordings() {
        for yes in [
            "425 Unable to build data connection: Cannot assign requested address", // ProFTPD, Linux
            "425 Unable to build data connection: Address already in use",          // ProFTPD
            "425 Can't build data connection: Address already in use.",             // wu-ftpd, inetutils
            "425 Can't create data socket (0.0.0.0,20): Address already in use.",   // inetutils
            "425 Can't build data connection: Can't assign requested address.",     // BSD strerror
            "425 Can't open data connection: Address not available",                // musl strerror
            "426 Data connection failed: EADDRNOTAVAIL",
            "421 cannot bind data socket (eaddrinuse)",
        ] {
            assert!(reply(yes).blames_busy_address(), "{yes}");
        }
        for no in [
            "425 Use PORT or PASV first.",                             // vsftpd
            "425 No data connection",                                  // Pure-FTPd
            "425 Can't open data connection.",                         // inetutils, no reason
            "425 Unable to build data connection: Connection refused", // ProFTPD
            "425 Failed to establish connection.",                     // vsftpd
            "550 Cannot assign requested address",                     // not a data-connection code
            "226 Transfer complete",
        ] {
            assert!(!reply(no).blames_busy_address(), "{no}");
        }
        let multi =
            Reply { code: 425, lines: vec!["425-Unable to build data connection:".into(), "425 EADDRINUSE".into()] };
        assert!(multi.blames_busy_address());
    }
}
