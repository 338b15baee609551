//! A shell kept open on the SSH server for the socket-table readings.
//!
//! Each exec channel costs sshd a fork and a login shell
//! (docs/real-systems.md#other-peers-and-settings); a bulk run
//! that rotates control connections reads the socket table once per
//! connection. One `sh` started once and fed commands on its stdin answers in
//! the time `cat` takes. Each answer ends with a marker line made unique by a
//! counter, so output can never be mistaken for the end.

use anyhow::{bail, Context, Result};
use russh::client::Msg;
use russh::ChannelStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::ssh::helper::{Exec, Helper, EXEC_TIMEOUT};

/// A running remote `sh`.
pub struct Shell {
    stream: ChannelStream<Msg>,
    buf: Vec<u8>,
    count: u64,
}

impl Helper for Shell {
    /// Start `sh` on the SSH server.
    async fn start(on: &impl Exec) -> Result<Shell> {
        let channel = on.exec_channel("exec sh").await?;
        Ok(Shell { stream: channel.into_stream(), buf: Vec::new(), count: 0 })
    }
}

impl Shell {
    /// Run one command line and return its standard output.
    pub async fn run(&mut self, command: &str) -> Result<String> {
        self.count += 1;
        let marker = format!("--ftpssh-end-{}-{}--", std::process::id(), self.count);
        let line = format!("{command}\necho; echo '{marker}'\n");
        self.stream.write_all(line.as_bytes()).await.context("writing to the remote shell")?;
        self.stream.flush().await?;
        let end = format!("\n\n{marker}\n");
        tokio::time::timeout(EXEC_TIMEOUT, answer(&mut self.stream, &mut self.buf, end.as_bytes(), MAX_OUTPUT))
            .await
            .context("the remote shell did not answer in time")?
    }
}

/// Most output accepted from one command. A socket table of 12,000 rows (a busy server) is
/// about 1.8 MB; the shell runs on the SSH server, which must not make us buffer without end.
pub const MAX_OUTPUT: usize = 64 << 20;

/// Read `stream` into `buf` up to `end` (the marker line): the output before it, its last
/// newline kept, and `buf` left holding what followed. Fails past `limit` bytes.
async fn answer(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>, end: &[u8], limit: usize) -> Result<String> {
    // Where the marker may still start: each chunk is searched once, not the whole
    // buffer again (a busy server's socket table is megabytes; that was quadratic).
    let mut from = 0;
    loop {
        if let Some(at) = find(buf, end, from) {
            let out = String::from_utf8_lossy(&buf[..at + 1]).into_owned();
            buf.drain(..at + end.len());
            return Ok(out);
        }
        if buf.len() > limit {
            bail!("the remote shell's output passed {} MiB without ending: given up", limit >> 20);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await.context("reading the remote shell")?;
        if n == 0 {
            bail!("the remote shell exited");
        }
        from = (buf.len() + 1).saturating_sub(end.len());
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The first `needle` in `haystack` that starts at `from` or later.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|at| at + from)
}

#[cfg(test)]
mod tests {
    use super::{answer, find};

    #[tokio::test]
    async fn output_without_end_is_refused_past_the_limit() {
        // A shell that prints forever and never the marker: an error, not a heap that grows.
        let mut endless = tokio::io::repeat(b'x');
        let mut buf = Vec::new();
        let err = answer(&mut endless, &mut buf, b"\n\n--m--\n", 1 << 20).await.unwrap_err();
        assert!(err.to_string().contains("passed 1 MiB without ending"), "{err}");
        assert!(buf.len() <= (1 << 20) + 16 * 1024, "{} bytes buffered", buf.len());
        // Within the limit, the answer and what follows it.
        let mut buf = Vec::new();
        let out = answer(&mut &b"a\nb\n\n--m--\nnext"[..], &mut buf, b"\n\n--m--\n", 1 << 20).await.unwrap();
        assert_eq!((out.as_str(), &buf[..]), ("a\nb\n", &b"next"[..]));
    }

    #[test]
    fn finds_the_marker() {
        assert_eq!(find(b"a\nb\n\n--m--\n", b"\n\n--m--\n", 0), Some(3));
        assert_eq!(find(b"a\nb\n\n--m--\n", b"\n\n--m--\n", 3), Some(3));
        assert_eq!(find(b"a\nb\n\n--m--\n", b"\n\n--m--\n", 4), None);
        assert_eq!(find(b"a\n--m--\n", b"\n\n--m--\n", 0), None);
        assert_eq!(find(b"a", b"\n\n--m--\n", 9), None);
    }
}
