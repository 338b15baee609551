//! The perl relay's channel as the control connection's stream, with its stderr kept apart.
//!
//! What the relay proves of a data connection comes on its stderr (SSH extended data), which
//! only the relay writes: the FTP server's bytes go to its stdout, so a reply's text cannot
//! forge a proof. russh's `ChannelStream` drops extended data; here a pump task reads the
//! channel, passes its data to the control connection through an in-memory pipe, and hands
//! each stderr line to `on_line` as it comes, whether or not the control connection is being
//! read at that moment.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// Bytes of the server's replies kept in memory while nobody reads them: past this the pump
/// waits, as an unread channel would.
const PIPE_BYTES: usize = 64 << 10;
/// Longest stderr line kept: a longer one is nobody's proof.
const MAX_LINE: usize = 4096;

/// Takes each line the relay writes on its stderr.
pub type OnLine = Box<dyn Fn(&str) + Send + Sync>;

/// The relay's channel: reads what the FTP server sent, writes to it.
pub struct RelayStream {
    read: DuplexStream,
    write: Pin<Box<dyn AsyncWrite + Send>>,
    /// Kept to close the channel when the stream is dropped, as russh's own stream does.
    half: Option<ChannelWriteHalf<Msg>>,
}

impl RelayStream {
    /// Split `channel`: its data to the stream, its stderr lines to `on_line`.
    pub fn new(channel: Channel<Msg>, on_line: OnLine) -> RelayStream {
        let (read_half, half) = channel.split();
        let (read, to_control) = tokio::io::duplex(PIPE_BYTES);
        tokio::spawn(pump(read_half, to_control, on_line));
        RelayStream { read, write: Box::pin(half.make_writer()), half: Some(half) }
    }
}

/// Until the channel ends, or the stream is dropped.
async fn pump(mut channel: ChannelReadHalf, mut to_control: DuplexStream, on_line: OnLine) {
    let mut err = Vec::new();
    while let Some(msg) = channel.wait().await {
        match msg {
            // A write that fails: nobody reads any more.
            ChannelMsg::Data { data } if to_control.write_all(&data).await.is_err() => break,
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                err.extend_from_slice(&data);
                while let Some(end) = err.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = err.drain(..=end).collect();
                    on_line(String::from_utf8_lossy(&line).trim_end());
                }
                if err.len() > MAX_LINE {
                    err.clear();
                }
            }
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => {}
        }
    }
}

impl AsyncRead for RelayStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for RelayStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.write.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.as_mut().poll_shutdown(cx)
    }
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        if let Some(half) = self.half.take() {
            // Best effort, as russh's stream: the relay then ends.
            tokio::spawn(async move { _ = half.close().await });
        }
    }
}
