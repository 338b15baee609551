//! What a bulk run's workers share: how to connect ([`Plan`]), how to behave
//! ([`Options`]), the queue and the run's state ([`Shared`]), and the records
//! passed on to the report in the items' order ([`InOrder`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::exit_code;
use crate::events::{Event, Events};
use crate::interrupt::Watch;
use crate::link::Spec;
use crate::ssh::endpoint::SshTarget;
use crate::timewait::Pace;

use super::attempt::{Attempt, Item};
use super::batch::Op;
use super::report::{Outcome, Record, Report};

/// How a bulk run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Transfers at once, each worker on its own SSH session.
    pub jobs: usize,
    /// Collision policy.
    pub pace: Pace,
    /// Go on after a failed transfer (else stop at the first).
    pub continue_on_error: bool,
    /// Retries of a transfer after a passing failure.
    pub retries: u32,
    /// `--segments`: downloads of at least `segment_threshold` bytes in this many ranges
    /// ([`crate::transfer::segments`]) over `ssh_connections`; 1: none.
    pub segments: usize,
    /// `--ssh-connections`; None: chosen by the round trip ([`crate::transfer::segments`]).
    pub ssh_connections: Option<usize>,
    /// `--segment-threshold`.
    pub segment_threshold: u64,
}

/// Where and as whom: everything a worker needs to connect.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The SSH server.
    pub target: SshTarget,
    /// The FTP session to open.
    pub spec: Spec,
    /// Who watches the run (each session forks its own list from this one).
    pub events: Events,
}

/// What the workers share.
pub(super) struct Shared {
    pub(super) queue: Mutex<VecDeque<(usize, Item)>>,
    /// Items in the run, and how many have ended (for the progress display).
    pub(super) total: usize,
    pub(super) ended: AtomicUsize,
    /// The server has shown a TIME_WAIT collision: downloads burn a link for 2MSL.
    pub(super) collides: AtomicBool,
    /// The server refused the default port: open new links passive straight away.
    pub(super) passive: AtomicBool,
    /// Reclaiming did not free a tuple: rotate instead from now on.
    pub(super) reclaim_fails: AtomicBool,
    pub(super) stop: AtomicBool,
    /// Becomes true once no item will be handed out again: every item ended,
    /// or a failure stopped the run. Workers still connecting are not needed.
    pub(super) settled: tokio::sync::watch::Sender<bool>,
    /// A signal stops every worker where it is.
    pub(super) interrupt: Watch,
    /// The records of ended items, passed on to the report in item order.
    pub(super) ended_items: Mutex<InOrder>,
}

/// Records handed to the report in the items' order, whatever order the
/// workers end them in (a report file is written as the run goes).
pub(super) struct InOrder {
    pub(super) report: Report,
    pub(super) next: usize,
    pub(super) early: std::collections::BTreeMap<usize, (Record, Option<i32>)>,
    pub(super) first_failure: Option<i32>,
}

impl InOrder {
    pub(super) fn put(&mut self, index: usize, record: Record, code: Option<i32>) {
        self.early.insert(index, (record, code));
        while let Some((record, code)) = self.early.remove(&self.next) {
            self.push(record, code);
            self.next += 1;
        }
    }

    /// What was under way or still queued when a signal came did not finish: say so.
    pub(super) fn interrupted(&mut self, names: &[(Op, String, String)], signal: &str) {
        for (i, (op, source, target)) in names.iter().enumerate().skip(self.next) {
            // Not ended: neither passed on yet (putting one may pass on later ones) nor waiting.
            if i >= self.next && !self.early.contains_key(&i) {
                let mut record = Record::new(*op, source, target);
                record.error = Some(format!("not finished: interrupted by {signal}"));
                self.put(i, record, None);
            }
        }
    }

    /// At the end of a run that stopped at a failure: the records past the
    /// items that never started, in order.
    pub(super) fn flush_all(&mut self) {
        while let Some((_, (record, code))) = self.early.pop_first() {
            self.push(record, code);
        }
    }

    fn push(&mut self, record: Record, code: Option<i32>) {
        if self.first_failure.is_none() {
            self.first_failure = code;
        }
        self.report.push(record);
    }
}

/// The next item, unless the run is stopping.
pub(super) fn next(shared: &Shared) -> Option<Attempt> {
    if shared.stop.load(Ordering::SeqCst) || shared.interrupt.received().is_some() {
        return None;
    }
    let (index, item) = shared.queue.lock().unwrap().pop_front()?;
    Some(Attempt::new(index, item))
}

/// The item ended, with `error` if it failed (which stops the run unless `--continue-on-error`).
pub(super) fn finish(plan: &Plan, shared: &Shared, opts: &Options, mut attempt: Attempt, error: Option<anyhow::Error>) {
    let code = error.as_ref().map(exit_code);
    if let Some(e) = error {
        let at = attempt.item.line.map_or_else(String::new, |n| format!(" (batch line {n})"));
        // The source may be a name the server listed, and the error quote its reply: escaped.
        let line = format!("{} {}{at}: {e:#}", attempt.item.op.as_str(), attempt.item.source);
        eprintln!("ftpssh-fullsecure: error: {}", crate::ftp::shown::shown_lines(&line));
        attempt.record.error = Some(format!("{e:#}"));
        attempt.record.outcome = Outcome::Failed;
        if !opts.continue_on_error {
            shared.stop.store(true, Ordering::SeqCst);
            shared.settled.send_replace(true);
        }
    } else {
        attempt.record.outcome = Outcome::Ok;
    }
    let ended = shared.ended.fetch_add(1, Ordering::SeqCst) + 1;
    if ended == shared.total {
        shared.settled.send_replace(true);
    }
    plan.events.emit(Event::JobDone { done: ended, total: shared.total });
    shared.ended_items.lock().unwrap().put(attempt.index, attempt.record, code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reach_the_report_in_item_order_once_each() {
        let names: Vec<(Op, String, String)> =
            ["a", "b", "c", "d"].iter().map(|n| (Op::Get, n.to_string(), n.to_string())).collect();
        let ok = |i: usize| {
            let mut r = Record::new(Op::Get, &names[i].1, &names[i].2);
            r.outcome = Outcome::Ok;
            r
        };
        let mut ended = InOrder { report: Report::new(), next: 0, early: Default::default(), first_failure: None };
        ended.put(2, ok(2), None);
        ended.put(0, ok(0), None);
        assert_eq!((ended.next, ended.report.records.len()), (1, 1), "c waits for b");
        ended.interrupted(&names, "SIGINT");
        let listed: Vec<(&str, bool)> =
            ended.report.records.iter().map(|r| (r.source.as_str(), r.outcome == Outcome::Ok)).collect();
        assert_eq!(listed, [("a", true), ("b", false), ("c", true), ("d", false)]);
    }
}
