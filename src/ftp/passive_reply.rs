//! The data port announced by `227` (PASV, RFC 959) and `229` (EPSV, RFC 2428) replies.
//!
//! Every number is parsed fallibly: a hostile server can send anything. The PASV address is
//! returned but should not be trusted: connect to the control connection's host instead.

use super::reply::Reply;
use std::net::Ipv4Addr;

/// Why a passive reply gave no usable port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassiveError {
    /// The server answered with another code (e.g. `425` or `500`).
    #[error("expected a {expected} reply, got {got}")]
    WrongCode {
        /// 227 for PASV, 229 for EPSV.
        expected: u16,
        /// The code received.
        got: u16,
    },
    /// No well-formed address or port in the text; holds the first line as received.
    #[error("no usable address or port in {0:?}")]
    Malformed(String),
}

/// The address and port of `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2).`; the parentheses
/// are optional (RFC 1123 §4.1.2.6 asks clients to scan for the six numbers). Port 0 is refused.
pub fn parse_pasv(reply: &Reply) -> Result<(Ipv4Addr, u16), PassiveError> {
    expect(reply, 227)?;
    let text = reply.text();
    let fields = text
        .split(|c: char| !(c.is_ascii_digit() || c == ','))
        .map(|run| run.split(',').collect::<Vec<_>>())
        .find(|f| f.len() == 6)
        .ok_or_else(|| malformed(reply))?;
    let mut n = [0u8; 6];
    for (slot, s) in n.iter_mut().zip(&fields) {
        *slot = s.parse().map_err(|_| malformed(reply))?;
    }
    let port = u16::from_be_bytes([n[4], n[5]]);
    if port == 0 {
        return Err(malformed(reply));
    }
    Ok((Ipv4Addr::new(n[0], n[1], n[2], n[3]), port))
}

/// The port of `229 Entering Extended Passive Mode (|||port|)`, where `|` stands for whatever
/// character follows `(` (RFC 2428 §3); the port must be in 1..=65535.
pub fn parse_epsv(reply: &Reply) -> Result<u16, PassiveError> {
    expect(reply, 229)?;
    let text = reply.text();
    text.match_indices('(').find_map(|(i, _)| epsv_port(&text[i + 1..])).ok_or_else(|| malformed(reply))
}

/// `s` is what follows `(`: `d d d port d )`.
fn epsv_port(s: &str) -> Option<u16> {
    let mut chars = s.chars();
    // RFC 2428 allows ASCII 33..=126; a digit would make the port ambiguous.
    let d = chars.next().filter(|c| c.is_ascii_graphic() && !c.is_ascii_digit())?;
    let (port, tail) = chars.as_str().strip_prefix(d)?.strip_prefix(d)?.split_once(d)?;
    if !tail.starts_with(')') || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok().filter(|&p| p != 0)
}

fn expect(reply: &Reply, expected: u16) -> Result<(), PassiveError> {
    match reply.code {
        got if got == expected => Ok(()),
        got => Err(PassiveError::WrongCode { expected, got }),
    }
}

fn malformed(reply: &Reply) -> PassiveError {
    let first = reply.lines.first().map_or("", String::as_str);
    PassiveError::Malformed(first.chars().take(120).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::parse_reply;

    fn r(s: &str) -> Reply {
        parse_reply(format!("{s}\r\n").as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn pasv_variants() {
        let lo = Ipv4Addr::LOCALHOST;
        assert_eq!(parse_pasv(&r("227 Entering Passive Mode (127,0,0,1,195,80).")), Ok((lo, 50000)));
        assert_eq!(parse_pasv(&r("227 Entering Passive Mode 127,0,0,1,195,80")), Ok((lo, 50000)));
        assert_eq!(parse_pasv(&r("227 =127,0,0,1,4,1")), Ok((lo, 1025)));
        let ip = Ipv4Addr::new(10, 0, 2, 15);
        assert_eq!(parse_pasv(&r("227 Entering Passive Mode (10,0,2,15,255,255)")), Ok((ip, 65535)));
    }

    #[test]
    fn pasv_hostile() {
        for bad in [
            "227 Entering Passive Mode (999,1,1,1,1,1)",
            "227 Entering Passive Mode (127,0,0,1,195)",
            "227 Entering Passive Mode (127,0,0,1,195,80,1)",
            "227 Entering Passive Mode (127,0,0,1,99999999999999999999999,80)",
            "227 Entering Passive Mode (127,0,0,1,0,0)",
            "227 Entering Passive Mode (127,0,0,1,,80)",
            "227 Entering Passive Mode ()",
            "227 ",
        ] {
            assert!(matches!(parse_pasv(&r(bad)), Err(PassiveError::Malformed(_))), "{bad}");
        }
        let err = parse_pasv(&r("425 Use PORT or PASV first.")).unwrap_err();
        assert_eq!(err, PassiveError::WrongCode { expected: 227, got: 425 });
    }

    #[test]
    fn epsv_variants() {
        assert_eq!(parse_epsv(&r("229 Entering Extended Passive Mode (|||50000|)")), Ok(50000));
        assert_eq!(parse_epsv(&r("229 Entering Extended Passive Mode (!!!6446!).")), Ok(6446));
        assert_eq!(parse_epsv(&r("229 Extended Passive (x) ok (|||65535|)")), Ok(65535));
    }

    #[test]
    fn epsv_hostile() {
        for bad in [
            "229 Entering Extended Passive Mode (|||0|)",
            "229 Entering Extended Passive Mode (|||65536|)",
            "229 Entering Extended Passive Mode (|||99999999999999999999999|)",
            "229 Entering Extended Passive Mode (|||+5|)",
            "229 Entering Extended Passive Mode (|||-1|)",
            "229 Entering Extended Passive Mode (||50000|)",
            "229 Entering Extended Passive Mode (|||50000!)",
            "229 Entering Extended Passive Mode (|||50000|",
            "229 Entering Extended Passive Mode (1115000001)",
            "229 Entering Extended Passive Mode (|||)",
            "229 Entering Extended Passive Mode (",
            "229 ",
        ] {
            assert!(matches!(parse_epsv(&r(bad)), Err(PassiveError::Malformed(_))), "{bad}");
        }
        let err = parse_epsv(&r("227 Entering Passive Mode (127,0,0,1,195,80).")).unwrap_err();
        assert_eq!(err, PassiveError::WrongCode { expected: 229, got: 227 });
    }
}
