//! `--verify`: each copy checked against the FTP server's own hash of the
//! file (HASH, else XSHA256/XSHA1/XMD5: [`crate::ftp::digest`]), compared
//! with the hash of the local bytes as they were written (or read, for a
//! put). The local hash is computed chunk by chunk as the bytes stream past,
//! never by reading the file again; only a resumed download hashes the part
//! it already had, off the async threads, before the rest arrives.
//!
//! Where the server offers no hash the size check is all there is, and the
//! run says so once.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use sha1::Digest;

use crate::error::{classified, Kind};
use crate::events::{Event, Events};
use crate::ftp::digest::{self, Algorithm, Method};
use crate::ftp::{Command, Reply};
use crate::link::Link;

/// A running hash of the bytes of one transfer.
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// MD5.
    Md5(md5::Context),
}

impl Hasher {
    /// A fresh hash.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Md5 => Hasher::Md5(md5::Context::new()),
        }
    }

    /// Add the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Md5(h) => h.consume(bytes),
        }
    }

    /// The digest, lower-case hex.
    pub fn finish(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().0.to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// How this link asks for hashes: None when `--verify` is off, or when the
/// server offers no hash we can compute (said once per run). Decided once per
/// link, with HASH's algorithm selected then (OPTS HASH): later files send
/// their HASH in the same write as their RETR.
pub async fn method(link: &mut Link<'_>) -> Result<Option<Method>> {
    if !link.spec().verify {
        return Ok(None);
    }
    if let Some(known) = link.verify_method {
        return Ok(known);
    }
    let chosen = digest::choose(link.features().await?);
    match chosen {
        None => {
            static SAID: AtomicBool = AtomicBool::new(false);
            let why =
                "the FTP server offers no SHA-256, SHA-1 or MD5 hash (FEAT lists no HASH, XSHA256, XSHA1 or XMD5): \
                       --verify checks sizes only";
            link.events().emit(Event::Unverified { why: why.into(), first: !SAID.swap(true, Ordering::Relaxed) });
        }
        Some(Method::Hash(a)) => {
            let selected = link.features().await?.hash_selected.clone();
            if !selected.is_some_and(|s| s.eq_ignore_ascii_case(a.hash_name())) {
                link.control.expect(&Command::Opts(format!("HASH {}", a.hash_name())), |r| r.code == 200).await?;
                link.features().await?.hash_selected = Some(a.hash_name().into());
            }
        }
        Some(Method::X(_)) => {}
    }
    link.verify_method = Some(chosen);
    Ok(chosen)
}

/// A hasher for `algorithm` that has already seen the first `len` bytes of
/// `path` (a part file a download resumes), read off the async threads.
pub async fn seeded(algorithm: Algorithm, path: &Path, len: u64) -> Result<Hasher> {
    let mut hasher = Hasher::new(algorithm);
    if len == 0 {
        return Ok(hasher);
    }
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<Hasher> {
        let mut file = std::fs::File::open(&path)?.take(len);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher);
            }
            hasher.update(&buf[..n]);
        }
    })
    .await?
    .with_context(|| "could not read the part file to hash what it holds")
}

/// Ask the server for `remote`'s hash and compare it with `local` (hex).
pub async fn compare(link: &mut Link<'_>, remote: &str, method: Method, local: &str) -> Result<()> {
    let reply = link.control.command(&method.command(remote)).await?;
    judge(link.events(), remote, method, &reply, local)
}

/// Compare the hash in the server's `reply` (to `method`'s command for
/// `remote`) with `local` (hex). A mismatch is a transfer failure; a server
/// that cannot hash this one file (ProFTPD's X commands refuse an empty
/// file) leaves the size check. A hash answered but unreadable (another
/// algorithm than the one selected) leaves it too, and is said once a run: a
/// --verify that checks sizes only is not silent.
pub fn judge(events: &Events, remote: &str, method: Method, reply: &Reply, local: &str) -> Result<()> {
    static SAID: AtomicBool = AtomicBool::new(false);
    let algorithm = method.algorithm();
    let server = match method.parse(reply) {
        Ok(server) => server,
        Err(why) => {
            let why = format!("{remote}: no {} from the server ({why}): size checked only", algorithm.as_str());
            let first = reply.is_completion() && !SAID.swap(true, Ordering::Relaxed);
            events.emit(Event::Unverified { why, first });
            return Ok(());
        }
    };
    if server != local {
        return Err(classified(
            Kind::Transfer,
            format!("{remote}: {} of the copy is {local} but the server's is {server}", algorithm.as_str()),
        ));
    }
    let name = remote.to_string();
    events.emit(Event::Verified { name, algorithm: algorithm.as_str().into(), digest: server });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let digest = |a, parts: &[&[u8]]| {
            let mut h = Hasher::new(a);
            parts.iter().for_each(|p| h.update(p));
            h.finish()
        };
        let empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(digest(Algorithm::Sha256, &[]), empty_sha256);
        assert_eq!(digest(Algorithm::Sha1, &[b""]), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        // In chunks as on the wire, or at once: the same.
        assert_eq!(digest(Algorithm::Md5, &[b"ab", b"c"]), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            digest(Algorithm::Sha256, &[b"a", b"bc"]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn an_unreadable_hash_is_said_once_a_refusal_quietly() {
        let seen = std::sync::Arc::new(crate::events::Recorder::default());
        let events = Events::none().with(seen.clone());
        let method = Method::Hash(Algorithm::Sha256);
        let sha1 = Reply { code: 213, lines: vec!["213 SHA-1 0-3 a9993e364706816aba3e25717850c26c9cd0d89d f".into()] };
        let refused = Reply { code: 550, lines: vec!["550 f: Is a directory".into()] };
        for reply in [&refused, &sha1, &sha1] {
            judge(&events, "f", method, reply, "00").unwrap();
        }
        let firsts: Vec<bool> = seen
            .take()
            .into_iter()
            .filter_map(|e| match e {
                Event::Unverified { why, first } => Some(first && why.contains("SHA-1 0-3")),
                _ => None,
            })
            .collect();
        assert_eq!(firsts, [false, true, false]);
    }

    #[tokio::test]
    async fn a_resumed_part_is_hashed_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        std::fs::write(&path, b"abcdef").unwrap();
        let mut h = seeded(Algorithm::Sha1, &path, 2).await.unwrap();
        h.update(b"c");
        assert_eq!(h.finish(), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
