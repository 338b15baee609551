//! Sending commands: one at a time while nothing is owed, or several in one write behind what
//! is ([`Control::pipeline`]), with lines for our relay on the SSH server among them where
//! the stream ends there ([`Control::pipeline_held`]).

use anyhow::Result;
use tokio::io::AsyncWriteExt;

use super::{Control, Line, OutOfStep, State};
use crate::error::Classify;
use crate::ftp::Command;

impl Control {
    /// Send one command; refused while an earlier one still owes its final reply.
    pub async fn send(&mut self, cmd: &Command) -> Result<()> {
        if let Some(refusal) = self.state.refusal() {
            return Err(refusal.classified());
        }
        self.pipeline(&[cmd]).await
    }

    /// Send `cmds` in one write, behind any commands still owed: the server
    /// answers them in order, and each reply read answers the oldest owed
    /// command. For commands that need no answer before the next goes (SIZE
    /// with RETR, the next file's RETR before this one's 226): a round trip
    /// saved for each. Refused only on a broken connection.
    pub async fn pipeline(&mut self, cmds: &[&Command]) -> Result<()> {
        self.pipeline_among("", cmds).await
    }

    /// Like [`Control::pipeline`], with lines for our relay on the SSH server in front (not
    /// for the FTP server: see [`crate::dataport::relay`]), in the same write.
    pub async fn pipeline_held(&mut self, hold: &str, cmds: &[&Command]) -> Result<()> {
        anyhow::ensure!(self.holds, "this control connection does not end in a relay that holds");
        self.pipeline_among(hold, cmds).await
    }

    async fn pipeline_among(&mut self, hold: &str, cmds: &[&Command]) -> Result<()> {
        if let State::Broken(why) = &self.state {
            return Err(OutOfStep::Broken(why.clone()).classified());
        }
        let mut wire = hold.as_bytes().to_vec();
        wire.extend(self.encode(cmds)?);
        self.write_wire(&wire).await?;
        for cmd in cmds {
            self.state.push(cmd.redacted());
        }
        Ok(())
    }

    /// Put commands on the wire in one write, `front` (for our relay) first, whatever the state
    /// (ABOR is sent while a transfer owes its reply).
    pub(super) async fn put_on_wire(&mut self, front: &[u8], cmds: &[&Command]) -> Result<()> {
        let mut wire = front.to_vec();
        wire.extend(self.encode(cmds)?);
        self.write_wire(&wire).await
    }

    /// `cmds` as they go on the wire, each told to the transcript.
    fn encode(&mut self, cmds: &[&Command]) -> Result<Vec<u8>> {
        let mut wire = Vec::new();
        for cmd in cmds {
            wire.extend(cmd.to_wire()?);
            (self.transcript)(Line::Sent(&cmd.redacted()));
        }
        Ok(wire)
    }

    /// Write `wire` at once; a failed write breaks the connection.
    async fn write_wire(&mut self, wire: &[u8]) -> Result<()> {
        let written = async {
            self.stream.write_all(wire).await?;
            self.stream.flush().await
        };
        if let Err(e) = written.await {
            self.state = State::Broken(format!("write failed: {e}"));
            return Err(anyhow::Error::new(e).context("writing the FTP control connection"));
        }
        Ok(())
    }
}
