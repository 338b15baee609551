//! The demo's observer: every event of the run with the moment it was seen,
//! so the narration can tell what happened since the last step and the
//! timeline can place it in time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::events::{Event, Observer};

/// One event and when it was seen, from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped {
    /// Time since the demo started.
    pub at: Duration,
    /// What happened.
    pub event: Event,
}

/// Keeps every event (progress ticks excepted), stamped.
#[derive(Debug)]
pub struct Journal {
    start: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    all: Vec<Stamped>,
    /// How many of `all` the narration has told already.
    told: usize,
}

impl Journal {
    /// A journal whose clock starts now.
    pub fn new() -> Journal {
        Journal { start: Instant::now(), inner: Mutex::new(Inner::default()) }
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The events seen since the last call (each is told once).
    pub fn untold(&self) -> Vec<Stamped> {
        let mut inner = self.inner.lock().unwrap();
        let new = inner.all[inner.told..].to_vec();
        inner.told = inner.all.len();
        new
    }

    /// Every event seen so far.
    pub fn all(&self) -> Vec<Stamped> {
        self.inner.lock().unwrap().all.clone()
    }
}

impl Default for Journal {
    fn default() -> Self {
        Journal::new()
    }
}

impl Observer for Journal {
    fn see(&self, event: &Event) {
        if matches!(event, Event::Progress { .. }) {
            return; // per-chunk ticks: neither narrated nor drawn
        }
        let at = self.now();
        self.inner.lock().unwrap().all.push(Stamped { at, event: event.clone() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_told_once_and_kept() {
        let j = Journal::new();
        j.see(&Event::Sent { line: "RETR a".into() });
        j.see(&Event::Progress { bytes: 5 });
        assert_eq!(j.untold().len(), 1);
        j.see(&Event::Received { line: "226 ok".into() });
        let second = j.untold();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].event, Event::Received { line: "226 ok".into() });
        assert!(j.untold().is_empty());
        assert_eq!(j.all().len(), 2);
        assert!(j.all()[0].at <= j.all()[1].at);
    }
}
