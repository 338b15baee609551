//! The FTP control connection over any byte stream (an SSH channel here).
//!
//! It sends [`Command`]s and reads [`Reply`]s, tracing both as `ftp -d` does
//! (`---> RETR x`, with `PASS ****`), and bounds every wait so that a server
//! that hangs becomes an error, not a hang (its `reading` module).
//!
//! It also keeps the conversation in step. A command's final reply (2xx-5xx) may come long
//! after its 1xx (a transfer), and a caller that gives up early leaves that reply unread: the
//! next command would then read it as its own. So the connection remembers the commands whose
//! final replies are still owed, in order, refuses a plain [`Control::send`] while any is
//! ([`OutOfStep`]; [`Control::pipeline`] queues commands behind them on purpose), and offers
//! one way back, [`Control::resync`]: read up to those replies, or ABOR and read through,
//! within a bound. A connection that cannot be brought back must be closed.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{parse_reply_in, Command, Reply};
use crate::error::{Classify, Closed, Kind};
pub use place::Place;

/// How long to wait for any reply unless told otherwise (`--timeout`).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long QUIT's answer is waited for on the way out: it changes nothing.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);
/// [`Control::resync`]: how long to wait for an owed final reply before sending ABOR, and again
/// for the replies that ABOR brings. A transfer whose data connection we closed ends at once.
pub const RESYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Anything the control connection can run over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A reply the caller did not want, typed because callers branch on it
/// (a 425 may mean "this server refuses the default port").
#[derive(Debug, thiserror::Error)]
#[error("{command}: the FTP server replied {reply}")]
pub struct FtpError {
    /// The command, as traced (passwords hidden).
    pub command: String,
    /// The reply.
    pub reply: Reply,
}

impl Classify for FtpError {
    /// Refusals (login, missing file, permission) apart from data connection failures.
    fn kind(&self) -> Kind {
        match self.reply.code {
            425 | 426 | 451 => Kind::Transfer,
            400..=599 => Kind::FtpRefused,
            _ => Kind::Transfer,
        }
    }
}

/// The server ended the control connection (EOF): an [`crate::error::Closed`], which the
/// caller who knows the SSH session may blame on it.
pub const CONTROL_CLOSED: Closed = Closed("the FTP server closed the control connection");

/// A command was refused locally because the conversation is not in step.
#[derive(Debug, thiserror::Error)]
pub enum OutOfStep {
    /// The final reply to an earlier command has not been read.
    #[error("the FTP control connection still owes the final reply to {0}")]
    Owed(String),
    /// The stream failed or the server said something unreadable: nothing more can be trusted.
    #[error("the FTP control connection is unusable ({0})")]
    Broken(String),
}

impl Classify for OutOfStep {
    fn kind(&self) -> Kind {
        Kind::Transfer
    }
}

/// Where the conversation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Every command sent has had its final reply.
    InStep,
    /// These commands (as traced) still owe their final replies, oldest first:
    /// more than one when commands were pipelined ([`Control::pipeline`]).
    Owed(std::collections::VecDeque<String>),
    /// The stream failed, or a reply could not be parsed: close the connection.
    Broken(String),
}

impl State {
    fn owed(cmd: String) -> State {
        State::Owed([cmd].into())
    }

    /// `cmd` now owes its final reply too.
    fn push(&mut self, cmd: String) {
        match self {
            State::InStep => *self = State::owed(cmd),
            State::Owed(owed) => owed.push_back(cmd),
            State::Broken(_) => {}
        }
    }

    /// The oldest owed command had its final reply.
    fn answered(&mut self) {
        if let State::Owed(owed) = self {
            owed.pop_front();
            if owed.is_empty() {
                *self = State::InStep;
            }
        }
    }

    /// The oldest command still owed its final reply, as traced ("" when none is).
    fn oldest(&self) -> &str {
        match self {
            State::Owed(owed) => owed.front().map_or("", String::as_str),
            _ => "",
        }
    }

    fn refusal(&self) -> Option<OutOfStep> {
        match self {
            State::InStep => None,
            State::Owed(owed) => Some(OutOfStep::Owed(owed.front().cloned().unwrap_or_default())),
            State::Broken(why) => Some(OutOfStep::Broken(why.clone())),
        }
    }
}

