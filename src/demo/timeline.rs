//! The run as a picture's model: one lane per data 4-tuple, each incarnation
//! a bar from its SYN (the data connection arriving) to the end of its
//! TIME_WAIT, and the collisions and remedies marked, all at the times of the
//! run. Built from the journal's events and the server's socket-table
//! readings only; [`crate::demo::svg`] draws it.

use std::time::Duration;

use crate::demo::journal::Stamped;
use crate::demo::run_facts::{canon, Tuple};
use crate::events::Event;
use crate::tcp::table::Entry;
use crate::tcp::{DataTuple, TIME_WAIT_LEN};

/// A reading of one 4-tuple's TIME_WAIT in the server's socket table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// When it was read.
    pub at: Duration,
    /// Whose.
    pub tuple: Tuple,
    /// Time left, or None: no TIME_WAIT row of it then.
    pub left: Option<Duration>,
}

/// Readings of every known 4-tuple in one table (FTP server's side: local = S).
pub fn readings(at: Duration, rows: &[Entry], clk_tck: u64, tuples: &[Tuple]) -> Vec<Reading> {
    tuples
        .iter()
        .map(|t| {
            let left =
                rows.iter().filter(|e| e.local == t.from && e.remote == t.to).find_map(|e| e.time_wait_left(clk_tck));
            Reading { at, tuple: *t, left }
        })
        .collect()
}

/// How an incarnation's TIME_WAIT ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Ran out, as its timer said (or as seen gone).
    Expired,
    /// Ended by the reclaim's SYN.
    Reclaimed,
    /// Taken over at once by the next incarnation (TCP timestamps on).
    Reused,
    /// Never read: Linux's 60 s assumed.
    Assumed,
}

/// One incarnation of a 4-tuple.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Its number (1st, 2nd, ...).
    pub n: u32,
    /// When the data connection arrived.
    pub syn: Duration,
    /// When the transfer ended (its 226).
    pub done: Duration,
    /// When its TIME_WAIT ended.
    pub end: Duration,
    /// How.
    pub how: End,
}

/// One 4-tuple's lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// The 4-tuple.
    pub tuple: Tuple,
    /// Its incarnations, in order.
    pub bars: Vec<Bar>,
}

/// What is marked on a lane.
#[derive(Debug, Clone, PartialEq)]
pub enum MarkKind {
    /// A 425: the 4-tuple was still in TIME_WAIT.
    Collision,
    /// Waiting out the countdown, until this time.
    Wait(Duration),
    /// A new control connection.
    Rotate,
    /// The TIME_WAIT entry ended by a SYN.
    Reclaim,
}

/// A marked moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// When.
    pub at: Duration,
    /// Which lane (index into [`Timeline::lanes`]).
    pub lane: usize,
    /// What.
    pub kind: MarkKind,
}

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline {
    /// One per 4-tuple, in order of first use.
    pub lanes: Vec<Lane>,
    /// Collisions and remedies.
    pub marks: Vec<Mark>,
    /// When the run ended.
    pub run_end: Duration,
}

impl Timeline {
    /// Build from the run's events and readings; `run_end` is when the run ended.
    pub fn build(events: &[Stamped], readings: &[Reading], run_end: Duration) -> Timeline {
        let mut t = Timeline { run_end, ..Timeline::default() };
        let mut open: Vec<Option<usize>> = Vec::new(); // per lane: the bar whose TIME_WAIT has not ended
        let mut collided = None;
        for Stamped { at, event } in events {
            let at = *at;
            match event {
                Event::DataAccepted { from, to, incarnation } => {
                    let tuple = Tuple { from: canon(*from), to: canon(*to) };
                    let lane = t.lane(tuple, &mut open);
                    if let Some(i) = open[lane].take() {
                        // Over by its timer already, or taken over while in TIME_WAIT (timestamps on).
                        let (end, how) = t.timer_end(lane, i, readings);
                        let (end, how) = if end <= at { (end, how) } else { (at, End::Reused) };
                        t.close(lane, i, end, how);
                    }
                    let bar = Bar { n: *incarnation, syn: at, done: at, end: at, how: End::Assumed };
                    t.lanes[lane].bars.push(bar);
                    open[lane] = Some(t.lanes[lane].bars.len() - 1);
                }
                Event::Received { line } if line.starts_with("226") => t.transfer_done(at),
                Event::TransferDone { .. } => t.transfer_done(at),
                Event::Collision { tuple, .. } => {
                    let lane = t.find(tuple.as_ref());
                    collided = lane;
                    t.mark(lane, at, MarkKind::Collision);
                }
                Event::Reclaimed { tuple } => {
                    let lane = t.find(Some(tuple));
                    if let Some(l) = lane {
                        if let Some(i) = open[l].take() {
                            t.close(l, i, at, End::Reclaimed);
                        }
                    }
                    t.mark(lane, at, MarkKind::Reclaim);
                }
                Event::Rotated { .. } => t.mark(collided, at, MarkKind::Rotate),
                Event::Waiting { total, .. } => t.wait(collided, at, at + *total),
                _ => {}
            }
        }
        for (lane, i) in open.iter().enumerate().filter_map(|(l, i)| i.map(|i| (l, i))) {
            let (end, how) = t.timer_end(lane, i, readings);
            t.close(lane, i, end, how);
        }
        t
    }

