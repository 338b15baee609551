//! Bytes between the client's data connection (local TCP) and the FTP server's
//! (an SSH channel from the built-in data paths), one way, as the transfer goes.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use russh::client::Msg;
use russh::{ChannelMsg, ChannelWriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{classified, Kind};
use crate::link::Data;
use crate::throttle::Throttle;
use crate::transfer::STALL_MIN_BYTES;

/// Most bytes read from the client at a time (an SSH packet's worth of data, a few times).
const CHUNK: usize = 64 * 1024;

/// What paces a transfer's bytes, as for the built-in transfers: `--bwlimit`'s bucket (the
/// run's one, shared with every other client's), and the stall window: a transfer that moves
/// less than [`STALL_MIN_BYTES`] in it is dead, silent or trickling, whichever end stopped.
#[derive(Clone)]
pub struct Pace {
    /// `--bwlimit`.
    pub throttle: Option<Arc<Throttle>>,
    /// Twice `--timeout`, as the built-in transfers' window.
    pub window: Duration,
}

impl Pace {
    /// `n` bytes moved: counted for the stall window, and paid for under `--bwlimit`.
    async fn moved(&self, moved: &Cell<u64>, n: usize) {
        moved.set(moved.get() + n as u64);
        if let Some(t) = &self.throttle {
            t.take(n).await;
        }
    }

    /// Resolves with the error once a window has moved less than [`STALL_MIN_BYTES`].
    async fn stalled(&self, moved: &Cell<u64>) -> anyhow::Error {
        let mut before = moved.get();
        loop {
            tokio::time::sleep(self.window).await;
            let now = moved.get();
            if now - before < STALL_MIN_BYTES {
                let why = format!("the data connection stalled: {} bytes in {:?}", now - before, self.window);
                return classified(Kind::Transfer, why);
            }
            before = now;
        }
    }
}

/// The server's bytes to the client until the server's EOF; then our EOF and close, so a
/// server that holds its 226 until the connection ends (ProFTPD) sends it. Returns the count.
/// `abort` ends it early (the client's ABOR): then the channel is closed too.
pub async fn down(data: Data, client: &mut TcpStream, pace: &Pace, abort: impl Future<Output = ()>) -> Result<u64> {
    let Data { channel, early, eof_sent, .. } = data;
    let (mut incoming, channel) = channel.split();
    let moved = Cell::new(0u64);
    let mut ended = early.ended;
    let copying = async {
        for chunk in &early.chunks {
            client.write_all(chunk).await.context("writing to the client's data connection")?;
            pace.moved(&moved, chunk.len()).await;
        }
        while !ended {
            match incoming.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    client.write_all(&data).await.context("writing to the client's data connection")?;
                    pace.moved(&moved, data.len()).await;
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => ended = true,
                Some(_) => {}
            }
        }
        client.shutdown().await.context("closing the client's data connection")
    };
    // The abort wins even while a write waits for a client that stopped reading (lftp's
    // pget stops each piece's connection so, and then says ABOR).
    let copied = tokio::select! {
        copied = copying => copied,
        () = abort => Err(Aborted.into()),
        stalled = pace.stalled(&moved) => Err(stalled),
    };
    // Unread, the channel's queue would stall the session, and with it our EOF and close.
    drop(incoming);
    if !eof_sent {
        let _ = channel.eof().await;
    }
    if !ended {
        let _ = channel.close().await;
    }
    copied.map(|()| moved.get())
}

/// The client's bytes to the server until the client's EOF, then our EOF. The channel's
/// other half is read meanwhile (an unread channel stalls the whole session). The caller
/// closes the returned half once the server's final reply has come.
pub async fn up(
    data: Data,
    client: &mut TcpStream,
    pace: &Pace,
    abort: impl Future<Output = ()>,
) -> (Result<u64>, ChannelWriteHalf<Msg>) {
    let (mut incoming, writer) = data.channel.split();
    let mut buf = vec![0u8; CHUNK];
    let moved = Cell::new(0u64);
    let sent = {
        let sending = async {
            loop {
                let n = client.read(&mut buf).await.context("reading the client's data connection")?;
                if n == 0 {
                    writer.eof().await.context("ending the upload's data channel")?;
                    return Ok(moved.get());
                }
                pace.moved(&moved, n).await;
                writer.data(&buf[..n]).await.map_err(|e| anyhow::anyhow!("the data channel broke: {e}"))?;
            }
        };
        let draining = async { while incoming.wait().await.is_some() {} };
        let stalled = pace.stalled(&moved);
        tokio::pin!(sending, draining, abort, stalled);
        let mut drained = false;
        loop {
            tokio::select! {
                sent = &mut sending => break sent,
                () = &mut abort => break Err(Aborted.into()),
                stalled = &mut stalled => break Err(stalled),
                () = &mut draining, if !drained => drained = true,
            }
        }
    };
    (sent, writer)
}

/// The client said ABOR while the data moved.
#[derive(Debug, thiserror::Error)]
#[error("the client aborted the transfer")]
pub struct Aborted;
