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
mod shared;
pub mod worker;

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

use crate::interrupt::Watch;
use crate::link::{DataMode, Link};
use crate::ssh::Session;
use batch::Op;
use report::Report;
use shared::{InOrder, Shared};

pub use attempt::Item;
pub use shared::{Options, Plan};

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
        plan.events.emit(crate::events::Event::JobDone { done: 0, total: items_len });
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
