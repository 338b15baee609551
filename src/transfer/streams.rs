//! How many SSH connections a segmented download ([`crate::transfer::segments`]) spreads its
//! ranges over, unless `--ssh-connections` says: by the control connection's round trip.
//!
//! One SSH connection is one sshd process and one encryption stream. More of them pay where
//! something holds each stream back: the channel window over a long round trip, a per-flow
//! shaper. They do not where the CPU bounds one stream, as on loopback or a LAN: there they
//! share the same CPUs and add handshakes, logins and processes. On the lab (2 vCPUs, the
//! server on the same host) 4 connections took 1.2x-2.2x the time of one; at 20 ms with a
//! per-flow cap 0.26x (docs/benchmarks.md#one-file-in-segments-2026-12-07). Below [`NEAR`],
//! then, the ranges go one after the other over one SSH connection, in one transfer where
//! they follow each other, each still resumed where it stopped.

use std::time::Duration;

/// A control round trip below this (the SSH server on this host or this LAN): one SSH
/// connection unless asked. A 16 MiB channel window bounds one stream only beyond gigabytes
/// a second here, so what bounds it is the CPU of both ends, which more streams share.
pub const NEAR: Duration = Duration::from_millis(2);

/// SSH connections for `n` segments: as many as asked (`--ssh-connections`), else one per
/// segment where the control connection's `round_trip` is at least [`NEAR`], and one below
/// it, with why (said at `-v`).
pub fn connections(asked: Option<usize>, n: usize, round_trip: Duration) -> (usize, Option<String>) {
    let ms = round_trip.as_secs_f64() * 1000.0;
    match asked {
        Some(m) => (m.clamp(1, n.max(1)), None),
        None if round_trip < NEAR => {
            let near = NEAR.as_millis();
            let why = format!(
                "a round trip of {ms:.2} ms (below {near} ms): the ranges one after the other over one SSH connection, \
                 since CPU rather than the round trip bounds one stream here (--ssh-connections to choose)"
            );
            (1, Some(why))
        }
        None => (n.max(1), Some(format!("a round trip of {ms:.2} ms: one SSH connection per segment"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_servers_get_one_connection_far_ones_one_per_segment() {
        let ms = Duration::from_micros;
        let (n, why) = connections(None, 4, ms(180));
        assert_eq!(n, 1);
        assert!(why.unwrap().contains("a round trip of 0.18 ms (below 2 ms)"));
        let (n, why) = connections(None, 4, ms(20_400));
        assert_eq!((n, why.as_deref()), (4, Some("a round trip of 20.40 ms: one SSH connection per segment")));
        assert_eq!(connections(None, 4, NEAR).0, 4, "the bound itself is far");
    }

    #[test]
    fn what_is_asked_wins_up_to_the_segments() {
        for rtt in [Duration::ZERO, Duration::from_millis(50)] {
            assert_eq!(connections(Some(3), 4, rtt), (3, None));
            assert_eq!(connections(Some(8), 4, rtt), (4, None));
            assert_eq!(connections(Some(0), 4, rtt), (1, None));
        }
    }
}
