//! Many transfers (`mget`, `mput`, `batch`) that finish unattended.
//!
//! The book's procedure "works once, then fails": after a download the FTP
//! server holds the data connection's 4-tuple in TIME_WAIT for 60 s, and where
//! that collides (fixed data source port, TCP timestamps off) the next transfer
//! on the same control connection gets a 425. Three ways out (`--pace`):
//!
//! - **reclaim** (default): end that TIME_WAIT entry from our side of the
//!   tuple ([`crate::ssh::reclaimer`]) and go on with the same control connection.
//!   Where that does not work (the server's host has `tcp_rfc1337=1`, a
//!   firewall drops the SYN, no perl on the SSH server), the run switches to
//!   rotating.
//! - **rotate**: a new control connection has a new proxy port, so a
//!   new 4-tuple. A link whose transfer collided rests for 2MSL and the
//!   transfer moves to a fresh or rested link; once a server is seen to
//!   collide, links that carried a download rest, and spare links are opened
//!   while transfers run. Each rotation costs a login.
//! - **wait**: keep one control connection, read the TIME_WAIT timer in the
//!   server's socket table, wait exactly that long, retry.
//!
//! Each of `--jobs` workers has its own SSH session and its own links. A
//! transfer that fails for a passing reason (a dropped SSH connection, a broken
//! data connection) is retried, a download resuming (REST) where it stopped.
//! A link goes back to the idle pool only in step ([`park`]): after a failed
//! transfer its control connection reads on to that transfer's final reply
//! (or ABORs and reads through), else the link is closed.
//!
//! A signal ([`crate::interrupt`]) stops every worker where it is; each closes
//! its SSH session, and the report lists what finished and what did not.

pub mod batch;
pub mod lock;
pub mod report;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use backon::{BackoffBuilder, ExponentialBuilder};
use indicatif::ProgressBar;

use crate::endpoint::SshTarget;
use crate::error::{exit_code, is_permanent};
use crate::interrupt::Watch;
use crate::jobs::batch::Op;
use crate::jobs::report::{Outcome, Record, Report, Wait};
use crate::link::{Collision, DataMode, Link, Spec};
use crate::ssh::Session;
use crate::timewait::measure;
use crate::transfer::{self, PartFile};

/// How long a link rests after a TIME_WAIT collision: Linux's TIME_WAIT
/// (60 s) and a margin.
pub const REST_AFTER_DOWNLOAD: Duration = Duration::from_secs(62);
/// Idle links kept per worker; past that, all but [`KEEP_AFTER_CLOSING`]
/// of the longest-resting are closed at once.
const MAX_IDLE_LINKS: usize = 32;
const KEEP_AFTER_CLOSING: usize = 8;

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
    /// Show countdowns and a progress bar (on a terminal).
    pub show: bool,
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
}

/// Where and as whom: everything a worker needs to connect.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The SSH server.
    pub target: SshTarget,
    /// The FTP session to open.
    pub spec: Spec,
}

/// Delays between attempts after a passing failure: 0.5, 1, 2, 4, 8 s (then 8 s).
pub fn retry_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(8))
        .without_max_times()
}

/// What the workers share.
struct Shared {
    queue: Mutex<VecDeque<(usize, Item)>>,
    /// The server has shown a TIME_WAIT collision: downloads burn a link for 2MSL.
    collides: AtomicBool,
    /// The server refused the default port: open new links passive straight away.
    passive: AtomicBool,
    /// Reclaiming did not free a tuple: rotate instead from now on.
    reclaim_fails: AtomicBool,
    stop: AtomicBool,
    /// A signal stops every worker where it is.
    interrupt: Watch,
    bar: ProgressBar,
}

/// The progress of one item across attempts.
struct Attempt {
    index: usize,
    item: Item,
    record: Record,
    part: Option<PartFile>,
    delays: backon::ExponentialBackoff,
    /// Blind waits for collisions whose TIME_WAIT entry cannot be seen.
    blind: backon::ExponentialBackoff,
    /// Reclaims made for this item: a collision after two of them means
    /// reclaiming does not work here.
    reclaimed: u32,
}

