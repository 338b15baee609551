//! A helper process on the SSH server (the remote shell, the origin lookup, the reclaimer),
//! started on first use and kept for the session; one that failed is
//! dropped, so the next use starts a fresh one.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use russh::client::Msg;
use russh::{Channel, ChannelStream};
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, MutexGuard};

/// How long a remote helper (the relay, the remote shell) may take to answer.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(20);

/// The next line that `who`, a helper on the SSH server, answers on `stream`, within
/// [`EXEC_TIMEOUT`].
pub(crate) async fn answer(stream: &mut ChannelStream<Msg>, who: &str) -> Result<String> {
    tokio::time::timeout(EXEC_TIMEOUT, read_line(stream))
        .await
        .with_context(|| format!("{who} did not answer in time"))?
        .with_context(|| format!("{who} exited"))
}

/// Read one line of a remote helper's output byte by byte: what follows it
/// belongs to someone else.
pub(crate) async fn read_line(stream: &mut ChannelStream<Msg>) -> Result<String> {
    let mut line = Vec::new();
    loop {
        let byte = stream.read_u8().await.context("the remote process exited before ending a line")?;
        if byte == b'\n' || line.len() > 1024 {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte);
    }
}

/// Where helpers are started: the SSH session's exec channels. A trait, so
/// that the helpers need not know the session that holds some of them.
pub trait Exec: Sync {
    /// Start `command` on the SSH server; its stdin and stdout are the channel's data.
    fn exec_channel(&self, command: &str) -> impl Future<Output = Result<Channel<Msg>>> + Send;
}

/// What a [`Lazy`] slot holds: something started over an exec channel.
pub trait Helper: Sized + Send {
    /// Start it on the SSH server.
    fn start(on: &impl Exec) -> impl Future<Output = Result<Self>> + Send;
}

/// The slot of one helper.
pub struct Lazy<T>(Mutex<Option<T>>);

impl<T> Default for Lazy<T> {
    fn default() -> Self {
        Lazy(Mutex::new(None))
    }
}

impl<T: Helper> Lazy<T> {
    /// The helper, started if there is none; held until the guard drops
    /// (one user at a time: a helper answers one request at a time).
    pub async fn get(&self, on: &impl Exec) -> Result<MutexGuard<'_, Option<T>>> {
        let mut slot = self.0.lock().await;
        if slot.is_none() {
            *slot = Some(T::start(on).await?);
        }
        Ok(slot)
    }

    /// After a failed use the helper is out of step or gone: start anew next time.
    pub fn reset_on_error<R>(slot: &mut MutexGuard<'_, Option<T>>, result: &Result<R>) {
        if result.is_err() {
            **slot = None;
        }
    }
}

/// A helper's perl script run here, as the SSH server runs it: a line in, a line out (tests).
#[cfg(test)]
pub(crate) struct Script {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

#[cfg(test)]
impl Script {
    /// Start `perl -e SCRIPT`; its first line is still to be read.
    pub(crate) fn start(perl: &str) -> Script {
        let mut child = std::process::Command::new("perl")
            .args(["-e", perl])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Script { child, out }
    }

    /// Send `line` (a newline is added), without waiting for the answer.
    pub(crate) fn send(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.child.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    /// Send `line`, return the answer.
    pub(crate) fn say(&mut self, line: &str) -> String {
        self.send(line);
        self.answer()
    }

    /// The next line it printed, newline included.
    pub(crate) fn answer(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line
    }

    /// End of input: it exits cleanly.
    pub(crate) fn finish(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}
