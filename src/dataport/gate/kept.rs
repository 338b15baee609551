//! An admitted data connection until its link takes it. A task keeps reading it into memory
//! meanwhile: a channel left unread stalls the whole SSH session (russh's bounded per-channel
//! queue), and with it the transfer before, still arriving on another channel, whose end the
//! link waits for before it takes this one. A server that starts the next transfer (sent ahead)
//! once it has written the last one into its socket, before we have read it all, sends both at
//! once: ProFTPD copying the data itself (`UseSendfile off`) does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Mutex, Notify};

use super::{Arrival, DataChannel};

/// What an admitted connection may bring before its link takes it. The transfer before it has
/// at most the SSH window (16 MiB) and the hosts' socket buffers still to come, and the two
/// share the SSH connection meanwhile; past this, the connection is closed and its transfer fails.
pub(super) const AHEAD_MAX: usize = 64 << 20;

/// What the gate puts in its links' queue.
pub(super) enum Inbound {
    /// An admitted connection, read by its keeper until taken.
    Data(Kept),
    /// Anything else the gate says.
    Said(Arrival),
}

/// An admitted connection and its keeper.
pub(super) struct Kept {
    /// The connection; or, once it brought too much, why it was closed.
    slot: Arc<Mutex<Option<Result<DataChannel, String>>>>,
    stop: Arc<Notify>,
}

impl Kept {
    /// Start keeping `data`.
    pub(super) fn start(data: DataChannel) -> Kept {
        let (slot, stop) = (Arc::new(Mutex::new(Some(Ok(data)))), Arc::new(Notify::new()));
        let (held, told) = (slot.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let mut held = held.lock().await;
                let Some(Ok(data)) = held.as_mut() else { return };
                tokio::select! {
                    biased;
                    () = told.notified() => return,
                    kept = data.keep_one(AHEAD_MAX) => if kept.is_err() {
                        let why = format!(
                            "its data connection brought over {} MiB before the transfer before it had ended; \
                             closed, nothing kept",
                            AHEAD_MAX >> 20
                        );
                        if let Some(Ok(data)) = held.replace(Err(why)) {
                            let _ = data.channel.close().await;
                        }
                        return;
                    }
                }
            }
        });
        Kept { slot, stop }
    }

    /// Stop the keeper and take what it kept. Cancel-safe: nothing is taken until the end.
    async fn take(&self) -> Option<Arrival> {
        self.stop.notify_one();
        match self.slot.lock().await.take()? {
            Ok(data) => Some(Arrival::Data(data)),
            Err(why) => Some(Arrival::TooMuch(why)),
        }
    }
}

/// The links' queue: what the gate decided, in order. The entry being taken stays at the front
/// until it is, so a wait given up midway loses nothing.
pub(super) struct Queue {
    rx: mpsc::UnboundedReceiver<Inbound>,
    front: Option<Inbound>,
}

impl Queue {
    pub(super) fn new(rx: mpsc::UnboundedReceiver<Inbound>) -> Queue {
        Queue { rx, front: None }
    }

    /// The next arrival, or None after `timeout`.
    pub(super) async fn next(&mut self, timeout: Duration) -> Option<Arrival> {
        tokio::time::timeout(timeout, self.take_next(true)).await.ok().flatten()
    }

    /// Every arrival already there, without waiting for more.
    pub(super) async fn left(&mut self) -> Vec<Arrival> {
        let mut left = Vec::new();
        while let Some(arrival) = self.take_next(false).await {
            left.push(arrival);
        }
        left
    }

    async fn take_next(&mut self, wait: bool) -> Option<Arrival> {
        loop {
            if self.front.is_none() {
                self.front = Some(match wait {
                    true => self.rx.recv().await?,
                    false => self.rx.try_recv().ok()?,
                });
            }
            let taken = match self.front.as_ref() {
                Some(Inbound::Data(kept)) => kept.take().await,
                _ => None,
            };
            match (taken, self.front.take()) {
                (Some(arrival), _) => return Some(arrival),
                (None, Some(Inbound::Said(arrival))) => return Some(arrival),
                (None, _) => continue, // taken already: nothing left of it
            }
        }
    }
}
