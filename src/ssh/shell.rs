//! A shell kept open on the SSH server for the socket-table readings.
//!
//! Each exec channel costs sshd a fork and a login shell (~20 ms); a bulk run
//! that rotates control connections reads the socket table once per
//! connection. One `sh` started once and fed commands on its stdin answers in
//! the time `cat` takes. Each answer ends with a marker line made unique by a
//! counter, so output can never be mistaken for the end.

use anyhow::{bail, Context, Result};
use russh::client::Msg;
use russh::ChannelStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ssh::helper::Helper;
use crate::ssh::{Session, EXEC_TIMEOUT};

/// A running remote `sh`.
pub struct Shell {
    stream: ChannelStream<Msg>,
    buf: Vec<u8>,
    count: u64,
}

impl Helper for Shell {
    /// Start `sh` on the SSH server.
    async fn start(session: &Session) -> Result<Shell> {
        let channel = session.exec_channel("exec sh").await?;
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
        // Where the marker may still start: each chunk is searched once, not the whole
        // buffer again (a busy server's socket table is megabytes; that was quadratic).
        let mut from = 0;
        tokio::time::timeout(EXEC_TIMEOUT, async {
            loop {
                if let Some(at) = find(&self.buf, end.as_bytes(), from) {
                    let out = String::from_utf8_lossy(&self.buf[..at + 1]).into_owned();
                    self.buf.drain(..at + end.len());
                    return Ok(out);
                }
                let mut chunk = [0u8; 16 * 1024];
                let n = self.stream.read(&mut chunk).await.context("reading the remote shell")?;
                if n == 0 {
                    bail!("the remote shell exited");
                }
                from = (self.buf.len() + 1).saturating_sub(end.len());
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .context("the remote shell did not answer in time")?
    }
}

/// The first `needle` in `haystack` that starts at `from` or later.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|at| at + from)
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn finds_the_marker() {
        assert_eq!(find(b"a\nb\n\n--m--\n", b"\n\n--m--\n", 0), Some(3));
        assert_eq!(find(b"a\nb\n\n--m--\n", b"\n\n--m--\n", 3), Some(3));
        assert_eq!(find(b"a\nb\n\n--m--\n", b"\n\n--m--\n", 4), None);
        assert_eq!(find(b"a\n--m--\n", b"\n\n--m--\n", 0), None);
        assert_eq!(find(b"a", b"\n\n--m--\n", 9), None);
    }
}