/// Run every item; the report lists them in the given order. Also returns
/// the exit code class of the first failure, if any.
/// `first`, if given, is a connected session and a logged-in link on it (the
/// ones an mget listed on): the first worker goes on with them.
pub async fn run(
    plan: Plan,
    items: Vec<Item>,
    opts: Options,
    first: Option<(&Session, Link<'_>)>,
    interrupt: &Watch,
) -> (Report, Option<i32>) {
    let mut report = Report::new();
    let bar = if opts.show { ProgressBar::new(items.len() as u64) } else { ProgressBar::hidden() };
    let all = items.clone();
    let shared = Arc::new(Shared {
        queue: Mutex::new(items.into_iter().enumerate().collect()),
        collides: AtomicBool::new(false),
        // A listing link that went passive has shown this server refuses the default port.
        passive: AtomicBool::new(
            plan.spec.mode == DataMode::Passive || first.as_ref().is_some_and(|(_, link)| link.is_passive()),
        ),
        reclaim_fails: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        interrupt: interrupt.clone(),
        bar,
    });
    let (plan, opts) = (Arc::new(plan), Arc::new(opts));
    // The first worker runs here, since it may borrow `first`; the others are tasks.
    let others: Vec<_> =
        (1..opts.jobs.max(1)).map(|_| tokio::spawn(worker(plan.clone(), opts.clone(), shared.clone(), None))).collect();
    let mut done = worker(plan.clone(), opts.clone(), shared.clone(), first).await;
    for w in others {
        done.extend(w.await.unwrap_or_default());
    }
    shared.bar.finish_and_clear();
    if let Some(signal) = interrupt.received() {
        // What was under way or still queued did not finish: say so.
        let finished: std::collections::HashSet<usize> = done.iter().map(|(i, _, _)| *i).collect();
        for (i, item) in all.into_iter().enumerate().filter(|(i, _)| !finished.contains(i)) {
            let mut record = record_for(&item);
            record.error = Some(format!("not finished: interrupted by {}", signal.name()));
            done.push((i, record, None));
        }
    }
    done.sort_by_key(|(i, _, _)| *i);
    let first_failure = done.iter().find_map(|(_, _, code)| *code);
    for (_, record, _) in done {
        report.push(record);
    }
    (report, first_failure)
}

type Done = Vec<(usize, Record, Option<i32>)>;

async fn worker(
    plan: Arc<Plan>,
    opts: Arc<Options>,
    shared: Arc<Shared>,
    mut first: Option<(&Session, Link<'_>)>,
) -> Done {
    let mut done = Done::new();
    let mut current: Option<Attempt> = None;
    let mut connect_delays = retry_backoff().build();
    let mut connect_failures = 0;
    loop {
        if current.is_none() {
            current = next(&shared);
        }
        let Some(attempt) = current.as_mut() else { return done };
        if let Some((session, link)) = first.take() {
            let idle = vec![Idle { link, ready_at: Instant::now(), used: true }];
            let serving = serve(session, idle, &plan, &opts, &shared, &mut current, &mut done);
            // The caller closes its session.
            if interruptible(&shared, serving).await.is_none() {
                return done;
            }
            continue;
        }
        let connecting = Session::connect(&plan.target);
        let Some(connected) = interruptible(&shared, connecting).await else { return done };
        let session = match connected {
            Ok(s) => s,
            Err(e) => {
                connect_failures += 1;
                if connect_failures > opts.retries || is_permanent(&e) {
                    let attempt = current.take().unwrap();
                    finish(&shared, &opts, &mut done, attempt, Some(e));
                    continue;
                }
                let delay = connect_delays.next().unwrap_or(Duration::from_secs(8));
                tracing::warn!("SSH connection failed ({e:#}); retrying in {delay:.1?}");
                attempt.record.waits.push(Wait { seconds: delay.as_secs_f64(), cause: "SSH reconnect backoff".into() });
                if interruptible(&shared, tokio::time::sleep(delay)).await.is_none() {
                    return done;
                }
                continue;
            }
        };
        connect_failures = 0;
        let served =
            interruptible(&shared, serve(&session, Vec::new(), &plan, &opts, &shared, &mut current, &mut done)).await;
        // Ends every helper the session started on the server (relay, shell, reclaimer).
        session.close().await;
        if served.is_none() {
            return done;
        }
    }
}

/// `work`, unless a signal comes first (then None, and `work` is dropped where it is).
async fn interruptible<T>(shared: &Shared, work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        _ = shared.interrupt.wait() => None,
    }
}

fn next(shared: &Shared) -> Option<Attempt> {
    if shared.stop.load(Ordering::SeqCst) || shared.interrupt.received().is_some() {
        return None;
    }
    let (index, item) = shared.queue.lock().unwrap().pop_front()?;
    let record = record_for(&item);
    Some(Attempt {
        index,
        item,
        record,
        part: None,
        delays: retry_backoff().build(),
        blind: measure::collision_backoff().build(),
        reclaimed: 0,
    })
}

/// A fresh record for `item`: failed until it succeeds.
fn record_for(item: &Item) -> Record {
    Record {
        op: item.op,
        source: item.source.clone(),
        target: item.target.clone(),
        bytes: 0,
        seconds: 0.0,
        waits: vec![],
        retries: 0,
        rotations: 0,
        reclaims: 0,
        data_path: String::new(),
        verified: "none".into(),
        outcome: Outcome::Failed,
        error: None,
    }
}

fn finish(shared: &Shared, opts: &Options, done: &mut Done, mut attempt: Attempt, error: Option<anyhow::Error>) {
    let code = error.as_ref().map(exit_code);
    if let Some(e) = error {
        eprintln!("ftpssh-fullsecure: error: {} {}: {e:#}", attempt.item.op.as_str(), attempt.item.source);
        attempt.record.error = Some(format!("{e:#}"));
        attempt.record.outcome = Outcome::Failed;
        if !opts.continue_on_error {
            shared.stop.store(true, Ordering::SeqCst);
        }
    } else {
        attempt.record.outcome = Outcome::Ok;
    }
    shared.bar.inc(1);
    done.push((attempt.index, attempt.record, code));
}

/// An idle link and when it may carry the next transfer.
struct Idle<'s> {
    link: Link<'s>,
    ready_at: Instant,
    /// Has carried a transfer (a fresh one taken after a collision is a rotation).
    used: bool,
}

