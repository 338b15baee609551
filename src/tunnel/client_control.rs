//! The client's side of its control connection: command lines in (bounded, urgent data read
//! through), replies out.

use std::net::SocketAddr;

use anyhow::Result;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::local;
use super::verbs::{self, Verb};
use crate::error::find;
use crate::events::tunnel::Fact;
use crate::events::{Event, Events};
use crate::ftp::control::FtpError;
use crate::ftp::Reply;

/// Longest command line taken from a client.
const MAX_LINE: usize = 8 * 1024;

/// The client's side of the control connection.
pub struct ClientControl {
    read: OwnedReadHalf,
    out: OwnedWriteHalf,
    /// The client's end of it: the default data port C.
    pub peer: SocketAddr,
    /// The tunnel's end of it.
    pub ours: SocketAddr,
    /// Whose socket it is: data connections must be that uid's too.
    pub uid: u32,
    /// A command line read in part.
    partial: Vec<u8>,
    /// Lines the client sent during a transfer, to be answered after it.
    pending: std::collections::VecDeque<String>,
    /// The client said ABOR during the transfer (answered when it has ended, either way).
    pub aborted: bool,
    /// Where the tunnel's facts about it go.
    pub events: Events,
}

impl ClientControl {
    /// Wrap an accepted control connection made by `uid`.
    pub fn new(
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        ours: SocketAddr,
        uid: u32,
        events: Events,
    ) -> ClientControl {
        // Replies go as they are written: with Nagle, a 226 written right after its 150 waited
        // for the client's delayed ACK of the 150 (40 ms a file in a mirror of small files).
        let _ = stream.set_nodelay(true);
        let (read, out) = stream.into_split();
        let (partial, pending) = (Vec::new(), Default::default());
        ClientControl { read, out, peer, ours, uid, partial, pending, aborted: false, events }
    }

    /// Who its data connections are for.
    pub fn local(&self) -> local::Client {
        local::Client { uid: self.uid, control: self.ours, events: self.events.clone() }
    }

    /// Emit a fact of the tunnel's about this client.
    pub fn fact(&self, fact: Fact) {
        self.events.emit(Event::Tunnel(fact));
    }

    /// The next command line, telnet sequences removed; None when the client has gone.
    pub async fn next(&mut self) -> Result<Option<String>> {
        match self.pending.pop_front() {
            Some(line) => Ok(Some(line)),
            None => self.read_line().await,
        }
    }

    /// Cancel-safe: what was read of a line stays in `partial` for the next call.
    ///
    /// Read with `try_read` until the socket says WouldBlock, not through `AsyncRead`: tokio
    /// takes a short read for a drained socket and waits for the next edge, but Linux ends a
    /// read at TCP's urgent mark, and a client's ABOR comes right behind one (telnet's DM, sent
    /// as urgent data by lftp and BSD ftp): the ABOR then sat unread for as long as the
    /// transfer it was meant to stop.
    async fn read_line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                let line =
                    String::from_utf8_lossy(&verbs::strip_telnet(&line)).trim_end_matches(['\r', '\n']).to_string();
                let shown = if matches!(verbs::parse(&line), Verb::Pass(_)) { "PASS ****" } else { &line };
                tracing::debug!("tunnel: client {} ---> {}", self.peer, crate::ftp::shown::shown_lines(shown));
                return Ok(Some(line));
            }
            anyhow::ensure!(
                self.partial.len() < MAX_LINE,
                "the client sent a command line longer than {MAX_LINE} bytes"
            );
            self.read.readable().await?;
            let mut chunk = [0u8; 4096];
            match self.read.try_read(&mut chunk) {
                Ok(0) => return Ok(None), // the client's end (a line cut short by it is dropped)
                Ok(n) => self.partial.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Until the client says ABOR (or goes away), during a transfer: other commands wait
    /// for it to end ([`ClientControl::next`] gives them then).
    pub async fn until_abort(&mut self) {
        loop {
            match self.read_line().await {
                Ok(Some(line)) if verbs::parse(&line) == Verb::Abor => {
                    // Noted before returning: the transfer may end at the same moment, and win.
                    self.aborted = true;
                    return;
                }
                Ok(Some(line)) => self.pending.push_back(line),
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Send one reply of our own (one line, or lines joined by `\r\n`).
    pub async fn say(&mut self, reply: &str) -> Result<()> {
        tracing::debug!("tunnel: <--- {reply}");
        self.out.write_all(format!("{reply}\r\n").as_bytes()).await?;
        Ok(())
    }

    /// Relay the server's reply as it came.
    pub async fn relay(&mut self, reply: &Reply) -> Result<()> {
        let mut wire = reply.lines.join("\r\n");
        wire.push_str("\r\n");
        self.out.write_all(wire.as_bytes()).await?;
        Ok(())
    }

    /// A failure's reply: the server's own where it refused, else one of ours.
    pub async fn fail(&mut self, e: &anyhow::Error, code: u16) -> Result<()> {
        match find::<FtpError>(e) {
            Some(refused) => self.relay(&refused.reply.clone()).await,
            None => self.say(&format!("{code} {}", crate::ftp::shown::shown_lines(&format!("{e:#}")))).await,
        }
    }
}
