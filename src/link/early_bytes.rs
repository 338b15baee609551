//! Bytes that arrive on a data connection before its transfer command's
//! preliminary reply. russh hands each channel's messages over on a bounded
//! queue, and one full queue stalls the whole session, the control
//! connection's channel included (docs/real-systems.md#ssh-in-rust-russh): a server that
//! starts sending before its 150 has reached us (the 150 takes the relay's
//! extra hop) would otherwise wait forever for us to read a reply we cannot
//! receive. So while a reply is awaited the data channel keeps being read,
//! into here; the transfer reads these first.

use russh::client::Msg;
use russh::{Channel, ChannelMsg};

/// What a data channel brought before its transfer began.
#[derive(Debug, Default)]
pub struct Early {
    /// The bytes, in order.
    pub chunks: Vec<Vec<u8>>,
    /// The channel's end (EOF or close) came too.
    pub ended: bool,
}

impl Early {
    /// Keep one message of `channel` (waiting for it); pending forever once it ended.
    pub async fn read_one(&mut self, channel: &mut Channel<Msg>) {
        if self.ended {
            return std::future::pending().await;
        }
        match channel.wait().await {
            Some(ChannelMsg::Data { data }) => self.chunks.push(data.to_vec()),
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => self.ended = true,
            Some(_) => {}
        }
    }
}
