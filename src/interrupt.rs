//! Stopping on SIGINT, SIGTERM and SIGHUP the way rsync and curl do: stop the
//! transfers, say what finished, close the SSH session (which ends every
//! helper it started on the server), and exit 128 + the signal number.
//!
//! The handlers are installed once at start ([`listen`]); whoever runs
//! transfers races them against [`Watch::wait`] and drops the losing side.
//! A download's part file stays resumable (see [`crate::transfer`]).

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::error::{Classify, Kind};

/// The signals that stop a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Int,
    /// `kill`, systemd, a container stopping.
    Term,
    /// The terminal went away.
    Hup,
}

impl Signal {
    /// 128 + the signal number, as shells report it.
    pub fn exit_code(self) -> i32 {
        128 + match self {
            Signal::Hup => 1,
            Signal::Int => 2,
            Signal::Term => 15,
        }
    }

    /// The usual name.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
        }
    }
}

/// The error a run ends with when a signal stopped it.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {}", .0.name())]
pub struct Interrupted(pub Signal);

impl Classify for Interrupted {
    fn kind(&self) -> Kind {
        Kind::Interrupted(self.0.exit_code())
    }
}

/// Tells whether, and by which signal, the run was asked to stop.
#[derive(Clone)]
pub struct Watch {
    rx: watch::Receiver<Option<Signal>>,
    /// Keeps [`Watch::never`]'s channel open, so waiting on it never returns.
    _tx: Option<std::sync::Arc<watch::Sender<Option<Signal>>>>,
}

impl Watch {
    /// A watch no signal ever reaches (for library callers and tests).
    pub fn never() -> Watch {
        let (tx, rx) = watch::channel(None);
        Watch { rx, _tx: Some(std::sync::Arc::new(tx)) }
    }

    /// The first signal received, once one is.
    pub async fn wait(&self) -> Signal {
        let mut rx = self.rx.clone();
        let got = rx.wait_for(Option::is_some).await.map(|s| *s);
        match got {
            Ok(s) => s.expect("waited for Some"),
            // The listener is gone without a signal: none will come.
            Err(_) => std::future::pending().await,
        }
    }

    /// The signal received so far, if any.
    pub fn received(&self) -> Option<Signal> {
        *self.rx.borrow()
    }
}

/// Install the handlers (replacing the default "terminate at once") and
/// start listening. Must run inside the tokio runtime.
pub fn listen() -> Result<Watch> {
    let mut int = signal(SignalKind::interrupt()).context("could not handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("could not handle SIGHUP")?;
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let got = tokio::select! {
            _ = int.recv() => Signal::Int,
            _ = term.recv() => Signal::Term,
            _ = hup.recv() => Signal::Hup,
        };
        tracing::warn!("{}: stopping the transfers", got.name());
        let _ = tx.send(Some(got));
        // Keep the sender (and the handlers) alive until the process exits.
        std::future::pending::<()>().await;
    });
    Ok(Watch { rx, _tx: None })
}

/// `work`'s result, or [`Interrupted`] if a signal comes first (`work` is then dropped where it is).
pub async fn until_interrupted<T>(interrupt: &Watch, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        out = work => out,
        signal = interrupt.wait() => Err(Interrupted(signal).classified()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_128_plus_the_signal_number() {
        assert_eq!([Signal::Int, Signal::Term, Signal::Hup].map(Signal::exit_code), [130, 143, 129]);
        let e = Interrupted(Signal::Term).classified();
        assert_eq!(crate::error::exit_code(&e.context("get big.bin")), 143);
    }

    #[tokio::test]
    async fn a_signal_reaches_every_waiter() {
        let watch = listen().unwrap();
        assert_eq!(watch.received(), None);
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
        let other = watch.clone();
        let (a, b) = tokio::join!(watch.wait(), other.wait());
        assert_eq!((a, b), (Signal::Hup, Signal::Hup));
    }

    #[tokio::test]
    async fn never_never_fires() {
        let never = Watch::never();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), never.wait()).await;
        assert!(waited.is_err());
    }
}
