//! Reclaiming a data connection's 4-tuple from TIME_WAIT (RFC 1337's
//! "TIME-WAIT assassination"), so the next default-port transfer can use the
//! same control connection at once.
//!
//! After a download the FTP server closed first, so *its* host holds the
//! tuple (S -> T) in TIME_WAIT, and its next connect() from S to T fails.
//! A SYN sent from T to S (the same tuple, from our side) reaches that
//! TIME_WAIT socket; with no listener on S it answers with a bare ACK, which
//! our half-open socket answers with a RST carrying exactly the sequence
//! number TIME_WAIT expects. Linux then drops the TIME_WAIT entry (unless
//! `net.ipv4.tcp_rfc1337=1`). Nothing else is disturbed: the tuple contains
//! our own port T, and the connection it belonged to has ended cleanly
//! (226 received, size checked). The next RETR on the same control
//! connection succeeds at once. The SYN is sent
//! by a helper on the SSH server ([`crate::ssh::reclaimer`]).

use std::time::Duration;

use anyhow::{Context, Result};

use crate::events::Event;
use crate::link::Link;
use crate::tcp::DataTuple;

/// How long the helper keeps its half-open socket after the SYN. The first
/// time, not at all: whether the TIME_WAIT socket's ACK finds our SYN_SENT
/// socket, no socket, or sshd's listener back on T, our kernel answers it
/// with the same RST (seq = the ACK's ack number), which is what ends the
/// entry; the next transfer finds out whether it did. The second time (the
/// first did not work), long enough for a distant FTP host's answer.
const FIRST_WAIT: Duration = Duration::ZERO;
const SECOND_WAIT: Duration = Duration::from_millis(100);

/// What a reclaim came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The SYN went out: the tuple is free again.
    Sent,
    /// The tuple is not fully known (no transfer on this link showed the
    /// server's data source port yet): rotate this once.
    Unknown,
    /// Our own end of the tuple holds a TIME_WAIT too: both ends closed at
    /// once, and neither can send the SYN that would end the other's (each
    /// connect() is refused by its own end's entry). Rotate this once.
    HeldOnBothEnds(DataTuple),
}

/// Why [`Outcome::HeldOnBothEnds`] cannot be reclaimed, in words.
pub fn held_on_both_ends(tuple: &DataTuple) -> String {
    format!("both ends of {tuple} hold it in TIME_WAIT (they closed at once), and neither can end the other's")
}

/// Free the collided tuple for the same link. An error means reclaiming does
/// not work here: a helper that failed, or a tuple that collides again
/// although reclaimed twice. `reclaimed` counts this transfer's reclaims so far.
pub async fn reclaim(link: &mut Link<'_>, tuple: Option<DataTuple>, reclaimed: &mut u32) -> Result<Outcome> {
    let Some(tuple) = tuple.filter(|t| t.server_port.is_some()) else { return Ok(Outcome::Unknown) };
    if *reclaimed >= 2 {
        anyhow::bail!("the TIME_WAIT of {tuple} survived reclaiming (tcp_rfc1337=1 on the FTP server's host?)");
    }
    let wait = if *reclaimed == 0 { FIRST_WAIT } else { SECOND_WAIT };
    if !link.reclaim(&tuple, wait).await.context("could not reclaim the 4-tuple")? {
        return Ok(Outcome::HeldOnBothEnds(tuple));
    }
    link.events().emit(Event::Reclaimed { tuple });
    *reclaimed += 1;
    Ok(Outcome::Sent)
}
