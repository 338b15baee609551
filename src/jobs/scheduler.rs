//! The scheduler of one worker's session: which link carries the next item,
//! and what happens to the link and the item after the transfer. The
//! TIME_WAIT decisions are [`crate::timewait`]'s; this only carries them out.

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Result;

use crate::error::{find, is_permanent};
use crate::events::{Event, Recorder};
use crate::jobs::attempt::Attempt;
use crate::jobs::batch::Op;
use crate::jobs::shared::{finish, next, Options, Plan, Shared};
use crate::link::{Collision, DataMode, Link};
use crate::ssh::Session;
use crate::timewait::{self, Next, Pace};
use crate::transfer::segments::Segments;

/// Idle links kept per worker; past that, all but [`KEEP_AFTER_CLOSING`]
/// of the longest-resting are closed at once.
const MAX_IDLE_LINKS: usize = 32;
const KEEP_AFTER_CLOSING: usize = 8;
/// Open spares when fewer ready links than this are idle.
const MIN_READY: usize = 2;

/// An idle link and when it may carry the next transfer.
pub(super) struct Idle<'s> {
    pub(super) link: Link<'s>,
    pub(super) ready_at: Instant,
    /// Has carried a transfer (a fresh one taken after a collision is a rotation).
    pub(super) used: bool,
}

/// Serve items on one SSH session until the queue is empty or the session breaks.
pub(super) async fn serve<'s>(
    session: &'s Session,
    mut idle: Vec<Idle<'s>>,
    plan: &Plan,
    opts: &Options,
    shared: &Shared,
    current: &mut Option<Attempt>,
) {
    let run = Run { plan, opts, shared };
    let recorder = std::sync::Arc::new(Recorder::default());
    let _watching = session.events().watch(recorder.clone());
    // The link that carries the current item's commands already (sent ahead).
    let mut carried: Option<Link<'s>> = None;
    loop {
        if current.is_none() {
            *current = next(shared);
        }
        let Some(attempt) = current.as_mut() else { break };
        let taken = match carried.take() {
            Some(link) => Ok(link),
            None => take_link(session, &mut idle, plan, shared, attempt).await,
        };
        let mut link = match taken {
            Ok(link) => link,
            Err(e) => match no_link(run, session, e, current).await {
                Then::Stop => break,
                Then::Go => continue,
            },
        };
        let pace = timewait::in_force(opts.pace, shared.reclaim_fails.load(Ordering::SeqCst));
        let started = Instant::now();
        let collides = shared.collides.load(Ordering::SeqCst);
        if let Some(Next::StopReclaiming) = timewait::ahead(pace, collides, &mut link, &mut attempt.collisions).await {
            attempt.absorb(&recorder);
            shared.reclaim_fails.store(true, Ordering::SeqCst);
            link.close().await;
            continue;
        }
        // A download that may be split reads SIZE first: nothing is sent ahead.
        let upcoming = match opts.segments > 1 {
            true => None,
            false => send_ahead(&mut link, attempt, shared).await,
        };
        let result = transfer(session, &mut link, attempt, &mut idle, (plan, opts), shared, pace).await;
        let result = match result {
            Ok(()) => Ok(()),
            Err(e) => Err(session.attribute(e).await),
        };
        attempt.record.seconds += started.elapsed().as_secs_f64();
        attempt.absorb(&recorder);
        if link.is_passive() && plan.spec.mode == DataMode::Auto {
            shared.passive.store(true, Ordering::SeqCst);
        }
        let upcoming = match upcoming {
            Some(up) if result.is_ok() && link.has_pending() => {
                finish(plan, shared, opts, current.replace(up).unwrap(), None);
                carried = Some(link);
                continue;
            }
            other => other,
        };
        if let Some(up) = upcoming {
            requeue(shared, up); // its commands are read through when the link is parked
        }
        if let Then::Stop = after_transfer(run, &mut idle, link, result, pace, current, &recorder).await {
            break;
        }
        trim(&mut idle).await;
    }
    for l in idle {
        l.link.close().await;
    }
    if let Some(link) = carried {
        link.close().await;
    }
}

