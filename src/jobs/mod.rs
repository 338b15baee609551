//! Many transfers (`mget`, `mput`, `batch`) that finish unattended.
//!
//! Each of `--jobs` workers ([`worker`]) has its own SSH session and its own
//! control connections ("links"), and takes items from one queue. An mget's
//! other workers connect while the first lists ([`early`]). The
//! [`scheduler`] hands each item a link and decides what happens after it:
//! done, retried (a passing failure: a dropped SSH connection, a broken data
//! connection; a download resumes with REST), or, for a TIME_WAIT collision,
//! what [`crate::timewait`]'s policy says (reclaim, rotate, wait).
//!
//! A link goes back to the idle pool only in step ([`scheduler`]'s `park`):
//! after a failed transfer its control connection reads on to that
//! transfer's final reply (or ABORs and reads through), else it is closed.
//!
//! A signal ([`crate::interrupt`]) stops every worker where it is; each closes
//! its SSH session, and the report lists what finished and what did not. The
//! report is made from the run's events ([`report::Record::apply`]).

pub mod attempt;
pub mod batch;
pub mod early;
pub mod lock;
pub mod mirror;
pub mod report;
pub mod scheduler;
pub mod shard;
pub mod worker;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::ExponentialBuilder;

use crate::error::exit_code;
use crate::events::{Event, Events};
use crate::interrupt::Watch;
use crate::link::{DataMode, Link, Spec};
use crate::ssh::endpoint::SshTarget;
use crate::ssh::Session;
use crate::timewait::Pace;
use attempt::Attempt;
use batch::Op;
use report::{Outcome, Record, Report};

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
}

/// One transfer to make.
#[derive(Debug, Clone)]
pub struct Item {
    /// Get or put.
    pub op: Op,
    /// Remote name (get) or local path (put).
    pub source: String,
    /// Local path (get) or remote name (put).
    pub target: String,
    /// Its line in the batch file, named when it fails.
    pub line: Option<usize>,
    /// For a download by `mirror`: the server's modification time, given to the copy.
    pub mtime: Option<std::time::SystemTime>,
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

/// Delays between attempts after a passing failure: 0.5, 1, 2, 4, 8 s (then 8 s).
pub fn retry_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default().with_min_delay(RETRY_DELAY_MIN).with_max_delay(RETRY_DELAY_MAX).without_max_times()
}

/// The next pause of a [`retry_backoff`] schedule (it never runs out).
fn next_delay(delays: &mut backon::ExponentialBackoff) -> Duration {
    delays.next().expect("retry_backoff is without_max_times")
}

/// The first pause before a retry, and the longest.
const RETRY_DELAY_MIN: Duration = Duration::from_millis(500);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(8);

/// What the workers share.
struct Shared {
    queue: Mutex<VecDeque<(usize, Item)>>,
    /// Items in the run, and how many have ended (for the progress display).
    total: usize,
    ended: AtomicUsize,
    /// The server has shown a TIME_WAIT collision: downloads burn a link for 2MSL.
    collides: AtomicBool,
    /// The server refused the default port: open new links passive straight away.
    passive: AtomicBool,
    /// Reclaiming did not free a tuple: rotate instead from now on.
    reclaim_fails: AtomicBool,
    stop: AtomicBool,
    /// Becomes true once no item will be handed out again: every item ended,
    /// or a failure stopped the run. Workers still connecting are not needed.
    settled: tokio::sync::watch::Sender<bool>,
    /// A signal stops every worker where it is.
    interrupt: Watch,
    /// The records of ended items, passed on to the report in item order.
    ended_items: Mutex<InOrder>,
}

/// Records handed to the report in the items' order, whatever order the
/// workers end them in (a report file is written as the run goes).
struct InOrder {
    report: Report,
    next: usize,
    early: std::collections::BTreeMap<usize, (Record, Option<i32>)>,
    first_failure: Option<i32>,
}

impl InOrder {
    fn put(&mut self, index: usize, record: Record, code: Option<i32>) {
        self.early.insert(index, (record, code));
        while let Some((record, code)) = self.early.remove(&self.next) {
            self.push(record, code);
            self.next += 1;
        }
    }

    /// What was under way or still queued when a signal came did not finish: say so.
    fn interrupted(&mut self, names: &[(Op, String, String)], signal: &str) {
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
    fn flush_all(&mut self) {
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

/// Run every item into `report`, which lists them in the given order. Also
/// returns the exit code class of the first failure, if any.
/// `first`, if given, is a connected session and a logged-in link on it (the
/// ones an mget listed on): the first worker goes on with them. `early`, if
/// given, are the other workers, started while it listed.
pub async fn run(
    plan: Plan,
    items: Vec<Item>,
    opts: Options,
    first: Option<(&Session, Link<'_>)>,
    early: Option<early::Early>,
    interrupt: &Watch,
    report: Report,
) -> (Report, Option<i32>) {
    let names: Vec<(Op, String, String)> = items.iter().map(|i| (i.op, i.source.clone(), i.target.clone())).collect();
    let ended_items = Mutex::new(InOrder { report, next: 0, early: Default::default(), first_failure: None });
    let items_len = items.len();
    let shared = Arc::new(Shared {
        ended_items,
        total: items_len,
        queue: Mutex::new(items.into_iter().enumerate().collect()),
        ended: AtomicUsize::new(0),
        collides: AtomicBool::new(false),
        // A listing link that went passive has shown this server refuses the default port.
        passive: AtomicBool::new(
            plan.spec.mode == DataMode::Passive || first.as_ref().is_some_and(|(_, link)| link.is_passive()),
        ),
        reclaim_fails: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        settled: tokio::sync::watch::Sender::new(items_len == 0), // a mirror with nothing new
        interrupt: interrupt.clone(),
    });
    if items_len > 0 {
        // The progress line counts "0/N files" from the start, not from the first file done.
        plan.events.emit(Event::JobDone { done: 0, total: items_len });
    }
    let (plan, opts) = (Arc::new(plan), Arc::new(opts));
    // The first worker runs here, since it may borrow `first`; the others are tasks.
    let spawn = |_| tokio::spawn(worker::worker(plan.clone(), opts.clone(), shared.clone(), None));
    let early = early.map(|early| early.run(opts.clone(), shared.clone()));
    // These take an item before they connect: none of them is idle while the run goes on.
    let spawned: Vec<_> = if early.is_none() { (1..opts.jobs.max(1)).map(spawn).collect() } else { Vec::new() };
    worker::worker(plan.clone(), opts.clone(), shared.clone(), first).await;
    if let Some(early) = early {
        early.join(&shared).await;
    }
    for w in spawned {
        let _ = w.await;
    }
    let mut ended = shared.ended_items.lock().unwrap();
    if let Some(signal) = interrupt.received() {
        ended.interrupted(&names, signal.name());
    }
    ended.flush_all();
    let first_failure = ended.first_failure;
    (std::mem::take(&mut ended.report), first_failure)
}

/// The next item, unless the run is stopping.
fn next(shared: &Shared) -> Option<Attempt> {
    if shared.stop.load(Ordering::SeqCst) || shared.interrupt.received().is_some() {
        return None;
    }
    let (index, item) = shared.queue.lock().unwrap().pop_front()?;
    Some(Attempt::new(index, item))
}

/// The item ended, with `error` if it failed (which stops the run unless `--continue-on-error`).
fn finish(plan: &Plan, shared: &Shared, opts: &Options, mut attempt: Attempt, error: Option<anyhow::Error>) {
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