    fn lane(&mut self, tuple: Tuple, open: &mut Vec<Option<usize>>) -> usize {
        if let Some(i) = self.lanes.iter().position(|l| l.tuple == tuple) {
            return i;
        }
        self.lanes.push(Lane { tuple, bars: Vec::new() });
        open.push(None);
        self.lanes.len() - 1
    }

    /// The lane of a library 4-tuple (its source port may be unknown), else the last one.
    fn find(&self, tuple: Option<&DataTuple>) -> Option<usize> {
        let matches = |l: &Lane, d: &DataTuple| {
            l.tuple.from.ip() == d.server.to_canonical()
                && d.server_port.is_none_or(|p| p == l.tuple.from.port())
                && l.tuple.to == canon(d.proxy)
        };
        tuple.and_then(|d| self.lanes.iter().rposition(|l| matches(l, d))).or(self.lanes.len().checked_sub(1))
    }

    fn mark(&mut self, lane: Option<usize>, at: Duration, kind: MarkKind) {
        if let Some(lane) = lane {
            self.marks.push(Mark { at, lane, kind });
        }
    }

    /// A wait; one that follows on from the last (the entry lingered at 0 s) extends it.
    fn wait(&mut self, lane: Option<usize>, at: Duration, until: Duration) {
        if let Some(Mark { kind: MarkKind::Wait(end), lane: l, .. }) = self.marks.last_mut() {
            if Some(*l) == lane && at <= *end + Duration::from_secs(2) {
                *end = until;
                return;
            }
        }
        self.mark(lane, at, MarkKind::Wait(until));
    }

    /// The latest bar whose transfer is still running ends now.
    fn transfer_done(&mut self, at: Duration) {
        let latest = self.lanes.iter_mut().flat_map(|l| l.bars.iter_mut()).max_by_key(|b| b.syn);
        if let Some(bar) = latest.filter(|b| b.done == b.syn) {
            bar.done = at;
        }
    }

    fn close(&mut self, lane: usize, i: usize, at: Duration, how: End) {
        let bar = &mut self.lanes[lane].bars[i];
        bar.end = at.max(bar.done);
        bar.how = how;
    }

    /// The end of a TIME_WAIT from the readings after its transfer: the last
    /// timer read, or the first reading that no longer shows it.
    fn timer_end(&self, lane: usize, i: usize, readings: &[Reading]) -> (Duration, End) {
        let bar = &self.lanes[lane].bars[i];
        let tuple = self.lanes[lane].tuple;
        let mut end = None;
        for r in readings.iter().filter(|r| r.tuple == tuple && r.at >= bar.done) {
            match r.left {
                Some(left) => end = Some(r.at + left),
                None if end.is_some() => return (end.unwrap().min(r.at), End::Expired),
                None => {}
            }
        }
        end.map_or((bar.done + TIME_WAIT_LEN, End::Assumed), |e| (e, End::Expired))
    }

