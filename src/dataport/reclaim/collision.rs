//! Reclaiming after a collision: the transfer's data connection was refused
//! for the 4-tuple's TIME_WAIT, so the tuple is freed at once for the same
//! link, and tried twice at most.

use std::time::Duration;

use anyhow::{Context, Result};

use super::Reclaim;
use crate::dataport::forward::ReverseForward;
use crate::events::Event;
use crate::ssh::Session;
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

impl Reclaim<'_> {
    /// Free the collided `tuple` (as far as known) for the same link, whose
    /// listener is `forward`. An error means reclaiming does not work here: a
    /// helper that failed, or a tuple that collides again although reclaimed
    /// twice. `reclaimed` counts this transfer's reclaims so far.
    pub async fn after_collision(
        &mut self,
        session: &Session,
        forward: &mut Option<ReverseForward>,
        tuple: Option<DataTuple>,
        reclaimed: &mut u32,
    ) -> Result<Outcome> {
        let Some(tuple) = tuple.filter(|t| t.server_port.is_some()) else { return Ok(Outcome::Unknown) };
        if *reclaimed >= 2 {
            anyhow::bail!("the TIME_WAIT of {tuple} survived reclaiming (tcp_rfc1337=1 on the FTP server's host?)");
        }
        let wait = if *reclaimed == 0 { FIRST_WAIT } else { SECOND_WAIT };
        if !self.now(session, forward, &tuple, wait).await.context("could not reclaim the 4-tuple")? {
            return Ok(Outcome::HeldOnBothEnds(tuple));
        }
        session.events().emit(Event::Reclaimed { tuple });
        *reclaimed += 1;
        Ok(Outcome::Sent)
    }
}
