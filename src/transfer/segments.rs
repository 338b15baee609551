//! `get --segments N`: one file in N ranges, each fetched with REST and RETR over a control
//! connection of its own, written in place (`pwrite`) into the one part file, as lftp's
//! `pget -n` does. One SSH connection is one sshd process, one encryption stream on the
//! server: the segments run over `--ssh-connections` SSH connections, each with its own
//! link and so its own data path (its own reverse forward, or passive), origin checks and
//! pacing, as any link.
//!
//! One link per SSH connection at a time: a session's forwarded data connections arrive on
//! one queue ([`crate::dataport::gate::Gate::next`]), which a link awaits as the only
//! transfer under way. With fewer connections than segments, each connection's link fetches
//! its ranges one after the other, and a range that follows the one just fetched, begun by
//! nobody, in the same transfer: over one SSH connection the whole file is then one RETR, as
//! without segments, and still recorded range by range.
//!
//! A segment whose range is complete hangs up its data connection; the server then ends the
//! transfer with 426 or 451 (or 226, when it had sent everything), all of which end that
//! segment well. Which ranges are written is recorded beside the part file
//! ([`crate::transfer::ranges`]), so a failed or interrupted run resumes each one.
//!
//! The bulk commands split the files of at least `--segment-threshold` ([`fetch`]).
//!
//! How many SSH connections, unless `--ssh-connections` says: [`crate::transfer::streams`], by
//! the control connection's round trip, measured on the SIZE and REST this asks anyway.
//!
//! What a server cannot do makes fewer segments, said once, never a failure: no SIZE or no
//! REST (one segment, the plain download), fewer control connections than asked (a
//! MaxClientsPerHost: 421 or 530 at login), fewer SSH connections (MaxStartups). An sshd's
//! MaxSessions limits no segment: each has an SSH connection of its own.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

mod shared;

use super::ranges::{Record, RecordFile};
use super::streams::{connections, NEAR};
use super::{remote_size, stall_window, Incoming, PartFile, WRITE_CHUNK};
use crate::error::{classified, find, Kind};
use crate::events::{Event, Events};
use crate::ftp::control::FtpError;
use crate::ftp::Command;
use crate::link::{Collision, Link};
use crate::ssh::endpoint::SshTarget;
use crate::ssh::Session;
use crate::timewait::{self, Collisions, Next, Pace};
use crate::transfer::verify;
use shared::{Shared, Writing};

/// A segment shorter than this is not worth a connection of its own.
pub const MIN_SEGMENT: u64 = 1 << 20;
/// Replies that end a transfer whose data connection we hung up once its range was complete.
const CUT_SHORT: [u16; 4] = [426, 451, 450, 425];

/// How to split a download.
pub struct Segments<'a> {
    /// Segments asked for (`--segments`).
    pub segments: usize,
    /// SSH connections to spread them over (`--ssh-connections`); None: by the round trip
    /// ([`crate::transfer::streams`]).
    pub connections: Option<usize>,
    /// Where the further SSH connections go.
    pub target: &'a SshTarget,
    /// Files smaller than this are fetched whole, without a word (`--segment-threshold`, for
    /// the bulk commands; 0 for `get`).
    pub threshold: u64,
}

/// Download `remote` into `local` in segments, `link` carrying the first. Returns the byte count.
pub async fn get(link: &mut Link<'_>, how: &Segments<'_>, remote: &str, local: &Path) -> Result<u64> {
    let part = PartFile::open_off_thread(local).await?;
    let n = fetch(link, how, remote, &part).await?;
    part.commit_off_thread(local).await?;
    Ok(n)
}

