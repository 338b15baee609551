//! `ftp::parse_reply` over a server's byte stream, reply after reply, as the control
//! connection reads it; `Reply::text` and `Reply::announced_size` on every reply parsed; and
//! the strict reading used while more replies are owed (`parse_reply_in(.., true)`), which
//! either reads what the tolerant one reads or refuses.
#![no_main]

use ftpssh::ftp::reply::{MAX_LINE, MAX_REPLY};
use ftpssh::ftp::{parse_reply, parse_reply_in, Reply};
use libfuzzer_sys::fuzz_target;

/// A reply as a server would send it again: each line and CRLF.
fn wire(reply: &Reply) -> Vec<u8> {
    reply.lines.iter().flat_map(|l| [l.as_bytes(), b"\r\n"].concat()).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    loop {
        let tolerant = parse_reply(buf);
        if let Ok(strict) = parse_reply_in(buf, true) {
            assert_eq!(Ok(strict), tolerant, "the strict reading agrees or refuses");
        }
        let Ok(Some((reply, n))) = tolerant else { break };
        // Something is consumed, never more than there is, and only whole lines.
        assert!(n > 0 && n <= buf.len() && buf[n - 1] == b'\n');
        assert!(!reply.lines.is_empty() && reply.code <= 999);
        // The same reply is found in exactly the bytes it took, and not in fewer.
        assert_eq!(parse_reply(&buf[..n]), Ok(Some((reply.clone(), n))));
        assert_eq!(parse_reply(&buf[..n - 1]), Ok(None));
        // Sent again, it reads the same, unless lossy UTF-8 grew it past the bounds: each invalid
        // byte became U+FFFD, three bytes, so a line of MAX_LINE bytes may come back longer.
        let again = wire(&reply);
        if again.len() <= MAX_REPLY && reply.lines.iter().all(|l| l.len() <= MAX_LINE) {
            assert_eq!(parse_reply(&again).map(|r| r.map(|(r, _)| r)), Ok(Some(reply.clone())));
        }
        let _ = reply.text();
        let _ = reply.to_string();
        if reply.announced_size().is_some() {
            assert!(reply.is_preliminary());
        }
        buf = &buf[n..];
    }
});
