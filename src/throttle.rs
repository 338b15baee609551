//! `--bwlimit RATE`: one token bucket for the whole run, shared by every
//! data connection of every worker, in both directions (as rclone's
//! `--bwlimit`, and scp's `-l` for one transfer).
//!
//! The bucket may go into debt: a chunk larger than what is left is taken
//! at once, and its taker sleeps until the rate has paid for it. A download
//! that sleeps stops reading its channel, so SSH's window slows the server.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A rate limit in bytes per second.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    /// Bytes that may go at once after a pause: a tenth of a second's worth.
    /// Not at the start: the bucket is empty at the first byte, so the first
    /// second moves the rate and no more (a bucket filled while the run
    /// connected showed 24.9 MiB/s under a 20M limit).
    burst: f64,
    /// Tokens left, and when; None before the first byte.
    state: Mutex<Option<(f64, Instant)>>,
}

impl Throttle {
    /// `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> Throttle {
        let rate = rate.max(1) as f64;
        let burst = rate / 10.0;
        Throttle { rate, burst, state: Mutex::new(None) }
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Account for `n` bytes, sleeping as long as the rate wants.
    pub async fn take(&self, n: usize) {
        let pause = self.debit(n, Instant::now());
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }

    /// Take `n` bytes at `now`; how long the taker must wait.
    fn debit(&self, n: usize, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap();
        let (tokens, last) = state.unwrap_or((0.0, now));
        let refilled = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        let left = refilled - n as f64;
        *state = Some((left, now));
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.rate)
        }
    }
}

/// `500K`, `2M`, `1.5M`, `1G`: bytes per second, suffixes 1024-based; a bare
/// number is KiB/s, as rclone's `--bwlimit`.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "K"),
    };
    let scale: f64 = match unit.to_ascii_uppercase().trim_end_matches('B').trim_end_matches('I') {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("{s:?}: the unit is B, K, M or G (bytes per second, 1024-based)")),
    };
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a rate such as 500K or 2M"))?;
    let rate = value * scale;
    if !(1.0..=1e15).contains(&rate) {
        return Err(format!("{s:?}: a rate is at least 1 byte per second"));
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2M"), Ok(2 << 20));
        assert_eq!(parse_rate("500K"), Ok(500 << 10));
        assert_eq!(parse_rate("1.5M"), Ok(3 << 19));
        assert_eq!(parse_rate("100"), Ok(100 << 10));
        assert_eq!(parse_rate("4096B"), Ok(4096));
        assert_eq!(parse_rate("1MiB"), Ok(1 << 20));
        for bad in ["", "x", "2X", "-1M", "0", "M"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_bucket_pays_debts_at_the_rate() {
        let t = Throttle::new(1000);
        let now = Instant::now();
        // Nothing goes at once at the start, however long ago the bucket was made.
        assert_eq!(t.debit(100, now), Duration::from_millis(100));
        assert_eq!(t.debit(400, now), Duration::from_millis(500));
        // Half a second later the debt is paid; another 100 bytes wait 0.1 s.
        assert_eq!(t.debit(100, now + Duration::from_millis(500)), Duration::from_millis(100));
        // After a long pause only the burst is available.
        assert_eq!(t.debit(200, now + Duration::from_secs(60)), Duration::from_millis(100));
    }
}
