//! The FTP control connection over any byte stream (an SSH channel here).
//!
//! It sends [`Command`]s and reads [`Reply`]s, tracing both as `ftp -d` does
//! (`---> RETR x`, with `PASS ****`), and bounds every wait so that a server
//! that hangs becomes an error, not a hang.
//!
//! It also keeps the conversation in step. A command's final reply (2xx-5xx)
//! may come long after its 1xx (a transfer), and a caller that gives up early
//! leaves that reply unread: the next command would then read it as its own.
//! So the connection remembers the command whose final reply is still owed,
//! refuses to send anything while one is ([`OutOfStep`]), and offers one way
//! back, [`Control::resync`]: read up to that reply, or ABOR and read through,
//! within a bound. A connection that cannot be brought back must be closed.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{parse_reply, Command, Reply};
use crate::error::Kind;

/// How long to wait for any reply unless told otherwise (`--timeout`).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// [`Control::resync`]: how long to wait for an owed final reply before
/// sending ABOR, and again for the replies that ABOR brings. A transfer whose
/// data connection we closed ends at once (426, or 226 if all was sent).
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

impl FtpError {
    /// Refusals (login, missing file, permission) apart from data connection failures.
    pub fn kind(&self) -> Kind {
        match self.reply.code {
            425 | 426 | 451 => Kind::Transfer,
            400..=599 => Kind::FtpRefused,
            _ => Kind::Transfer,
        }
    }
}

/// The server ended the control connection (EOF). Over SSH the cause may be
/// the SSH connection itself: the caller, who knows the session, says which.
#[derive(Debug, thiserror::Error)]
#[error("the FTP server closed the control connection")]
pub struct ControlClosed;

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

/// Where the conversation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Every command sent has had its final reply.
    InStep,
    /// This command (as traced) still owes its final reply.
    Owed(String),
    /// The stream failed, or a reply could not be parsed: close the connection.
    Broken(String),
}

/// One FTP control connection.
pub struct Control {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    state: State,
    /// How long to wait for a reply.
    pub timeout: Duration,
}

