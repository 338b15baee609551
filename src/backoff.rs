//! The backoff policies, each a named constructor with its schedule in its doc comment. Whoever
//! takes a pause from one tells it, with its length (an event or a warning), where it is taken.

use std::time::Duration;

use backon::{ExponentialBackoff, ExponentialBuilder};

/// After a passing failure (a dropped SSH connection, a broken data connection): the pauses
/// before a transfer's retries, and before a worker's SSH reconnects. 0.5 s, 1 s, 2 s, 4 s, 8 s,
/// then 8 s for ever (the caller counts its tries: `--retries`); no jitter.
pub fn passing_failure() -> ExponentialBuilder {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(8);
    ExponentialBuilder::default().with_min_delay(FIRST).with_max_delay(MAX).without_max_times()
}

/// The next pause of a schedule that never runs out ([`passing_failure`], [`racing_diff`]).
pub fn next_pause(pauses: &mut ExponentialBackoff) -> Duration {
    pauses.next().expect("a policy without max_times")
}

/// After a TIME_WAIT collision whose entry cannot be seen (the FTP server on another host, an SSH
/// server that is not Linux). Before jitter: 1 s, 2 s, 4 s, 8 s, 16 s, 30 s, 30 s, 30 s (8
/// retries, 121 s in all: more than twice the 60 s of Linux's TIME_WAIT, so the last retry comes
/// after any 2MSL up to 60 s). Jitter adds a random 0-100 % to each pause, so the real ones are
/// 1-2 s, 2-4 s, ... 30-60 s (121-242 s in all).
pub fn unseen_time_wait() -> ExponentialBuilder {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);
    const TIMES: usize = 8;
    ExponentialBuilder::new().with_min_delay(FIRST).with_max_delay(MAX).with_max_times(TIMES).with_jitter()
}

/// Between socket-table diffs that saw other new connections to the FTP server beside ours
/// (another run of the same user, started at the same moment): random pauses, so that such runs
/// drift apart. 50-100 ms, 100-200 ms, 200-400 ms, 400-800 ms, 0.8-1.6 s, then 1-2 s for ever (the
/// caller bounds the tries).
pub fn racing_diff() -> ExponentialBuilder {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(1);
    ExponentialBuilder::new().with_min_delay(FIRST).with_max_delay(MAX).without_max_times().with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    /// Each pause of `policy` within [base, 2 x base] (jitter adds 0-100 %).
    fn within(policy: ExponentialBuilder, base: &[Duration]) {
        let pauses: Vec<Duration> = policy.build().take(base.len() + 1).collect();
        for (d, b) in pauses.iter().zip(base) {
            assert!(*d >= *b && *d <= *b * 2, "{d:?} vs {b:?}");
        }
        assert!(pauses.len() >= base.len(), "{pauses:?}");
    }

    #[test]
    fn passing_failure_schedule() {
        let mut pauses = passing_failure().build();
        let first: Vec<Duration> = (0..7).map(|_| next_pause(&mut pauses)).collect();
        let want = [500, 1000, 2000, 4000, 8000, 8000, 8000].map(Duration::from_millis);
        assert_eq!(first, want);
    }

    #[test]
    fn unseen_time_wait_schedule() {
        let pauses: Vec<Duration> = unseen_time_wait().build().collect();
        let base = [1, 2, 4, 8, 16, 30, 30, 30].map(Duration::from_secs);
        assert_eq!(pauses.len(), base.len());
        within(unseen_time_wait(), &base);
        assert!(base.iter().sum::<Duration>() > Duration::from_secs(120));
    }

    #[test]
    fn racing_diff_schedule() {
        let base = [50, 100, 200, 400, 800, 1000, 1000, 1000].map(Duration::from_millis);
        within(racing_diff(), &base);
    }
}
