//! The server's own hash of a file, for `--verify`: which command asks for
//! it (FEAT decides), and what its reply says.
//!
//! - `HASH path` (draft-bryan-ftpext-hash) uses the algorithm selected with
//!   `OPTS HASH SHA-256`; ProFTPD's mod_digest answers
//!   `213-Computing SHA-256 digest` / `213 SHA-256 0-10876 <hex> small.bin`.
//! - `XSHA256 path`, `XSHA1`, `XMD5` (older, one per algorithm): `250 <HEX>`.

use super::features::Features;
use super::{Command, Reply};

/// A hash both sides can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256.
    Sha256,
    /// SHA-1.
    Sha1,
    /// MD5.
    Md5,
}

impl Algorithm {
    /// Strongest first.
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha256, Algorithm::Sha1, Algorithm::Md5];

    /// For the report: `sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha1 => "sha1",
            Algorithm::Md5 => "md5",
        }
    }

    /// HASH's name for it: `SHA-256`.
    pub fn hash_name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha1 => "SHA-1",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Its older command: `XSHA256`.
    pub fn x_verb(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "XSHA256",
            Algorithm::Sha1 => "XSHA1",
            Algorithm::Md5 => "XMD5",
        }
    }

    /// Hex digits in a digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha1 => 40,
            Algorithm::Md5 => 32,
        }
    }
}

/// How to ask the server for a file's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `HASH path`, after `OPTS HASH <name>` if another algorithm is selected.
    Hash(Algorithm),
    /// `XSHA256 path` and the like.
    X(Algorithm),
}

impl Method {
    /// The algorithm either way.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Method::Hash(a) | Method::X(a) => a,
        }
    }

    /// The command that asks for `path`'s hash.
    pub fn command(self, path: &str) -> Command {
        match self {
            Method::Hash(_) => Command::Hash(path.into()),
            Method::X(a) => Command::XHash(a.x_verb(), path.into()),
        }
    }

    /// The digest in `reply` (lower-case hex), or why there is none.
    pub fn parse(self, reply: &Reply) -> Result<String, String> {
        match self {
            Method::Hash(a) => parse_hash(reply, a),
            Method::X(a) => parse_x(reply, a),
        }
    }
}

/// The strongest algorithm the server offers, HASH before its X command.
pub fn choose(features: &Features) -> Option<Method> {
    let offered = features.hash_algorithms();
    Algorithm::ALL.into_iter().find_map(|a| {
        if offered.iter().any(|o| o.eq_ignore_ascii_case(a.hash_name())) {
            Some(Method::Hash(a))
        } else {
            features.has(a.x_verb()).then_some(Method::X(a))
        }
    })
}

/// `213 SHA-256 0-10876 <hex> name`: the last line, its algorithm checked.
fn parse_hash(reply: &Reply, want: Algorithm) -> Result<String, String> {
    if reply.code != 213 {
        return Err(format!("HASH was answered {reply}"));
    }
    let last = reply.lines.last().map(String::as_str).unwrap_or("");
    let mut words = last.get(4..).unwrap_or("").split_whitespace();
    let (algorithm, _range, digest) = (words.next(), words.next(), words.next());
    if !algorithm.is_some_and(|a| a.eq_ignore_ascii_case(want.hash_name())) {
        return Err(format!("asked for {} but the server answered {last:?}", want.hash_name()));
    }
    hex(digest.unwrap_or(""), want).ok_or_else(|| format!("no {} digest in {last:?}", want.hash_name()))
}

/// `250 <HEX>` (ProFTPD), or a digest followed by the name: the first word that is one.
fn parse_x(reply: &Reply, want: Algorithm) -> Result<String, String> {
    if !reply.is_completion() {
        return Err(format!("{} was answered {reply}", want.x_verb()));
    }
    let last = reply.lines.last().map(String::as_str).unwrap_or("");
    let words = last.get(4..).unwrap_or("").split_whitespace();
    words.into_iter().find_map(|w| hex(w, want)).ok_or_else(|| format!("no {} digest in {last:?}", want.as_str()))
}