/// Download `remote` into `part` in segments (or whole, where it cannot be split), as
/// [`super::fetch`] does; the caller renames it. Returns the byte count.
pub async fn fetch(link: &mut Link<'_>, how: &Segments<'_>, remote: &str, part: &PartFile) -> Result<u64> {
    let asked = Instant::now();
    let size = remote_size(link, remote).await?;
    let mut round_trip = asked.elapsed();
    let Some(size) = size else {
        return plain(link, remote, part, Some("the server gives no SIZE")).await;
    };
    if size < how.threshold {
        return plain(link, remote, part, None).await;
    }
    let n = how.segments.min((size / MIN_SEGMENT).max(1) as usize);
    if n < 2 {
        return plain(link, remote, part, Some(&format!("{size} bytes is too small to split"))).await;
    }
    // REST is what a segment starts with: a server that refuses it can only send the whole file.
    let asked = Instant::now();
    let rest = link.control.command(&Command::Rest(0)).await?;
    round_trip = round_trip.min(asked.elapsed());
    if rest.code != 350 {
        part.restart()?;
        return plain(link, remote, part, Some(&format!("the server does not take REST ({rest})"))).await;
    }
    let record_file = RecordFile::open(&part.path)?;
    let held = part.len()?;
    let record = match record_file.load() {
        Some(r) if r.size == size && held == size => r,
        // No record: a plain part file, whose bytes are a prefix (if it is not longer than the file).
        None if held <= size => Record::split(size, n, held),
        _ => Record::split(size, n, 0),
    };
    // The record first: a part file of full length without one would pass for a complete plain one.
    record_file.save(&record)?;
    part.set_len(size)?;
    let left = record.left();
    let events = link.events().clone();
    events.emit(Event::TransferStarted { name: remote.into(), offset: size - left, size: Some(size) });
    let shared = Shared::new(record, record_file, part.positioned()?, remote, events.clone());
    if how.connections.is_none() && round_trip >= NEAR {
        // A third look (the next REST overrides it): a busy host can be slow to reply.
        let asked = Instant::now();
        link.control.expect(&Command::Rest(0), |r| r.code == 350).await?;
        round_trip = round_trip.min(asked.elapsed());
    }
    let (connections, why) = connections(how.connections, n, round_trip);
    if let Some(why) = why {
        tracing::info!("{remote}: {why}");
    }
    let connections = connections.clamp(1, shared.unfinished());
    tracing::info!(
        "{remote}: {} segments, {left} of {size} bytes to fetch, over {connections} SSH connections",
        shared.record.lock().unwrap().ranges.len()
    );
    let spec = link.spec().clone();
    let mut workers: Vec<Worker<'_>> = vec![Box::pin(fetch_ranges(link, &shared))];
    for _ in 1..connections {
        workers.push(Box::pin(async { worker(how.target, &spec, &events, &shared).await.map(|()| true) }));
    }
    let results = join_all(workers).await;
    let mut record_file = shared.finish()?;
    let record = shared.record.lock().unwrap().clone();
    if record.left() > 0 {
        let e = results.into_iter().find_map(Result::err);
        let e = e.unwrap_or_else(|| classified(Kind::Transfer, "no connection was left to fetch the segments"));
        let (left, path) = (record.left(), part.path.display());
        return Err(e.context(format!("{left} bytes of {remote} still to fetch; {path} keeps the rest")));
    }
    if results.first().is_some_and(|r| matches!(r, Ok(false))) && link.spec().verify {
        reopen(link).await?;
    }
    let verified = verify_whole(link, remote, part, size).await?;
    // The record goes before the rename: a complete part file without one is a complete plain one.
    record_file.take().map(RecordFile::remove).transpose()?;
    events.emit(Event::TransferDone { name: remote.into(), bytes: size, verified });
    Ok(size)
}

/// A plain download instead, with `why` said once.
async fn plain(link: &mut Link<'_>, remote: &str, part: &PartFile, why: Option<&str>) -> Result<u64> {
    if let Some(why) = why {
        tracing::warn!("{remote}: {why}: one segment");
    }
    Ok(super::fetch(link, remote, part).await?.0)
}

/// `--verify` over the whole file (its size was checked as each range was fetched).
async fn verify_whole(link: &mut Link<'_>, remote: &str, part: &PartFile, size: u64) -> Result<bool> {
    if !link.spec().verify {
        return Ok(true);
    }
    match verify::method(link).await? {
        Some(m) => {
            let hash = verify::seeded(m.algorithm(), &part.path, size).await?.finish();
            verify::compare(link, remote, m, &hash).await.context("nothing saved")?;
        }
        None => tracing::info!("{remote}: the server offers no hash; the size is checked"),
    }
    Ok(true)
}

/// A worker's future: whether its link is still usable (the first's is used again to verify).
type Worker<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool>> + Send + 'a>>;

/// Every future to its end, all polled on this task (they borrow the first link and the
/// shared state, so they cannot be spawned).
async fn join_all<T>(mut futures: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                    *o = Some(v);
                }
            }
        }
        match out.iter().all(Option::is_some) {
            true => std::task::Poll::Ready(()),
            false => std::task::Poll::Pending,
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}

/// A further SSH connection and its link, fetching ranges until none is left. One that cannot
/// connect or log in leaves its ranges to the others, said once.
async fn worker(target: &SshTarget, spec: &crate::link::Spec, events: &Events, shared: &Shared<'_>) -> Result<()> {
    let session = match Session::connect(target, events.clone()).await {
        Ok(s) => s,
        Err(e) => {
            shared.fewer(&format!("another SSH connection was refused ({e:#})"));
            return Ok(());
        }
    };
    let fetched = async {
        let mut link = match Link::open(&session, spec).await {
            Ok(link) => link,
            Err(e) => {
                shared.fewer(&format!("another control connection was refused ({e:#})"));
                return Ok(());
            }
        };
        let fetched = fetch_ranges(&mut link, shared).await;
        link.close().await;
        fetched.map(drop)
    };
    let fetched = fetched.await;
    session.close().await;
    fetched
}