/// Serve items on one SSH session until the queue is empty or the session breaks.
async fn serve<'s>(
    session: &'s Session,
    mut idle: Vec<Idle<'s>>,
    plan: &Plan,
    opts: &Options,
    shared: &Shared,
    current: &mut Option<Attempt>,
    done: &mut Done,
) {
    loop {
        if current.is_none() {
            *current = next(shared);
        }
        let Some(attempt) = current.as_mut() else { break };
        let now = Instant::now();
        let ready = idle.iter().position(|l| l.ready_at <= now);
        let mut link = match ready {
            Some(i) => {
                let idle = idle.swap_remove(i);
                if !idle.used && shared.collides.load(Ordering::SeqCst) {
                    attempt.record.rotations += 1;
                }
                idle.link
            }
            None => match open_link(session, plan, shared).await {
                Ok(link) => {
                    if shared.collides.load(Ordering::SeqCst) {
                        attempt.record.rotations += 1;
                    }
                    link
                }
                Err(e) => {
                    let e = session.attribute(e).await;
                    let passing = session.is_closed() || !is_permanent(&e);
                    if passing && attempt.record.retries < opts.retries {
                        retry_later(attempt, &e).await;
                    } else {
                        finish(shared, opts, done, current.take().unwrap(), Some(e));
                    }
                    if session.is_closed() {
                        break;
                    }
                    continue;
                }
            },
        };
        let pace = match opts.pace {
            Pace::Reclaim if shared.reclaim_fails.load(Ordering::SeqCst) => Pace::Rotate,
            pace => pace,
        };
        let started = Instant::now();
        tracing::debug!("{} {} starts", attempt.item.op.as_str(), attempt.item.source);
        // Once the server is known to collide, the next transfer will want a
        // fresh link: open it while this one transfers.
        let want_spares = pace == Pace::Rotate
            && shared.collides.load(Ordering::SeqCst)
            && idle.iter().filter(|l| l.ready_at <= Instant::now()).count() < 2;
        let result = if want_spares {
            // Three at once: they take turns only at the socket table; logins overlap.
            let (result, a, b, c) = tokio::join!(
                perform(&mut link, attempt),
                open_link(session, plan, shared),
                open_link(session, plan, shared),
                open_link(session, plan, shared)
            );
            let now = Instant::now();
            idle.extend([a, b, c].into_iter().flatten().map(|link| Idle { link, ready_at: now, used: false }));
            result
        } else {
            perform(&mut link, attempt).await
        };
        let result = match result {
            Ok(()) => Ok(()),
            Err(e) => Err(session.attribute(e).await),
        };
        attempt.record.seconds += started.elapsed().as_secs_f64();
        attempt.record.data_path = if link.is_passive() { "passive" } else { "default-port" }.into();
        if link.is_passive() && plan.spec.mode == DataMode::Auto {
            shared.passive.store(true, Ordering::SeqCst);
        }
        match result {
            Ok(()) => {
                // Once the server is known to collide, a link that carried a
                // download rests for 2MSL rather than collecting a 425.
                let burnt = attempt.item.op == Op::Get && !link.is_passive() && shared.collides.load(Ordering::SeqCst);
                let rest = if burnt && pace == Pace::Rotate { REST_AFTER_DOWNLOAD } else { Duration::ZERO };
                let attempt = current.take().unwrap();
                finish(shared, opts, done, attempt, None);
                park(&mut idle, link, Instant::now() + rest).await;
            }
            Err(e) if e.downcast_ref::<Collision>().is_some() => {
                shared.collides.store(true, Ordering::SeqCst);
                let tuple = e.downcast_ref::<Collision>().and_then(|c| c.tuple);
                match pace {
                    Pace::Reclaim => match reclaim(&mut link, tuple, attempt).await {
                        Ok(true) => park(&mut idle, link, Instant::now()).await,
                        Ok(false) => {
                            tracing::info!(
                                "{e:#}; its 4-tuple is not known yet: rotating to another control connection"
                            );
                            park(&mut idle, link, Instant::now() + REST_AFTER_DOWNLOAD).await;
                        }
                        Err(why) => {
                            tracing::info!("{e:#}; {why:#}; rotating to other control connections from now on");
                            shared.reclaim_fails.store(true, Ordering::SeqCst);
                            link.close().await;
                        }
                    },
                    Pace::Rotate => {
                        tracing::info!("{e:#}; rotating to another control connection (new proxy port, new 4-tuple)");
                        park(&mut idle, link, Instant::now() + REST_AFTER_DOWNLOAD).await;
                    }
                    Pace::Wait => {
                        match measure::wait_for(session, tuple.as_ref(), opts.show, &mut attempt.blind).await {
                            Ok(waits) => {
                                attempt.record.waits.extend(waits);
                                park(&mut idle, link, Instant::now()).await;
                            }
                            Err(e) => {
                                finish(shared, opts, done, current.take().unwrap(), Some(e));
                                park(&mut idle, link, Instant::now()).await;
                            }
                        }
                    }
                }
            }
            Err(e) if !is_permanent(&e) && attempt.record.retries < opts.retries => {
                retry_later(attempt, &e).await;
                link.close().await;
                if session.is_closed() {
                    break;
                }
            }
            Err(e) => {
                finish(shared, opts, done, current.take().unwrap(), Some(e));
                if session.is_closed() {
                    break;
                }
                park(&mut idle, link, Instant::now()).await;
            }
        }
        if idle.len() > MAX_IDLE_LINKS {
            // Close the longest-resting half at once: ProFTPD answers a new
            // connection late (~0.4 s) right after a session ends, so one such
            // pause for many closes beats one for each.
            idle.sort_by_key(|l| l.ready_at);
            for l in idle.drain(..MAX_IDLE_LINKS - KEEP_AFTER_CLOSING).collect::<Vec<_>>() {
                l.link.close().await;
            }
        }
    }
    for l in idle {
        l.link.close().await;
    }
}