fn hex(word: &str, want: Algorithm) -> Option<String> {
    (word.len() == want.hex_len() && word.bytes().all(|b| b.is_ascii_hexdigit())).then(|| word.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::parse_reply;

    fn reply(text: &str) -> Reply {
        parse_reply(text.as_bytes()).unwrap().unwrap().0
    }

    const SMALL: &str = "9614eeb5bab6ce25da4530fbddd00d474176845fda93316acd4a967f5a30efec";

    #[test]
    fn choice_by_feat() {
        let feat = |s: &str| Features::parse(&reply(s));
        let proftpd =
            feat("211-Features:\r\n HASH CRC32;MD5;SHA-1*;SHA-256;SHA-512;\r\n XSHA256\r\n XMD5\r\n211 End\r\n");
        assert_eq!(choose(&proftpd), Some(Method::Hash(Algorithm::Sha256)));
        let x = feat("211-Features:\r\n XMD5\r\n XSHA1\r\n211 End\r\n");
        assert_eq!(choose(&x), Some(Method::X(Algorithm::Sha1)));
        let crc_only = feat("211-Features:\r\n HASH CRC32*;\r\n XCRC\r\n211 End\r\n");
        assert_eq!(choose(&crc_only), None);
        assert_eq!(choose(&feat("211-x\r\n MDTM\r\n SIZE\r\n211 End\r\n")), None);
        assert_eq!(Method::X(Algorithm::Md5).command("a b").to_string(), "XMD5 a b");
        assert_eq!(Method::Hash(Algorithm::Sha256).command("a b").to_string(), "HASH a b");
    }

    #[test]
    fn proftpd_replies() {
        let hash = Method::Hash(Algorithm::Sha256);
        let ok = format!("213-Computing SHA-256 digest\r\n213 SHA-256 0-10876 {SMALL} small.bin\r\n");
        assert_eq!(hash.parse(&reply(&ok)).unwrap(), SMALL);
        let spaces = "213 SHA-256 0-4321 cc0e75d2278235239068022f43b2a56a8fc0456c3ffe838828d83d05255e5539 name with spaces.bin\r\n";
        assert!(hash.parse(&reply(spaces)).unwrap().starts_with("cc0e75d2"));
        let sha1 =
            "213-Computing SHA-1 digest\r\n213 SHA-1 0-10876 237d0cbf61dc4928da6c4ebc3c32cea17dc46ef8 small.bin\r\n";
        assert!(hash.parse(&reply(sha1)).unwrap_err().contains("SHA-1"));
        assert_eq!(
            Method::Hash(Algorithm::Sha1).parse(&reply(sha1)).unwrap(),
            "237d0cbf61dc4928da6c4ebc3c32cea17dc46ef8"
        );
        assert!(hash.parse(&reply("550 no-such: No such file or directory\r\n")).is_err());
        assert!(hash.parse(&reply("553 many: Not a regular file\r\n")).is_err());
        let x = format!("250-Computing SHA256 digest\r\n250 {}\r\n", SMALL.to_ascii_uppercase());
        assert_eq!(Method::X(Algorithm::Sha256).parse(&reply(&x)).unwrap(), SMALL);
        let md5 = "250-Computing MD5 digest\r\n250 0C42738040182D62608169A14B22874D\r\n";
        assert_eq!(Method::X(Algorithm::Md5).parse(&reply(md5)).unwrap(), "0c42738040182d62608169a14b22874d");
        // ProFTPD's X commands refuse an empty file; the caller falls back to the size.
        let empty = "501 XSHA256 requires end (0) greater than start (0)\r\n";
        assert!(Method::X(Algorithm::Sha256).parse(&reply(empty)).is_err());
        assert!(Method::X(Algorithm::Sha256).parse(&reply("250 zz\r\n")).is_err());
    }
}
