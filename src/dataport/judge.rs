//! Whether a reverse forward sshd granted (or refused) is fit for the data
//! connection, judged by the SSH server's socket table read after it: used
//! as it is, worth another control connection (a new P), or a reason to give
//! up the default port.

use std::net::SocketAddr;

use anyhow::Result;

use super::discovery::{self, Listener};
use super::forward::ReverseForward;
use super::passive::Fallback;

/// What a forward request and the table read after it add up to.
pub(super) enum Judged {
    /// Listening exactly where the FTP server will connect.
    Use(ReverseForward),
    /// This port will not do, another control connection may: why, and the
    /// forward to cancel.
    Another(String, Option<ReverseForward>),
    /// The default port cannot work through this SSH server.
    GiveUp(Fallback, Option<ReverseForward>),
}

impl Judged {
    /// The forward it holds, if any.
    pub(super) fn into_forward(self) -> Option<ReverseForward> {
        match self {
            Judged::Use(forward) => Some(forward),
            Judged::Another(_, forward) | Judged::GiveUp(_, forward) => forward,
        }
    }
}

/// Judge `forward` (asked for at `wanted`, by our control connection `ours`
/// to the FTP server at `peer`) by the socket table read after it.
pub(super) fn judge_forward(
    forward: Result<ReverseForward>,
    table: Result<discovery::Snapshot>,
    wanted: SocketAddr,
    (ours, peer): (SocketAddr, SocketAddr),
) -> Judged {
    let table = match table {
        Ok(table) => table,
        Err(e) => {
            // Not Linux, or no /proc: sshd's word is all there is.
            tracing::debug!("could not check the forward in the SSH server's socket table: {e:#}");
            return match forward {
                Ok(forward) => Judged::Use(forward),
                Err(e) => Judged::GiveUp(Fallback::ForwardRefused(format!("{e:#}")), None),
            };
        }
    };
    let forward = match forward {
        Ok(forward) => forward,
        Err(e) => {
            return match discovery::held_by_another(&table.entries, wanted, ours, peer) {
                Some(other) => Judged::Another(
                    format!(
                        "sshd could not listen on {wanted}: {} -> {} ({:?}) holds that port too, perhaps without SO_REUSEADDR",
                        other.local, other.remote, other.state
                    ),
                    None,
                ),
                None => Judged::GiveUp(Fallback::ForwardRefused(format!("{e:#}")), None),
            }
        }
    };
    match discovery::check_listener(&table.entries, wanted, table.uid) {
        Listener::Squatted(squatter) => Judged::Another(
            format!(
                "uid {}'s socket listens on {} where the FTP server will connect, not sshd's: the data would go to it",
                squatter.uid, squatter.local
            ),
            Some(forward),
        ),
        Listener::Exact => match discovery::time_wait_on(&table.entries, wanted.port(), peer.port()) {
            Some(tw) => Judged::Another(
                format!("port {} will not do: {} -> {} is still in TIME_WAIT", wanted.port(), tw.local, tw.remote),
                Some(forward),
            ),
            None => Judged::Use(forward),
        },
        Listener::Elsewhere(addrs) => {
            let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            let why = format!(
                "the SSH server accepted the reverse forward of {wanted} but listens on {} instead, where the FTP server \
                 at {} cannot connect: OpenSSH with `GatewayPorts no` (its default; `GatewayPorts clientspecified` \
                 lets a client choose the address), or dropbear started without -a",
                addrs.join(", "),
                peer.ip()
            );
            Judged::GiveUp(Fallback::BoundElsewhere(why), Some(forward))
        }
        Listener::Absent => Judged::Another(
            format!(
                "the SSH server accepted the reverse forward of {wanted}, but its socket table shows no listener there"
            ),
            Some(forward),
        ),
    }
}