impl Control {
    /// Wrap a connected stream; the caller reads the greeting with [`Control::greeting`].
    pub fn new(stream: impl Stream + 'static, timeout: Duration) -> Control {
        // The greeting is owed as if "connect" were a command.
        Control { stream: Box::new(stream), buf: Vec::new(), state: State::Owed("connect".into()), timeout }
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
        let owed = match &self.state {
            State::InStep => return Ok(()),
            State::Broken(why) => return Err(OutOfStep::Broken(why.clone()).into()),
            State::Owed(cmd) => cmd.clone(),
        };
        tracing::debug!("bringing the control connection back in step: reading on to the final reply to {owed}");
        if self.read_finals(1, bound).await.is_ok() {
            return Ok(());
        }
        if !matches!(self.state, State::Owed(_)) {
            return Err(OutOfStep::Broken(format!("no final reply to {owed}")).into());
        }
        tracing::debug!("no final reply to {owed} within {bound:?}: sending ABOR");
        let aborting = async {
            self.write(&Command::Abor).await?;
            self.read_finals(2, bound).await
        };
        let result = aborting.await;
        if result.is_err() {
            self.state = State::Broken(format!("ABOR after {owed} was not answered in step"));
        }
        result.with_context(|| format!("could not bring the FTP control connection back in step after {owed}"))
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

    /// Read the server's greeting (220; a 120 "ready in n minutes" is waited out).
    pub async fn greeting(&mut self) -> Result<Reply> {
        let mut reply = self.read_reply().await?;
        while reply.code == 120 {
            reply = self.read_reply().await?;
        }
        if reply.code != 220 {
            return Err(FtpError { command: "connect".into(), reply }.into());
        }
        Ok(reply)
    }

    /// Read the next reply, bounded by [`Control::timeout`].
    pub async fn read_reply(&mut self) -> Result<Reply> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.read_reply_unbounded()).await {
            Ok(reply) => reply,
            Err(_) => Err(crate::error::classified(Kind::Transfer, self.no_reply(timeout))),
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

    async fn read_reply_unbounded(&mut self) -> Result<Reply> {
        loop {
            let parsed = match parse_reply(&self.buf) {
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
                    tracing::info!(target: "ftp", "{line}");
                }
                if !reply.is_preliminary() && matches!(self.state, State::Owed(_)) {
                    self.state = State::InStep;
                }
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
                return Err(ControlClosed.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Send one command; refused while an earlier one still owes its final reply.
    pub async fn send(&mut self, cmd: &Command) -> Result<()> {
        match &self.state {
            State::InStep => {}
            State::Owed(c) => return Err(OutOfStep::Owed(c.clone()).into()),
            State::Broken(why) => return Err(OutOfStep::Broken(why.clone()).into()),
        }
        self.write(cmd).await?;
        self.state = State::Owed(cmd.redacted());
        Ok(())
    }

    /// Put one command on the wire, whatever the state (ABOR is sent while a transfer owes its reply).
    async fn write(&mut self, cmd: &Command) -> Result<()> {
        let wire = cmd.to_wire()?;
        tracing::info!(target: "ftp", "---> {}", cmd.redacted());
        let written = async {
            self.stream.write_all(&wire).await?;
            self.stream.flush().await
        };
        if let Err(e) = written.await {
            self.state = State::Broken(format!("write failed: {e}"));
            return Err(anyhow::Error::new(e).context("writing the FTP control connection"));
        }
        Ok(())
    }

    /// Send a command and read its reply, whatever it is.
    pub async fn command(&mut self, cmd: &Command) -> Result<Reply> {
        self.send(cmd).await?;
        self.read_reply().await
    }

    /// Send a command; its reply must satisfy `ok`, else a typed [`FtpError`].
    pub async fn expect(&mut self, cmd: &Command, ok: impl Fn(&Reply) -> bool) -> Result<Reply> {
        let reply = self.command(cmd).await?;
        if ok(&reply) {
            Ok(reply)
        } else {
            Err(FtpError { command: cmd.redacted(), reply }.into())
        }
    }

    /// USER, PASS (if asked for), then TYPE I: every transfer is binary.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        let reply = self.expect(&Command::User(user.into()), |r| r.code == 230 || r.code == 331).await?;
        if reply.code == 331 {
            self.expect(&Command::Pass(password.into()), |r| r.code == 230 || r.code == 202).await?;
        }
        self.expect(&Command::Type(super::command::TransferType::Binary), |r| r.is_completion()).await?;
        Ok(())
    }

    /// QUIT, politely and briefly, if the conversation is in step (else the
    /// answer would not be QUIT's); errors do not matter on the way out.
    pub async fn quit(&mut self) {
        self.timeout = Duration::from_secs(2);
        if self.in_step() {
            let _ = self.command(&Command::Quit).await;
        }
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn login_hides_the_password_and_sets_binary() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut control = Control::new(client, REPLY_TIMEOUT);
        let script = tokio::spawn(async move {
            let mut seen = String::new();
            server.write_all(b"220 ProFTPD Server (Debian) [127.0.0.1]\r\n").await.unwrap();
            for answer in ["331 Password required for u\r\n", "230 User u logged in\r\n", "200 Type set to I\r\n"] {
                let mut buf = [0u8; 256];
                let n = server.read(&mut buf).await.unwrap();
                seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
                server.write_all(answer.as_bytes()).await.unwrap();
            }
            seen
        });
        control.greeting().await.unwrap();
        control.login("u", "s3cret").await.unwrap();
        assert_eq!(script.await.unwrap(), "USER u\r\nPASS s3cret\r\nTYPE I\r\n");
    }

    #[tokio::test]
    async fn wrong_password_is_a_typed_refusal() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut control = Control::new(client, REPLY_TIMEOUT);
        server.write_all(b"220 hi\r\n331 Password required\r\n530 Login incorrect.\r\n").await.unwrap();
        control.greeting().await.unwrap();
        let err = control.login("u", "bad").await.unwrap_err();
        let ftp = err.downcast_ref::<FtpError>().unwrap();
        assert_eq!((ftp.reply.code, ftp.kind()), (530, Kind::FtpRefused));
        assert_eq!(ftp.command, "PASS ****");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (client, _server) = tokio::io::duplex(64);
        let mut control = Control::new(client, REPLY_TIMEOUT);
        control.timeout = Duration::from_millis(50);
        assert!(control.read_reply().await.unwrap_err().to_string().contains("no reply"));
    }

    /// The failure in issue 9: a transfer given up after its 150 leaves its
    /// 226 unread; the next command must not take it for its own answer.
    #[tokio::test]
    async fn a_stale_final_reply_is_read_before_the_next_command() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut control = Control::new(client, REPLY_TIMEOUT);
        server.write_all(b"220 hi\r\n150 Opening BINARY mode data connection\r\n").await.unwrap();
        control.greeting().await.unwrap();
        assert!(control.in_step());
        control.send(&Command::Retr("big.bin".into())).await.unwrap();
        assert!(control.read_reply().await.unwrap().is_preliminary());
        let refused = control.send(&Command::Stor("up.bin".into())).await.unwrap_err();
        assert!(matches!(refused.downcast_ref::<OutOfStep>(), Some(OutOfStep::Owed(c)) if c == "RETR big.bin"));
        server.write_all(b"226 Transfer complete\r\n213 10876\r\n").await.unwrap();
        control.resync(Duration::from_secs(1)).await.unwrap();
        assert_eq!(control.command(&Command::Size("small.bin".into())).await.unwrap().code, 213);
        let mut seen = vec![0u8; 64];
        let n = server.read(&mut seen).await.unwrap();
        assert_eq!(&seen[..n], b"RETR big.bin\r\nSIZE small.bin\r\n", "no STOR was sent, no ABOR needed");
    }

    /// A control connection whose RETR has had its 150 and still owes its final reply.
    async fn owing_retr() -> (Control, tokio::io::DuplexStream) {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut control = Control::new(client, REPLY_TIMEOUT);
        server.write_all(b"220 hi\r\n150 Opening\r\n").await.unwrap();
        control.greeting().await.unwrap();
        control.send(&Command::Retr("big.bin".into())).await.unwrap();
        control.read_reply().await.unwrap();
        (control, server)
    }

    #[tokio::test]
    async fn a_transfer_that_does_not_end_is_aborted_and_read_through() {
        let (mut control, mut server) = owing_retr().await;
        let script = tokio::spawn(async move {
            let mut buf = vec![0u8; 64];
            let mut seen = Vec::new();
            while !seen.ends_with(b"ABOR\r\n") {
                let n = server.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            server.write_all(b"426 Transfer aborted\r\n226 Abort successful\r\n").await.unwrap();
            server
        });
        control.resync(Duration::from_millis(100)).await.unwrap();
        assert!(control.in_step());
        drop(script.await.unwrap());
    }

    #[tokio::test]
    async fn a_connection_that_cannot_be_brought_back_is_broken() {
        let (mut control, server) = owing_retr().await;
        // Silent: neither the transfer's end nor ABOR's answer comes.
        assert!(control.resync(Duration::from_millis(50)).await.is_err());
        let refused = control.send(&Command::Noop).await.unwrap_err();
        assert!(matches!(refused.downcast_ref::<OutOfStep>(), Some(OutOfStep::Broken(_))));
        drop(server);
    }

    #[tokio::test]
    async fn a_421_ends_the_conversation() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut control = Control::new(client, REPLY_TIMEOUT);
        server.write_all(b"220 hi\r\n421 Service not available, closing control connection\r\n").await.unwrap();
        control.greeting().await.unwrap();
        assert_eq!(control.command(&Command::Retr("x".into())).await.unwrap().code, 421);
        assert!(!control.in_step(), "a 421 connection is not to be reused");
        assert!(control.resync(Duration::from_millis(50)).await.is_err());
    }

    #[tokio::test]
    async fn an_unfinished_reply_is_named() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut control = Control::new(client, Duration::from_millis(50));
        server.write_all(b"150-Opening data connection\r\n226 Transfer complete\r\n").await.unwrap();
        let err = control.read_reply().await.unwrap_err().to_string();
        assert!(err.contains("unfinished for 50ms: \"150-Opening data connection\" and 1 more line,"), "{err}");
        assert!(err.contains("(`150 `)"), "{err}");
    }

    #[tokio::test]
    async fn eof_is_typed_so_the_caller_can_blame_the_transport() {
        let (client, server) = tokio::io::duplex(64);
        let mut control = Control::new(client, REPLY_TIMEOUT);
        drop(server);
        let err = control.greeting().await.unwrap_err();
        assert!(err.downcast_ref::<ControlClosed>().is_some());
        assert!(!control.in_step());
    }
}