/// What a worker does after an item's turn.
enum Then {
    /// Go on with the next item.
    Go,
    /// Stop: the session is gone.
    Stop,
}

/// What a worker serves: the run's plan and options, and what all its workers share.
#[derive(Clone, Copy)]
struct Run<'a> {
    plan: &'a Plan,
    opts: &'a Options,
    shared: &'a Shared,
}

/// No link could be had for the `current` item (`e`): it is tried again later where that
/// may help, else it fails.
async fn no_link(run: Run<'_>, session: &Session, e: anyhow::Error, current: &mut Option<Attempt>) -> Then {
    let e = session.attribute(e).await;
    let attempt = current.as_mut().expect("an item is being served");
    let passing = session.is_closed() || !is_permanent(&e);
    if passing && attempt.record.retries < run.opts.retries {
        attempt.retry_later(&run.plan.events, &e).await;
    } else {
        finish(run.plan, run.shared, run.opts, current.take().unwrap(), Some(e));
    }
    match session.is_closed() {
        true => Then::Stop,
        false => Then::Go,
    }
}

/// The transfer of the `current` item on `link` came to `result`: the item is finished or
/// tried again later, and the link parked (ready again after its rest) or closed.
async fn after_transfer<'s>(
    run: Run<'_>,
    idle: &mut Vec<Idle<'s>>,
    mut link: Link<'s>,
    result: Result<()>,
    pace: Pace,
    current: &mut Option<Attempt>,
    recorder: &Recorder,
) -> Then {
    let session = link.session();
    let attempt = current.as_mut().expect("an item is being served");
    match result {
        Ok(()) => {
            let download = attempt.item.op == Op::Get && !link.is_passive();
            let rest = timewait::rest_after(pace, download, run.shared.collides.load(Ordering::SeqCst));
            finish(run.plan, run.shared, run.opts, current.take().unwrap(), None);
            park(idle, link, Instant::now() + rest).await;
        }
        Err(e) if find::<Collision>(&e).is_some() => {
            run.shared.collides.store(true, Ordering::SeqCst);
            let failed = after_collision(&e, pace, &mut link, attempt, run.shared, recorder).await;
            match failed {
                Ok(Some(ready_at)) => park(idle, link, ready_at).await,
                Ok(None) => link.close().await,
                Err(e) => {
                    finish(run.plan, run.shared, run.opts, current.take().unwrap(), Some(e));
                    park(idle, link, Instant::now()).await;
                }
            }
        }
        Err(e) if !is_permanent(&e) && attempt.record.retries < run.opts.retries => {
            attempt.retry_later(&run.plan.events, &e).await;
            link.close().await;
            if session.is_closed() {
                return Then::Stop;
            }
        }
        Err(e) => {
            finish(run.plan, run.shared, run.opts, current.take().unwrap(), Some(e));
            if session.is_closed() {
                return Then::Stop;
            }
            park(idle, link, Instant::now()).await;
        }
    }
    Then::Go
}

/// Once the default port has worked on `link` ([`Link::can_send_ahead`]: where
/// the server's data source port is fixed, our relay holds the next commands
/// until the last connection has closed): the current download's commands and
/// the next item's behind them go on the wire now, so the server starts the
/// next transfer the moment this one ends (a round trip or more saved per
/// file; FTP servers read commands in order). The next item, if its commands
/// went out.
async fn send_ahead(link: &mut Link<'_>, attempt: &mut Attempt, shared: &Shared) -> Option<Attempt> {
    if !link.can_send_ahead(shared.collides.load(Ordering::SeqCst)) {
        return None;
    }
    if !link.has_pending() && !matches!(attempt.send_ahead(link).await, Ok(true)) {
        return None;
    }
    let mut upcoming = next(shared)?;
    match upcoming.send_ahead(link).await {
        Ok(true) => Some(upcoming),
        _ => {
            requeue(shared, upcoming);
            None
        }
    }
}

/// Put `attempt` back at the front of the queue, untried.
fn requeue(shared: &Shared, attempt: Attempt) {
    shared.queue.lock().unwrap().push_front((attempt.index, attempt.item));
}

