//! The SSH connection's socket, acknowledging what it has read each time it
//! runs dry (TCP_QUICKACK), so the server's small writes never wait for our
//! delayed ACK.
//!
//! OpenSSH's sshd writes with Nagle on until it starts a command (it sets
//! TCP_NODELAY in `ssh_packet_set_interactive`). Right after authentication it
//! sends its host keys (`hostkeys-00@openssh.com`); Nagle then held our session
//! channel's confirmation until those were acknowledged, and Linux delayed that
//! ACK by its 40 ms minimum, since we had nothing to send while we waited for
//! the confirmation: 40 ms at the start of every SSH session, and of every
//! `--jobs` worker's (docs/benchmarks.md#measured-effects). Other servers may
//! write with Nagle on all the time.
//!
//! The ACK goes when a read finds the socket empty, not after every read:
//! russh reads each packet in two exact reads, and a setsockopt per read would
//! cost a bulk transfer tens of thousands of system calls.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that sends any delayed ACK at once when a read finds nothing to read.
pub struct QuickAck {
    stream: TcpStream,
    /// Bytes were read since the last ACK we asked for.
    unacked: bool,
}

impl QuickAck {
    /// Wrap a connected stream.
    pub fn new(stream: TcpStream) -> QuickAck {
        QuickAck { stream, unacked: false }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let me = &mut *self;
        match Pin::new(&mut me.stream).poll_read(cx, buf) {
            Poll::Pending => {
                if std::mem::take(&mut me.unacked) {
                    // Not permanent: Linux leaves quick-ACK mode again on its own. A
                    // failure costs only the delay this is here to save.
                    let _ = socket2::SockRef::from(&me.stream).set_tcp_quickack(true);
                }
                Poll::Pending
            }
            Poll::Ready(result) => {
                me.unacked |= buf.filled().len() > before;
                Poll::Ready(result)
            }
        }
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