/// Put `link` back in the idle pool, ready at `ready_at`, if it is in step or
/// can be brought back in step (a failed transfer's final reply read, or an
/// ABOR read through, within a bound); else close it. The one door back into
/// the pool: no command ever goes on a link whose state is unknown.
async fn park<'s>(idle: &mut Vec<Idle<'s>>, mut link: Link<'s>, ready_at: Instant) {
    match link.resync().await {
        Ok(()) => idle.push(Idle { link, ready_at, used: true }),
        Err(e) => {
            tracing::debug!("closing a control connection that cannot be brought back in step: {e:#}");
            link.close().await;
        }
    }
}

/// Free the collided tuple for the same link ([`crate::ssh::reclaimer`]). False:
/// the tuple is not fully known (no transfer on this link showed the server's
/// data source port yet), so rotate this once. An error means reclaiming does
/// not work here: a helper that failed, or a tuple that collides again
/// although reclaimed twice (the second time waiting longer, for a distant
/// FTP host's answer).
async fn reclaim(link: &mut Link<'_>, tuple: Option<crate::tcp::DataTuple>, attempt: &mut Attempt) -> Result<bool> {
    let Some(tuple) = tuple.filter(|t| t.server_port.is_some()) else { return Ok(false) };
    if attempt.reclaimed >= 2 {
        anyhow::bail!("the TIME_WAIT of {tuple} survived reclaiming (tcp_rfc1337=1 on the FTP server's host?)");
    }
    let wait = if attempt.reclaimed == 0 { Duration::from_millis(2) } else { Duration::from_millis(100) };
    link.reclaim(&tuple, wait).await.context("could not reclaim the 4-tuple")?;
    tracing::info!(
        "TIME_WAIT collision on {tuple}: reclaimed the 4-tuple with a SYN from its proxy end; same control connection"
    );
    attempt.reclaimed += 1;
    attempt.record.reclaims += 1;
    Ok(true)
}

