//! What a server's `FEAT` reply (RFC 2389) says it can do, for `--verify`
//! (HASH, XSHA256, ...) and `mirror` (MLST, MDTM, SIZE).
//!
//! A feature line starts with one space, then the feature name, then its
//! parameters: ` HASH CRC32;MD5;SHA-1*;SHA-256;SHA-512;` (the `*` marks the
//! algorithm HASH uses now, draft-bryan-ftpext-hash).

use super::Reply;

/// The features a server listed; none for a server without FEAT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Feature names, upper case, each with its parameters as sent.
    pub list: Vec<(String, String)>,
    /// HASH's algorithm as selected on this control connection (FEAT's `*`,
    /// or what `OPTS HASH` set since).
    pub hash_selected: Option<String>,
}

impl Features {
    /// The features in a FEAT reply: a `211` lists them; anything else (a 500
    /// from a server without FEAT) lists none.
    pub fn parse(reply: &Reply) -> Features {
        if reply.code != 211 {
            return Features::default();
        }
        // The first and last lines are the reply's frame (`211-Features:`, `211 End`).
        let body = reply.lines.iter().skip(1).take(reply.lines.len().saturating_sub(2));
        let list: Vec<(String, String)> = body
            .filter(|l| l.starts_with(' '))
            .filter_map(|l| {
                let l = l.trim();
                let (name, params) = l.split_once(' ').unwrap_or((l, ""));
                (!name.is_empty()).then(|| (name.to_ascii_uppercase(), params.trim().to_string()))
            })
            .collect();
        let hash_selected = list
            .iter()
            .find(|(n, _)| n == "HASH")
            .and_then(|(_, p)| p.split(';').find_map(|a| a.strip_suffix('*')).map(str::to_string));
        Features { list, hash_selected }
    }

    /// True if the server listed `name` (upper case).
    pub fn has(&self, name: &str) -> bool {
        self.list.iter().any(|(n, _)| n == name)
    }

    /// HASH's algorithms (`SHA-256`, ...), `*` removed; empty without HASH.
    pub fn hash_algorithms(&self) -> Vec<&str> {
        let params = self.list.iter().find(|(n, _)| n == "HASH").map(|(_, p)| p.as_str()).unwrap_or("");
        params.split(';').map(|a| a.trim().trim_end_matches('*')).filter(|a| !a.is_empty()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::parse_reply;

    fn reply(text: &str) -> Reply {
        parse_reply(text.as_bytes()).unwrap().unwrap().0
    }

    /// ProFTPD 1.3.8 with mod_digest, as the lab's answers FEAT.
    const PROFTPD: &str = "211-Features:\r\n CLNT\r\n CSID\r\n EPRT\r\n EPSV\r\n \
        HASH CRC32;MD5;SHA-1*;SHA-256;SHA-512;\r\n HOST\r\n LANG C.UTF-8*\r\n MD5\r\n MDTM\r\n \
        MFF modify;UNIX.group;UNIX.mode;\r\n MFMT\r\n MLST modify*;perm*;size*;type*;unique*;UNIX.group*;\
        UNIX.groupname*;UNIX.mode*;UNIX.owner*;UNIX.ownername*;\r\n RANG STREAM\r\n REST STREAM\r\n SIZE\r\n \
        TVFS\r\n UTF8\r\n XCRC\r\n XMD5\r\n XSHA\r\n XSHA1\r\n XSHA256\r\n XSHA512\r\n211 End\r\n";

    #[test]
    fn proftpd_with_mod_digest() {
        let f = Features::parse(&reply(PROFTPD));
        assert_eq!(f.hash_algorithms(), ["CRC32", "MD5", "SHA-1", "SHA-256", "SHA-512"]);
        assert_eq!(f.hash_selected.as_deref(), Some("SHA-1"));
        for name in ["MLST", "MDTM", "SIZE", "XSHA256", "XSHA1", "XMD5", "MFMT"] {
            assert!(f.has(name), "{name}");
        }
        assert!(!f.has("End") && !f.has("FEATURES:"));
    }

    #[test]
    fn inetutils_and_servers_without_feat() {
        let inetutils = "211- Supported extensions:\r\n MDTM\r\n SIZE\r\n REST STREAM\r\n EPRT\r\n EPSV\r\n \
                         LPRT\r\n LPSV\r\n211 End\r\n";
        let f = Features::parse(&reply(inetutils));
        assert!(f.has("MDTM") && f.has("SIZE") && f.has("REST") && !f.has("MLST") && !f.has("HASH"));
        assert!(f.hash_algorithms().is_empty() && f.hash_selected.is_none());
        assert_eq!(Features::parse(&reply("500 'FEAT': command not understood.\r\n")), Features::default());
        assert_eq!(Features::parse(&reply("211 No features\r\n")).list, []);
    }
}
