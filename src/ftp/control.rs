//! The FTP control connection over any byte stream (an SSH channel here).
//!
//! It sends [`Command`]s and reads [`Reply`]s, tracing both as `ftp -d` does
//! (`---> RETR x`, with `PASS ****`), and bounds every wait so that a server
//! that hangs becomes an error, not a hang.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{parse_reply, Command, Reply};
use crate::error::Kind;

/// How long to wait for any reply unless told otherwise (`--timeout`).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

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

/// One FTP control connection.
pub struct Control {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    /// How long to wait for a reply.
    pub timeout: Duration,
}

impl Control {
    /// Wrap a connected stream; the caller reads the greeting with [`Control::greeting`].
    pub fn new(stream: impl Stream + 'static, timeout: Duration) -> Control {
        Control { stream: Box::new(stream), buf: Vec::new(), timeout }
    }

    /// Like [`Control::new`], for a stream of which `read_ahead` was already
    /// read (a relay's ready report can arrive together with the greeting).
    pub fn with_read_ahead(stream: impl Stream + 'static, read_ahead: Vec<u8>, timeout: Duration) -> Control {
        Control { stream: Box::new(stream), buf: read_ahead, timeout }
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
        tokio::time::timeout(timeout, self.read_reply_unbounded()).await.map_err(|_| {
            crate::error::classified(Kind::Transfer, format!("the FTP server sent no reply within {timeout:?}"))
        })?
    }

    async fn read_reply_unbounded(&mut self) -> Result<Reply> {
        loop {
            let parsed = parse_reply(&self.buf).map_err(|e| {
                crate::error::classified(Kind::FtpRefused, format!("the FTP server sent a malformed reply: {e}"))
            })?;
            if let Some((reply, used)) = parsed {
                self.buf.drain(..used);
                for line in &reply.lines {
                    tracing::info!(target: "ftp", "{line}");
                }
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.context("reading the FTP control connection")?;
            if n == 0 {
                return Err(crate::error::classified(Kind::Transfer, "the FTP server closed the control connection"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Send one command.
    pub async fn send(&mut self, cmd: &Command) -> Result<()> {
        let wire = cmd.to_wire()?;
        tracing::info!(target: "ftp", "---> {}", cmd.redacted());
        self.stream.write_all(&wire).await.context("writing the FTP control connection")?;
        self.stream.flush().await?;
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

    /// QUIT, politely and briefly; errors do not matter on the way out.
    pub async fn quit(&mut self) {
        self.timeout = Duration::from_secs(2);
        let _ = self.command(&Command::Quit).await;
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
        server.write_all(b"331 Password required\r\n530 Login incorrect.\r\n").await.unwrap();
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
}