/// Count a retry and sleep its backoff delay.
async fn retry_later(attempt: &mut Attempt, e: &anyhow::Error) {
    attempt.record.retries += 1;
    let delay = attempt.delays.next().unwrap_or(Duration::from_secs(8));
    tracing::warn!(
        "{} {}: {e:#}; retry {} in {delay:.1?}",
        attempt.item.op.as_str(),
        attempt.item.source,
        attempt.record.retries
    );
    attempt.record.waits.push(Wait { seconds: delay.as_secs_f64(), cause: format!("retry after: {e:#}") });
    tokio::time::sleep(delay).await;
}

async fn open_link<'s>(session: &'s Session, plan: &Plan, shared: &Shared) -> Result<Link<'s>> {
    let mut spec = plan.spec.clone();
    if shared.passive.load(Ordering::SeqCst) {
        spec.mode = DataMode::Passive; // remembered: this server refuses the default port
    }
    let started = Instant::now();
    let link = Link::open(session, &spec).await;
    tracing::debug!("control connection opened in {:.1?}", started.elapsed());
    link
}

async fn perform(link: &mut Link<'_>, attempt: &mut Attempt) -> Result<()> {
    let bar = ProgressBar::hidden();
    match attempt.item.op {
        Op::Get => {
            let target = PathBuf::from(&attempt.item.target);
            if attempt.part.is_none() {
                attempt.part = Some(PartFile::open(&target)?);
            }
            let part = attempt.part.as_ref().unwrap();
            let fetched = transfer::fetch(link, &attempt.item.source, part, &bar).await;
            attempt.record.bytes = part.len().unwrap_or(0);
            let (n, verified) = fetched?;
            attempt.part.take().unwrap().commit(&target)?;
            attempt.record.bytes = n;
            attempt.record.verified = if verified { format!("size {n} = announced") } else { "none".into() };
        }
        Op::Put => {
            let n = transfer::put(link, attempt.item.source.as_ref(), &attempt.item.target, &bar).await?;
            attempt.record.bytes = n;
            // put fails when SIZE disagrees; a server without SIZE leaves it unchecked.
            attempt.record.verified = format!("size {n} (SIZE when the server has it)");
        }
    }
    Ok(())
}