/// Fetch ranges on `link` until none is left to take. A link whose control connection ended
/// with a range (GNU inetutils ftpd exits when its data connection is hung up) is replaced by
/// a new one on the same SSH connection, when there is more to do on it.
async fn fetch_ranges(link: &mut Link<'_>, shared: &Shared<'_>) -> Result<bool> {
    let mut collisions = Collisions::default();
    let mut usable = true;
    while let Some(i) = shared.take() {
        if !usable {
            if let Err(e) = reopen(link).await {
                shared.give_back(i);
                return Err(e);
            }
        }
        let fetched = loop {
            match fetch_range(link, shared, i).await {
                Err(e) if find::<Collision>(&e).is_some() => {
                    let tuple = find::<Collision>(&e).and_then(|c| c.tuple);
                    match timewait::after_collision(Pace::Reclaim, link, tuple, &mut collisions, &format!("{e}")).await
                    {
                        Next::Reuse => continue,
                        Next::Rest(pause) => tokio::time::sleep(pause).await,
                        Next::StopReclaiming => break Err(e),
                        Next::Fail(e) => break Err(e),
                    }
                }
                other => break other,
            }
        };
        shared.give_back(i);
        usable = fetched?;
    }
    Ok(usable)
}

/// A new link on `link`'s SSH connection in its place.
async fn reopen(link: &mut Link<'_>) -> Result<()> {
    let fresh = Link::open(link.session(), &link.spec().clone()).await?;
    std::mem::replace(link, fresh).close().await;
    Ok(())
}

/// Range `first` from where it stopped to its end, on `link`, and on into the ranges that follow
/// it while nobody else fetches them and they have not begun: with one SSH connection for all
/// of them they are one transfer, not one each. False if the control connection ended with it.
async fn fetch_range(link: &mut Link<'_>, shared: &Shared<'_>, first: usize) -> Result<bool> {
    let mut i = first;
    let (mut at, mut end) = shared.range(i);
    let remote = shared.remote;
    tracing::info!("{remote}: segment {i} from byte {at} to {end}");
    let cmd = Command::Retr(remote.into());
    // Through the link: if it falls back to passive on the way, it sends the REST again.
    link.expect_rest(at).await?;
    let data = link.start(&cmd).await?;
    let throttle = link.spec().throttle.clone();
    let doing = format!("downloading {remote}, segment {i}");
    let mut incoming = Incoming::new(data, stall_window(link), doing);
    let mut buf = Vec::with_capacity(WRITE_CHUNK);
    // One chunk written while the next fills, as a plain download's sink does.
    let mut writing: Option<Writing> = None;
    let mut taken = Vec::new();
    let copied = async {
        'wire: while at < end {
            let Some(chunk) = incoming.next().await? else {
                let why = format!("{remote}: the server's data ended at byte {at}, short of {end} (the file changed?)");
                return Err(classified(Kind::Transfer, why));
            };
            let mut wire = chunk.as_ref();
            if let Some(t) = &throttle {
                t.take(wire.len()).await;
            }
            while !wire.is_empty() {
                let take = wire.len().min((end - at) as usize);
                buf.extend_from_slice(&wire[..take]);
                (at, wire) = (at + take as u64, &wire[take..]);
                shared.events.emit(Event::Progress { bytes: take as u64 });
                if buf.len() >= WRITE_CHUNK || at == end {
                    let spare = match writing.take() {
                        Some(w) => shared.settle(w).await?,
                        None => Vec::with_capacity(WRITE_CHUNK),
                    };
                    writing = Some(shared.write(i, std::mem::replace(&mut buf, spare), at));
                }
                if at == end {
                    let Some(next) = shared.run_on(i) else { break 'wire };
                    taken.push(next);
                    (i, end) = (next, shared.range(next).1);
                    tracing::info!("{remote}: segment {i} from byte {at} to {end} (read on from the one before)");
                }
            }
        }
        Ok(())
    };
    let copied = copied.await;
    incoming.hang_up().await;
    // The write in flight is recorded even if the rest failed: a retry resumes after it.
    let settled = match writing.take() {
        Some(w) => shared.settle(w).await.map(drop),
        None => Ok(()),
    };
    for next in taken {
        shared.give_back(next);
    }
    copied?;
    settled?;
    match link.finish(&cmd).await {
        Ok(_) => Ok(true),
        Err(e) if cut_short(&e) => Ok(true),
        // The range is written: the link is what failed, not the segment.
        Err(e) => {
            tracing::info!("{remote}: segment {i} is complete, but its control connection ended: {e:#}");
            Ok(link.resync().await.is_ok())
        }
    }
}

/// The reply that ends a transfer whose data connection we hung up early.
fn cut_short(e: &anyhow::Error) -> bool {
    find::<FtpError>(e).is_some_and(|f| CUT_SHORT.contains(&f.reply.code))
}