/// A line of the conversation, as it goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// Sent by us (passwords redacted).
    Sent(&'a str),
    /// Received from the server.
    Received(&'a str),
}

/// Who hears the conversation (the `-v` trace, through the event stream).
pub type Transcript = Box<dyn Fn(Line<'_>) + Send + Sync>;

/// One FTP control connection.
pub struct Control {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    state: State,
    /// How long to wait for a reply.
    pub timeout: Duration,
    transcript: Transcript,
    /// The stream ends in our relay, which takes hold lines ([`Control::pipeline_held`]).
    holds: bool,
    made: made::Made,
    /// The next [`Control::resync`] sends ABOR at once ([`Control::abort_on_resync`]).
    abort_first: bool,
    /// Where an outside client's commands brought it ([`Control::place`]).
    place: Place,
    /// The last size the server gave, which a hash of that file may take time for.
    sized: allowance::Sized,
}

impl Control {
    /// Wrap a connected stream; the caller reads the greeting with [`Control::greeting`].
    pub fn new(stream: impl Stream + 'static, timeout: Duration) -> Control {
        // The greeting is owed as if "connect" were a command.
        let transcript = Box::new(|_: Line<'_>| {});
        let state = State::owed("connect".into());
        let made = made::Made::default();
        Control {
            stream: Box::new(stream),
            buf: Vec::new(),
            state,
            timeout,
            transcript,
            holds: false,
            made,
            place: Place::default(),
            abort_first: false,
            sized: allowance::Sized::default(),
        }
    }

    /// The data connections the server has said it made (1xx replies, then a final reply other than 425).
    pub fn connections_made(&self) -> u64 {
        self.made.count()
    }

    /// The stream ends in the perl relay, which takes hold lines.
    pub fn with_holds(mut self) -> Control {
        self.holds = true;
        self
    }

    /// True when [`Control::pipeline_held`] can be used.
    pub fn holds(&self) -> bool {
        self.holds
    }

    /// Tell `transcript` every line sent and received from now on.
    pub fn with_transcript(mut self, transcript: Transcript) -> Control {
        self.transcript = transcript;
        self
    }

    /// True when every command sent has had its final reply: the next command may go.
    pub fn in_step(&self) -> bool {
        self.state == State::InStep
    }

    /// Bring the conversation back in step after a failure, within about
    /// twice `bound`: first read on to the owed command's final reply (a
    /// transfer whose data connection was closed ends by itself), else send
    /// ABOR and read both final replies it brings (the transfer's, then
    /// ABOR's; RFC 959 4.1.3). On error the connection is broken: close it.
    pub async fn resync(&mut self, bound: Duration) -> Result<()> {
        let abort_first = std::mem::take(&mut self.abort_first);
        let (owed, n) = match &self.state {
            State::InStep => return Ok(()),
            State::Broken(why) => return Err(OutOfStep::Broken(why.clone()).classified()),
            State::Owed(owed) => (owed.iter().cloned().collect::<Vec<_>>().join(", "), owed.len()),
        };
        if !abort_first {
            tracing::debug!("bringing the control connection back in step: reading on to the final replies to {owed}");
            if self.read_finals(n, bound).await.is_ok() {
                return Ok(());
            }
        }
        if !matches!(self.state, State::Owed(_)) {
            return Err(OutOfStep::Broken(format!("no final reply to {owed}")).classified());
        }
        tracing::debug!(
            "{}: sending ABOR",
            if abort_first { "aborting".to_string() } else { format!("no final reply to {owed} within {bound:?}") }
        );
        let aborting = async {
            // Our relay lets go of the commands it holds (see `pipeline_held`), so ABOR reaches the server.
            let release: &[u8] = if self.holds { b"FTPSSH-RELEASE\r\n" } else { b"" };
            self.put_on_wire(release, &[&Command::Abor]).await?;
            self.state.push("ABOR".into());
            // The transfer's reply and ABOR's (RFC 959 4.1.3), and any pipelined behind.
            let n = match &self.state {
                State::Owed(owed) => owed.len(),
                _ => 0,
            };
            self.read_finals(n, bound).await
        };
        let result = aborting.await;
        if result.is_err() {
            self.state = State::Broken(format!("ABOR after {owed} was not answered in step"));
        }
        result.with_context(|| format!("could not bring the FTP control connection back in step after {owed}"))
    }

    /// Have the next [`Control::resync`] send ABOR at once, without first waiting for the
    /// transfer to end by itself: its data connection was raced, and whatever the server still
    /// sends or awaits for it must stop now (RFC 2577).
    pub fn abort_on_resync(&mut self) {
        self.abort_first = true;
    }

    /// Read replies until `n` final ones have come, within `bound` in all.
    async fn read_finals(&mut self, n: usize, bound: Duration) -> Result<()> {
        let reading = async {
            let mut finals = 0;
            while finals < n {
                if !self.read_reply_unbounded().await?.is_preliminary() {
                    finals += 1;
                }
            }
            self.state = State::InStep;
            Ok(())
        };
        tokio::time::timeout(bound, reading)
            .await
            .map_err(|_| crate::error::classified(Kind::Transfer, format!("no final reply within {bound:?}")))?
    }

    /// Like [`Control::new`], for a stream of which `read_ahead` was already
    /// read (a relay's ready report can arrive together with the greeting).
    pub fn with_read_ahead(stream: impl Stream + 'static, read_ahead: Vec<u8>, timeout: Duration) -> Control {
        Control { buf: read_ahead, ..Control::new(stream, timeout) }
    }

    async fn read_reply_unbounded(&mut self) -> Result<Reply> {
        loop {
            let parsed = match parse_reply_in(&self.buf, self.owed() > 1) {
                Ok(p) => p,
                Err(e) => {
                    self.state = State::Broken("malformed reply".into());
                    return Err(crate::error::classified(
                        Kind::FtpRefused,
                        format!("the FTP server sent a malformed reply: {e}"),
                    ));
                }
            };
            if let Some((reply, used)) = parsed {
                self.buf.drain(..used);
                for line in &reply.lines {
                    (self.transcript)(Line::Received(line));
                }
                if !reply.is_preliminary() {
                    if let Some(last) = reply.lines.last() {
                        self.sized.note(self.state.oldest(), reply.code, last);
                    }
                    self.state.answered();
                }
                self.made.note(&reply);
                // RFC 959: 421 may answer any command; the server is closing the connection.
                if reply.code == 421 {
                    self.state = State::Broken(format!("the server closed it: {reply}"));
                }
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            let n = match self.stream.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) => {
                    self.state = State::Broken(format!("read failed: {e}"));
                    return Err(anyhow::Error::new(e).context("reading the FTP control connection"));
                }
            };
            if n == 0 {
                self.state = State::Broken("closed".into());
                return Err(CONTROL_CLOSED.classified());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// How many commands still owe their final replies.
    pub fn owed(&self) -> usize {
        match &self.state {
            State::Owed(owed) => owed.len(),
            _ => 0,
        }
    }

    /// Send a command and read its reply, whatever it is.
    pub async fn command(&mut self, cmd: &Command) -> Result<Reply> {
        self.send(cmd).await?;
        let reply = self.read_reply().await?;
        if let Command::Verbatim(line) = cmd {
            self.place.note(line, &reply);
        }
        Ok(reply)
    }

    /// Where an outside client's commands brought this control connection.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// Send a command; its reply must satisfy `ok`, else a typed [`FtpError`].
    pub async fn expect(&mut self, cmd: &Command, ok: impl Fn(&Reply) -> bool) -> Result<Reply> {
        let reply = self.command(cmd).await?;
        if ok(&reply) {
            Ok(reply)
        } else {
            Err(FtpError { command: cmd.redacted(), reply }.classified())
        }
    }

    /// USER, PASS (if asked for, once `ready` is), then TYPE: I (every
    /// transfer binary) unless `--ascii` asked for A for the whole session.
    pub async fn login(
        &mut self,
        user: &str,
        password: &str,
        representation: super::command::TransferType,
        ready: impl Future<Output = Result<()>>,
    ) -> Result<()> {
        let reply = self.expect(&Command::User(user.into()), |r| r.code == 230 || r.code == 331).await?;
        if reply.code == 331 {
            ready.await?;
            self.expect(&Command::Pass(password.into()), |r| r.code == 230 || r.code == 202).await?;
        }
        self.expect(&Command::Type(representation), |r| r.is_completion()).await?;
        Ok(())
    }

    /// QUIT, politely and briefly, if the conversation is in step (else the
    /// answer would not be QUIT's); errors do not matter on the way out.
    pub async fn quit(&mut self) {
        self.timeout = QUIT_TIMEOUT;
        if self.in_step() {
            let _ = self.command(&Command::Quit).await;
        }
        let _ = self.stream.shutdown().await;
    }
}

mod allowance;
mod made;
mod place;
mod reading;
#[cfg(test)]
mod tests;
mod writing;
