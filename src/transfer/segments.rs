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

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};

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

/// A segment shorter than this is not worth a connection of its own.
pub const MIN_SEGMENT: u64 = 1 << 20;
/// The record is saved each time a segment has written this much more.
const SAVE_EVERY: u64 = 8 << 20;
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

/// A chunk's write in flight, its range, and where it ends in the file.
type Writing = (tokio::task::JoinHandle<std::io::Result<Vec<u8>>>, usize, u64);

/// What the segments share: the record, the part file, the ranges under way.
struct Shared<'a> {
    remote: &'a str,
    events: Events,
    record: Mutex<Record>,
    /// Saved on every [`SAVE_EVERY`] and when the run ends (also when it is dropped, at a signal).
    record_file: Mutex<Option<RecordFile>>,
    file: Arc<File>,
    /// Ranges being fetched now, and the bytes written since the last save.
    busy: Mutex<Vec<bool>>,
    unsaved: Mutex<u64>,
    said: Mutex<bool>,
}

impl<'a> Shared<'a> {
    fn new(record: Record, record_file: RecordFile, file: File, remote: &'a str, events: Events) -> Shared<'a> {
        let busy = Mutex::new(vec![false; record.ranges.len()]);
        Shared {
            remote,
            events,
            record: Mutex::new(record),
            record_file: Mutex::new(Some(record_file)),
            file: Arc::new(file),
            busy,
            unsaved: Mutex::new(0),
            said: Mutex::new(false),
        }
    }

    fn unfinished(&self) -> usize {
        self.record.lock().unwrap().ranges.iter().filter(|r| r.left() > 0).count().max(1)
    }

    /// The next range nobody fetches and not yet complete.
    fn take(&self) -> Option<usize> {
        let record = self.record.lock().unwrap();
        let mut busy = self.busy.lock().unwrap();
        let i = (0..busy.len()).find(|&i| !busy[i] && record.ranges[i].left() > 0)?;
        busy[i] = true;
        Some(i)
    }

    /// The range after `i`, taken, if it begins where `i` ends, nobody fetches it and none of
    /// it is written yet: a transfer at the end of `i` reads on into it.
    fn run_on(&self, i: usize) -> Option<usize> {
        let record = self.record.lock().unwrap();
        let mut busy = self.busy.lock().unwrap();
        let next = i + 1;
        let r = record.ranges.get(next)?;
        let follows = r.start == record.ranges[i].end && r.done == r.start && r.left() > 0;
        (follows && !busy[next]).then(|| {
            busy[next] = true;
            next
        })
    }

    fn give_back(&self, i: usize) {
        self.busy.lock().unwrap()[i] = false;
    }

    fn range(&self, i: usize) -> (u64, u64) {
        let r = self.record.lock().unwrap().ranges[i];
        (r.done, r.end)
    }

    /// Start writing `buf`, which ends at `end` in range `i`, off the async thread.
    fn write(&self, i: usize, buf: Vec<u8>, end: u64) -> Writing {
        let (file, at) = (self.file.clone(), end - buf.len() as u64);
        (tokio::task::spawn_blocking(move || file.write_all_at(&buf, at).map(|()| buf)), i, end)
    }

    /// Wait for a write, then record it in its range; its buffer comes back empty.
    async fn settle(&self, (writing, i, end): Writing) -> Result<Vec<u8>> {
        let mut buf = writing.await?.with_context(|| format!("could not write the part file of {}", self.remote))?;
        let n = buf.len() as u64;
        buf.clear();
        self.record.lock().unwrap().ranges[i].done = end;
        let mut unsaved = self.unsaved.lock().unwrap();
        *unsaved += n;
        if *unsaved >= SAVE_EVERY || self.record.lock().unwrap().ranges[i].left() == 0 {
            *unsaved = 0;
            self.save()?;
        }
        Ok(buf)
    }

    fn save(&self) -> Result<()> {
        match self.record_file.lock().unwrap().as_ref() {
            Some(f) => f.save(&self.record.lock().unwrap()),
            None => Ok(()),
        }
    }

    /// Save the record one last time and hand its file over.
    fn finish(&self) -> Result<Option<RecordFile>> {
        self.save()?;
        Ok(self.record_file.lock().unwrap().take())
    }

    /// A connection fewer than asked: said once, and the others fetch its ranges.
    fn fewer(&self, why: &str) {
        let mut said = self.said.lock().unwrap();
        if !*said {
            *said = true;
            tracing::warn!("{}: fewer segments at once: {why}", self.remote);
        }
    }
}

impl Drop for Shared<'_> {
    /// Interrupted (the run's future dropped at a signal): what was written stays recorded.
    fn drop(&mut self) {
        let _ = self.save();
    }
}