    /// The last moment drawn: the run's end or the last TIME_WAIT's, whichever is later.
    pub fn horizon(&self) -> Duration {
        self.lanes.iter().flat_map(|l| l.bars.iter().map(|b| b.end)).fold(self.run_end, Duration::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }
    fn at(secs: f64, event: Event) -> Stamped {
        Stamped { at: s(secs), event }
    }
    fn data(from: &str, to: &str, n: u32) -> Event {
        Event::DataAccepted { from: a(from), to: a(to), incarnation: n }
    }
    fn ok() -> Event {
        Event::Received { line: "226 Transfer complete".into() }
    }

    #[test]
    fn lanes_bars_and_marks_of_a_run_with_three_remedies() {
        let t1 = Tuple { from: a("127.0.0.1:2020"), to: a("127.0.0.1:39999") };
        let d1 = DataTuple { server: t1.from.ip(), server_port: Some(2020), proxy: t1.to };
        let events = vec![
            at(1.0, data("127.0.0.1:2020", "127.0.0.1:39999", 1)),
            at(1.1, ok()),
            at(2.0, Event::Collision { tuple: Some(d1), reply: "425".into() }),
            at(2.1, Event::Waiting { total: s(59.0), cause: "x".into() }),
            at(61.25, Event::Waiting { total: s(0.5), cause: "x".into() }),
            at(61.7, data("127.0.0.1:2020", "127.0.0.1:39999", 2)),
            at(61.8, ok()),
            at(62.0, Event::Collision { tuple: Some(d1), reply: "425".into() }),
            at(62.1, Event::Rotated { why: "x".into() }),
            at(62.5, data("127.0.0.1:2020", "127.0.0.1:41999", 1)),
            at(62.6, ok()),
            at(63.0, Event::Reclaimed { tuple: DataTuple { proxy: a("127.0.0.1:41999"), ..d1 } }),
            at(63.1, data("127.0.0.1:2020", "127.0.0.1:41999", 2)),
            at(63.2, ok()),
        ];
        // The first incarnation's timer read once (59 s left at 1.5 s), then seen gone at 61.0 s.
        let readings =
            [Reading { at: s(1.5), tuple: t1, left: Some(s(59.0)) }, Reading { at: s(61.0), tuple: t1, left: None }];
        let t = Timeline::build(&events, &readings, s(64.0));
        assert_eq!(t.lanes.len(), 2);
        let ends: Vec<Vec<(u32, End)>> =
            t.lanes.iter().map(|l| l.bars.iter().map(|b| (b.n, b.how)).collect()).collect();
        assert_eq!(ends, [vec![(1, End::Expired), (2, End::Assumed)], vec![(1, End::Reclaimed), (2, End::Assumed)]]);
        assert_eq!(t.lanes[0].bars[0].end, s(60.5)); // min(1.5 + 59, 61.0)
        assert_eq!(t.lanes[0].bars[1].end, s(61.8) + TIME_WAIT_LEN);
        assert_eq!(t.lanes[1].bars[0].end, s(63.0));
        let kinds: Vec<(usize, &MarkKind)> = t.marks.iter().map(|m| (m.lane, &m.kind)).collect();
        assert_eq!(
            kinds,
            [
                (0, &MarkKind::Collision),
                (0, &MarkKind::Wait(s(61.75))),
                (0, &MarkKind::Collision),
                (0, &MarkKind::Rotate),
                (1, &MarkKind::Reclaim)
            ]
        );
        assert_eq!(t.horizon(), s(63.2) + TIME_WAIT_LEN);
    }

    #[test]
    fn reuse_with_timestamps_on() {
        let events = vec![
            at(1.0, data("127.0.0.1:2020", "127.0.0.1:39999", 1)),
            at(1.1, ok()),
            at(1.5, data("127.0.0.1:2020", "127.0.0.1:39999", 2)),
            at(1.6, ok()),
        ];
        let t = Timeline::build(&events, &[], s(2.0));
        let bars = &t.lanes[0].bars;
        assert_eq!((bars[0].how, bars[0].end, bars[0].done), (End::Reused, s(1.5), s(1.1)));
    }

    #[test]
    fn readings_of_known_tuples() {
        let rows = crate::tcp::table::parse(
            "   4: 0100007F:07E4 0100007F:9C3F 06 00000000:00000000 03:00001770 00000000     0        0 0 3",
        );
        let t = Tuple { from: a("127.0.0.1:2020"), to: a("127.0.0.1:39999") };
        let other = Tuple { from: a("127.0.0.1:2020"), to: a("127.0.0.1:40001") };
        let r = readings(s(3.0), &rows, 100, &[t, other]);
        assert_eq!((r[0].left, r[1].left), (Some(s(60.0)), None));
    }
}