/// Carry out the TIME_WAIT policy for collision `e` on `link`: when the
/// link may carry a transfer again (None: close it), or why the item fails.
async fn after_collision(
    e: &anyhow::Error,
    pace: Pace,
    link: &mut Link<'_>,
    attempt: &mut Attempt,
    shared: &Shared,
    recorder: &Recorder,
) -> Result<Option<Instant>> {
    let tuple = find::<Collision>(e).and_then(|c| c.tuple);
    let collision = format!("{e:#}");
    let next = timewait::after_collision(pace, link, tuple, &mut attempt.collisions, &collision).await;
    attempt.absorb(recorder);
    match next {
        Next::Reuse => Ok(Some(Instant::now())),
        Next::Rest(rest) => Ok(Some(Instant::now() + rest)),
        Next::StopReclaiming => {
            shared.reclaim_fails.store(true, Ordering::SeqCst);
            Ok(None)
        }
        Next::Fail(e) => Err(e),
    }
}

/// A ready idle link, else a new one. Once the server is known to collide,
/// a link that has not carried a transfer yet is a rotation for this item.
async fn take_link<'s>(
    session: &'s Session,
    idle: &mut Vec<Idle<'s>>,
    plan: &Plan,
    shared: &Shared,
    attempt: &mut Attempt,
) -> Result<Link<'s>> {
    let now = Instant::now();
    let ready = idle.iter().position(|l| l.ready_at <= now);
    let (link, fresh) = match ready {
        Some(i) => {
            let idle = idle.swap_remove(i);
            (idle.link, !idle.used)
        }
        None => (open_link(session, plan, shared).await?, true),
    };
    if fresh && shared.collides.load(Ordering::SeqCst) {
        let why = "the server's data connections collide with TIME_WAIT".to_string();
        attempt.tell(&plan.events, Event::Rotated { why });
    }
    Ok(link)
}

/// Transfer `attempt` on `link`. Once the server is known to collide and
/// rotation is the remedy, the next transfer will want a fresh link: open
/// spares while this one transfers.
async fn transfer<'s>(
    session: &'s Session,
    link: &mut Link<'s>,
    attempt: &mut Attempt,
    idle: &mut Vec<Idle<'s>>,
    (plan, opts): (&Plan, &Options),
    shared: &Shared,
    pace: Pace,
) -> Result<()> {
    let segments = (opts.segments > 1).then_some(Segments {
        segments: opts.segments,
        connections: opts.ssh_connections,
        target: &plan.target,
        threshold: opts.segment_threshold,
    });
    let segments = segments.as_ref();
    let want_spares = pace == Pace::Rotate
        && shared.collides.load(Ordering::SeqCst)
        && idle.iter().filter(|l| l.ready_at <= Instant::now()).count() < MIN_READY;
    if !want_spares {
        return attempt.perform(link, segments).await;
    }
    let spares = open_spares(session, plan, shared);
    let (result, spares) = tokio::join!(attempt.perform(link, segments), spares);
    let now = Instant::now();
    idle.extend(spares.into_iter().flatten().map(|link| Idle { link, ready_at: now, used: false }));
    result
}

/// Three spare links opened at once: they take turns only at the socket
/// table; their logins overlap.
async fn open_spares<'s>(session: &'s Session, plan: &Plan, shared: &Shared) -> [Result<Link<'s>>; 3] {
    let (a, b, c) = tokio::join!(
        open_link(session, plan, shared),
        open_link(session, plan, shared),
        open_link(session, plan, shared)
    );
    [a, b, c]
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

/// Past [`MAX_IDLE_LINKS`], close the longest-resting at once: ProFTPD
/// answers a new connection late right after a session ends
/// (docs/real-systems.md#other-peers-and-settings), so one such pause for
/// many closes beats one for each.
async fn trim(idle: &mut Vec<Idle<'_>>) {
    if idle.len() <= MAX_IDLE_LINKS {
        return;
    }
    idle.sort_by_key(|l| l.ready_at);
    for l in idle.drain(..MAX_IDLE_LINKS - KEEP_AFTER_CLOSING).collect::<Vec<_>>() {
        l.link.close().await;
    }
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
