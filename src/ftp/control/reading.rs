//! Reading replies within a deadline: each reply whole, and the greeting whole, however many
//! `120` (ready in n minutes) replies a server sends before it, so that a server that never
//! finishes (a line dribbled forever, `120` twice a second forever) ends within `--timeout` (a
//! hash's reply: that and a time for the file's size, [`super::allowance`]).

use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use super::{Control, FtpError, State};
use crate::error::{Classify, Kind};
use crate::ftp::Reply;

impl Control {
    /// Read the server's greeting (220). A 120 "ready in n minutes" is waited out, within
    /// [`Control::timeout`] for the whole greeting: one deadline, not one per reply.
    pub async fn greeting(&mut self) -> Result<Reply> {
        let deadline = Instant::now() + self.timeout;
        let mut waits: Option<(Reply, usize)> = None;
        loop {
            let reply = match self.read_reply_by(deadline, self.timeout).await {
                Ok(reply) => reply,
                Err(e) => match &waits {
                    // Not a silence: name what it kept sending.
                    Some((last, n)) if self.buf.is_empty() && Instant::now() >= deadline => {
                        let why = format!(
                            "the FTP server kept sending {:?} ({n} times in {:?}) and never its greeting (220)",
                            last.lines[0], self.timeout
                        );
                        return Err(crate::error::classified(Kind::Transfer, why));
                    }
                    _ => return Err(e),
                },
            };
            match reply.code {
                120 => waits = Some((reply, waits.map_or(1, |(_, n)| n + 1))),
                220 => return Ok(reply),
                _ => return Err(FtpError { command: "connect".into(), reply }.classified()),
            }
        }
    }

    /// Read the next reply, bounded by [`Control::timeout`] (and for a hash, by the file's size:
    /// [`super::allowance`]).
    pub async fn read_reply(&mut self) -> Result<Reply> {
        let bound = self.timeout.saturating_add(self.sized.allowance(self.state.oldest()));
        self.read_reply_by(Instant::now() + bound, bound).await
    }

    /// Read the next reply, all of it by `deadline` (`bound` from now, for the message).
    async fn read_reply_by(&mut self, deadline: Instant, bound: Duration) -> Result<Reply> {
        match tokio::time::timeout_at(deadline, self.read_reply_unbounded()).await {
            Ok(reply) => reply,
            Err(_) => {
                let why = self.no_reply(bound);
                // A reply begun and not finished: where it ends can no longer be told (a later
                // reply's line could be taken for its closing one, and a pipelined transfer's
                // data for its own), so this connection carries nothing more.
                if !self.buf.is_empty() {
                    self.state = State::Broken("a reply was left unfinished".into());
                }
                Err(crate::error::classified(Kind::Transfer, why))
            }
        }
    }

    /// Why no reply came: none at all, or one begun and never finished (a multi-line reply
    /// whose closing line, its own code and a space, a hostile server left out).
    fn no_reply(&self, timeout: Duration) -> String {
        let mut lines = self.buf.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let Some(first) = lines.next() else { return format!("the FTP server sent no reply within {timeout:?}") };
        let first = String::from_utf8_lossy(&first[..first.len().min(80)]);
        let code = first.get(..3).unwrap_or("");
        let more = match lines.count() {
            0 => String::new(),
            1 => " and 1 more line".into(),
            n => format!(" and {n} more lines"),
        };
        format!(
            "the FTP server left its reply unfinished for {timeout:?}: {:?}{more}, without the line that closes it (`{code} `)",
            first.trim_end()
        )
    }
}
