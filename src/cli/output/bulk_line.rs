//! The bulk run's progress line, as rclone's and lftp's say it: which file
//! is moving, at what rate, and how long until the files in flight are done
//! (`3/10 files  big.bin  19.9 MiB/s  0:04 left`).
//!
//! A pure tally of the events, so the line is tested apart from a terminal.
//! Byte counts are not tied to a file (`--jobs N` moves several at once):
//! the time left is for all the bytes announced by the transfers in flight,
//! and is not shown while one of them has no known size (ASCII, a server
//! without SIZE).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The rate is the bytes of the last this long.
const RATE_WINDOW: Duration = Duration::from_secs(3);
/// Samples are kept at least this far apart.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// What the line says, from the events so far.
#[derive(Debug, Default)]
pub struct BulkLine {
    /// The last file started, shown as the current one.
    current: Option<String>,
    /// Transfers in flight, and whether each announced its size.
    in_flight: HashMap<String, bool>,
    /// Bytes the transfers in flight still have to move, where announced.
    remaining: u64,
    /// Bytes moved since the run began.
    moved: u64,
    /// (when, bytes moved by then), oldest first.
    samples: VecDeque<(Instant, u64)>,
}

impl BulkLine {
    /// A transfer began at `offset` of `size` bytes.
    pub fn started(&mut self, name: &str, offset: u64, size: Option<u64>, now: Instant) {
        if self.samples.is_empty() {
            self.samples.push_back((now, self.moved));
        }
        // Alone in flight: whatever a failed attempt left uncounted is forgotten.
        if self.in_flight.is_empty() {
            self.remaining = 0;
        }
        self.in_flight.insert(name.to_string(), size.is_some());
        self.remaining += size.map_or(0, |s| s.saturating_sub(offset));
        self.current = Some(name.to_string());
    }

    /// `bytes` more moved.
    pub fn moved(&mut self, bytes: u64, now: Instant) {
        self.moved += bytes;
        self.remaining = self.remaining.saturating_sub(bytes);
        // The first sample stays where the run began; the last is always now, and replaces the one
        // before while that is within SAMPLE_EVERY of the one before it (merging by the last one's own
        // time would move it on with every event: no sample would ever age out of the window).
        let n = self.samples.len();
        match n > 2 && now.duration_since(self.samples[n - 2].0) < SAMPLE_EVERY {
            true => self.samples[n - 1] = (now, self.moved),
            false => self.samples.push_back((now, self.moved)),
        }
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
    }

    /// A transfer ended.
    pub fn done(&mut self, name: &str) {
        self.in_flight.remove(name);
        if self.in_flight.is_empty() {
            self.remaining = 0;
        }
    }

    /// Bytes per second over the window, once there is one to speak of.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let (since, from) = *self.samples.front()?;
        let secs = now.duration_since(since).as_secs_f64();
        (secs >= 0.2).then(|| (self.moved - from) as f64 / secs)
    }

    /// `big.bin  19.9 MiB/s  0:04 left`, as far as known.
    pub fn message(&self, now: Instant) -> String {
        let mut parts: Vec<String> = self.current.iter().map(|n| crate::ftp::shown::shown(n).into_owned()).collect();
        if let Some(rate) = self.rate(now) {
            parts.push(format!("{}/s", binary(rate)));
            if rate > 0.0 && !self.in_flight.is_empty() && self.in_flight.values().all(|known| *known) {
                let secs = (self.remaining as f64 / rate).ceil() as u64;
                parts.push(format!("{}:{:02} left", secs / 60, secs % 60));
            }
        }
        parts.join("  ")
    }
}

/// `19.9 MiB`: 1024-based, as `--bwlimit` counts.
fn binary(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut value, mut unit) = (bytes, 0);
    while value >= 1024.0 && unit < units.len() - 1 {
        (value, unit) = (value / 1024.0, unit + 1);
    }
    format!("{value:.1} {}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_file_the_rate_and_the_time_left() {
        let t0 = Instant::now();
        let mut line = BulkLine::default();
        line.started("big.bin", 0, Some(100 << 20), t0);
        assert_eq!(line.message(t0), "big.bin");
        // 20 MiB/s for two seconds, in 64 KiB pieces.
        for i in 1..=640u64 {
            line.moved(64 << 10, t0 + Duration::from_micros(i * 3125));
        }
        let now = t0 + Duration::from_secs(2);
        assert_eq!(line.message(now), "big.bin  20.0 MiB/s  0:03 left");
        line.started("b\nad", 0, None, now);
        assert_eq!(line.message(now), "b\\x0aad  20.0 MiB/s", "no time left while a size is unknown");
        line.done("b\nad");
        line.done("big.bin");
        assert!(!line.message(now).contains("left"));
    }

    #[test]
    fn the_rate_forgets_what_is_older_than_its_window() {
        let t0 = Instant::now();
        let mut line = BulkLine::default();
        line.started("a", 0, Some(u64::MAX), t0);
        line.moved(100 << 20, t0 + Duration::from_millis(500)); // a burst at the start
        for s in 1..=100u64 {
            line.moved(1 << 20, t0 + Duration::from_millis(500) + Duration::from_millis(100 * s));
        }
        let rate = line.rate(t0 + Duration::from_millis(10_500)).unwrap();
        assert!((rate - f64::from(10 << 20)).abs() < f64::from(1 << 20), "{rate}");
    }

    /// Events far closer together than SAMPLE_EVERY (a transfer's every packet) still leave the
    /// window as it moves on: a stall early in the run is forgotten three seconds later.
    #[test]
    fn a_stall_leaves_the_window_even_between_frequent_events() {
        let t0 = Instant::now();
        let mut line = BulkLine::default();
        line.started("a", 0, Some(u64::MAX), t0);
        for ms in 2000..7000u64 {
            line.moved(1024, t0 + Duration::from_millis(ms)); // after 2 s of nothing, 1 KiB a millisecond
        }
        let rate = line.rate(t0 + Duration::from_millis(7000)).unwrap();
        assert!((rate - 1_024_000.0).abs() < 50_000.0, "{rate}");
    }

    #[test]
    fn rates_in_binary_units() {
        assert_eq!(binary(512.0), "512.0 B");
        assert_eq!(binary(1536.0), "1.5 KiB");
        assert_eq!(binary(20.0 * 1048576.0), "20.0 MiB");
    }
}
