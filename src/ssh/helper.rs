//! A helper process on the SSH server (the remote shell, the reclaimer),
//! started on first use and kept for the session; one that failed is
//! dropped, so the next use starts a fresh one.

use anyhow::Result;
use tokio::sync::{Mutex, MutexGuard};

use crate::ssh::Session;

/// What a [`Lazy`] slot holds: something started over an exec channel.
pub trait Helper: Sized + Send {
    /// Start it on the SSH server.
    fn start(session: &Session) -> impl std::future::Future<Output = Result<Self>> + Send;
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
    pub async fn get(&self, session: &Session) -> Result<MutexGuard<'_, Option<T>>> {
        let mut slot = self.0.lock().await;
        if slot.is_none() {
            *slot = Some(T::start(session).await?);
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
