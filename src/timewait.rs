//! The book's last step: pacing consecutive default-port transfers around
//! the 2MSL TIME_WAIT of their shared 4-tuple
//! (docs/real-systems.md#time_wait-and-incarnations).
//!
//! After a download the FTP server holds the data connection's 4-tuple in
//! TIME_WAIT for 60 s, and where that collides (fixed data source port, TCP
//! timestamps off) the next transfer on the same control connection gets a
//! 425 ([`crate::ftp::Reply::blames_busy_address`]). Three remedies
//! (`--pace`), one policy ([`after_collision`]):
//!
//! - **reclaim** (default): end that TIME_WAIT entry from our side of the
//!   tuple ([`crate::dataport::reclaim`]) and go on with the same control connection. Where
//!   that does not work (`tcp_rfc1337=1`, a firewall drops the SYN, no perl
//!   on the SSH server), the run switches to rotating.
//! - **rotate**: a new control connection has a new proxy port, so a new
//!   4-tuple. The collided link rests for 2MSL; each rotation costs a login.
//! - **wait**: keep the control connection, read the TIME_WAIT timer in the
//!   server's socket table ([`measure`]), wait exactly that long, retry.

pub mod measure;

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff};

use crate::dataport::reclaim::collision::{held_on_both_ends, Outcome};
use crate::events::Event;
use crate::link::Link;
use crate::tcp::DataTuple;

/// How long a link rests after a TIME_WAIT collision: Linux's TIME_WAIT
/// ([`crate::tcp::TIME_WAIT_LEN`]) and a margin.
pub const REST_AFTER_DOWNLOAD: Duration = crate::tcp::TIME_WAIT_LEN.saturating_add(Duration::from_secs(2));

/// How often a TIME_WAIT countdown is redrawn (the `-v` line, a progress bar), and how often
/// the demo reads the server's timer again while it counts down.
pub const COUNTDOWN_TICK: Duration = Duration::from_secs(1);

/// What to do about TIME_WAIT collisions (`--pace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    /// End the TIME_WAIT entry of our own last data connection and keep the
    /// control connection; rotate where that does not work.
    Reclaim,
    /// Use a fresh (or rested) control connection: a new 4-tuple, no wait.
    Rotate,
    /// Keep the control connection and wait the measured TIME_WAIT out.
    Wait,
}

/// What one transfer's collisions have cost so far, kept across its attempts.
pub struct Collisions {
    /// Reclaims made: a collision after two of them means reclaiming does not work here.
    reclaimed: u32,
    /// Blind waits for collisions whose TIME_WAIT entry cannot be seen.
    blind: ExponentialBackoff,
}

impl Default for Collisions {
    fn default() -> Self {
        Collisions { reclaimed: 0, blind: crate::backoff::unseen_time_wait().build() }
    }
}

/// The step after a collision.
#[derive(Debug)]
pub enum Next {
    /// Go on with the same link at once: the tuple is free again.
    Reuse,
    /// The link rests this long; the transfer moves to another (a rotation).
    Rest(Duration),
    /// Reclaiming does not work here: close the link, rotate from now on.
    StopReclaiming,
    /// The transfer fails.
    Fail(anyhow::Error),
}

/// The pace in force: reclaiming, once seen to fail here, becomes rotating.
pub fn in_force(pace: Pace, reclaiming_failed: bool) -> Pace {
    match pace {
        Pace::Reclaim if reclaiming_failed => Pace::Rotate,
        pace => pace,
    }
}

/// How long a link that has just carried a transfer rests: once the server
/// is known to collide, a link that carried a default-port download rests
/// for 2MSL when rotating, rather than collecting a 425.
pub fn rest_after(pace: Pace, default_port_download: bool, server_collides: bool) -> Duration {
    if pace == Pace::Rotate && default_port_download && server_collides {
        REST_AFTER_DOWNLOAD
    } else {
        Duration::ZERO
    }
}

/// Before a transfer on `link`: once the server is known to collide, reclaim
/// the tuple its last download left in TIME_WAIT now, rather than collect a
/// 425 first (a round trip and a refused command saved per file). None: go
/// ahead; otherwise what to do instead, as after a collision.
pub async fn ahead(pace: Pace, server_collides: bool, link: &mut Link<'_>, so_far: &mut Collisions) -> Option<Next> {
    if pace != Pace::Reclaim || !server_collides {
        return None;
    }
    // From now on each download's tuple is reclaimed as its data arrives, ready for the next.
    link.reclaim_behind();
    if !link.holds_time_wait() || so_far.reclaimed > 0 {
        return None;
    }
    match link.reclaim_collided(link.data_tuple(), &mut so_far.reclaimed).await {
        Ok(Outcome::Sent | Outcome::Unknown) => None, // unknown: the transfer will tell
        Ok(Outcome::HeldOnBothEnds(tuple)) => {
            let what = format!("{}; this control connection rests", held_on_both_ends(&tuple));
            link.events().emit(Event::Detour { what });
            Some(Next::Rest(REST_AFTER_DOWNLOAD))
        }
        Err(why) => {
            let why = format!("could not reclaim the last download's 4-tuple ahead of the next transfer: {why:#}");
            link.events().emit(Event::ReclaimFailed { why });
            Some(Next::StopReclaiming)
        }
    }
}

/// The collision policy: what `pace` does about a collision (`collision`,
/// its message) on `link`, whose data tuple is `tuple` as far as known.
pub async fn after_collision(
    pace: Pace,
    link: &mut Link<'_>,
    tuple: Option<DataTuple>,
    so_far: &mut Collisions,
    collision: &str,
) -> Next {
    match pace {
        Pace::Reclaim => match link.reclaim_collided(tuple, &mut so_far.reclaimed).await {
            Ok(Outcome::Sent) => Next::Reuse,
            Ok(Outcome::Unknown) => {
                link.events().emit(Event::Detour { what: format!("{collision}; its 4-tuple is not known yet") });
                Next::Rest(REST_AFTER_DOWNLOAD)
            }
            Ok(Outcome::HeldOnBothEnds(tuple)) => {
                let what = format!("{collision}; {}; this control connection rests", held_on_both_ends(&tuple));
                link.events().emit(Event::Detour { what });
                Next::Rest(REST_AFTER_DOWNLOAD)
            }
            Err(why) => {
                link.events().emit(Event::ReclaimFailed { why: format!("{collision}; {why:#}") });
                Next::StopReclaiming
            }
        },
        Pace::Rotate => Next::Rest(REST_AFTER_DOWNLOAD),
        Pace::Wait => match measure::wait_for(link.session(), tuple.as_ref(), &mut so_far.blind).await {
            Ok(()) => Next::Reuse,
            Err(e) => Next::Fail(e),
        },
    }
}
