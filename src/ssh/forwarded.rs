//! Where the session's forwarded-tcpip channels go.
//!
//! sshd opens one for each connection made to a port it forwards back to us (`-R`).
//! The session only hands them over: what is admitted, and to which transfer, is the
//! data path's business ([`crate::dataport::gate`]), which installs its receiver on
//! the session before it asks for a forward.

use std::any::Any;

use russh::client::Msg;
use russh::Channel;

/// A forwarded-tcpip channel as sshd announced it.
pub struct Forwarded {
    /// The channel carrying its bytes, confirmed to sshd once the receiver has taken it.
    pub channel: Channel<Msg>,
    /// Who connected (as sshd saw it): address and port.
    pub originator: (String, u32),
    /// Which forwarded address and port it connected to.
    pub connected: (String, u32),
}

/// Takes the session's forwarded channels.
pub trait Receiver: Any + Send + Sync {
    /// One channel came: taken (true: the session confirms it to sshd at once), or to be
    /// rejected. Called from the session's event loop, which must not wait.
    fn arrive(&self, forwarded: Forwarded) -> bool;
}
