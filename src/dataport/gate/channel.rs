//! A data connection that came back through the reverse forward, as the gate holds it
//! while its origin is looked up.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use crate::ssh::forwarded::Forwarded;

/// A data connection that came back through the reverse forward.
pub struct DataChannel {
    /// The channel carrying its bytes.
    pub channel: Channel<Msg>,
    /// What it brought while its origin was looked up: read these first.
    pub early: Vec<Vec<u8>>,
    /// Its end (EOF or close) came too.
    pub ended: bool,
    /// The bytes kept in `early` so far.
    kept: usize,
    /// Who connected (as sshd saw it): address and port.
    pub originator: (String, u32),
    /// Which forwarded address and port it connected to.
    pub connected: (String, u32),
    /// How many connections its 4-tuple has carried in this process, this one included.
    pub incarnation: u32,
    /// Its number on its link's watched tuple, 0 if not on it ([`super::watch`]).
    pub(super) watched: u64,
    /// When it came.
    pub(super) came: Instant,
}

impl DataChannel {
    /// What sshd announced, before anything came on it.
    pub(super) fn new(forwarded: Forwarded) -> DataChannel {
        let Forwarded { channel, originator, connected } = forwarded;
        let (early, came) = (Vec::new(), Instant::now());
        DataChannel { channel, early, ended: false, kept: 0, originator, connected, incarnation: 0, watched: 0, came }
    }

    /// Its 4-tuple: who connected, and where to.
    pub fn ends(&self) -> Option<(SocketAddr, SocketAddr)> {
        let end = |(a, p): &(String, u32)| Some(SocketAddr::new(a.parse::<IpAddr>().ok()?.to_canonical(), *p as u16));
        Some((end(&self.originator)?, end(&self.connected)?))
    }

    pub(super) fn from(&self) -> String {
        format!("{}:{}", self.originator.0, self.originator.1)
    }

    pub(super) fn to(&self) -> String {
        format!("{}:{}", self.connected.0, self.connected.1)
    }

    /// Keep one message of the channel in memory (waiting for it); pending forever once it
    /// ended, or once it brought over `max`: nobody reads it yet, and an unread channel
    /// would stall the whole session (russh's bounded per-channel queue).
    pub(super) async fn keep_one(&mut self, max: usize) -> Result<(), ()> {
        if self.ended {
            return std::future::pending().await;
        }
        match self.channel.wait().await {
            Some(ChannelMsg::Data { data }) => {
                self.kept += data.len();
                self.early.push(data.to_vec());
            }
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => self.ended = true,
            Some(_) => {}
        }
        match self.kept > max {
            true => Err(()),
            false => Ok(()),
        }
    }
}

/// What a connection may bring before it is admitted, kept in memory: a server's socket
/// buffers, past which a server still writing holds its socket, whose owner then shows.
pub(super) const KEPT_MAX: usize = 16 << 20;
