//! The run the lesson narrates: the book's procedure driven through the
//! library (SSH session, control connection, default-port transfers), and,
//! when the server collides, each remedy in turn. The lesson only ever
//! renders events and socket-table readings; this file decides what to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use crate::demo::facts::{ordinal, Tuple};
use crate::demo::lesson::{Lesson, COUNTDOWN_TICK};
use crate::demo::narration;
use crate::events::{Event, Events};
use crate::link::{Collision, Link, Spec};
use crate::ssh::Session;
use crate::tcp::DataTuple;
use crate::timewait::measure;
use crate::transfer;

/// A way out of a TIME_WAIT collision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Remedy {
    /// Wait the server's countdown out (the book's way).
    Wait,
    /// A new control connection: new P, new 4-tuple.
    Rotate,
    /// End the TIME_WAIT entry with a SYN from our end (RFC 1337).
    Reclaim,
}

/// What the demo does.
#[derive(Debug, Clone)]
pub struct Script {
    /// The remote file downloaded on each transfer.
    pub remote: String,
    /// How many transfers.
    pub transfers: u32,
    /// Remedies to show, in this order, one per collision.
    pub remedies: Vec<Remedy>,
    /// Countdown readings after each transfer.
    pub watch: u32,
    /// Where downloads go (removed after each).
    pub scratch: PathBuf,
}

/// The transfers of the run, on one SSH session. Returns when all are done
/// or the run cannot go on (a collision with no remedy left).
pub async fn transfers(lesson: &mut Lesson, session: &Session, spec: &Spec, events: &Events, s: &Script) -> Result<()> {
    let mut link = Link::open(session, spec).await?;
    lesson.step("the control connection and the reverse forward");
    lesson.tables(session).await;
    lesson.pause().await;
    let mut remedies = s.remedies.iter().copied();
    let mut explained = false;
    for n in 1..=s.transfers {
        let before = lesson.facts.last_tuple();
        let mut collided = false;
        loop {
            match download(&mut link, s, n).await {
                Ok(()) => break,
                Err(e) => {
                    let Some(collision) = e.downcast_ref::<Collision>() else { return Err(e) };
                    let tuple = collision.tuple;
                    collided = true;
                    lesson.step(&format!("transfer {n}: a collision"));
                    lesson.tables(session).await;
                    let Some(remedy) = remedies.next() else {
                        lesson.alert("No remedy left to show: the run ends here.");
                        link.close().await;
                        return Ok(());
                    };
                    link.resync().await.context("the control connection is out of step after the 425")?;
                    lesson.pause().await;
                    link = remedy_step(lesson, session, spec, events, link, remedy, tuple).await?;
                }
            }
        }
        after_transfer(lesson, session, s, n).await;
        if n > 1 && !explained && !collided {
            explained = explain_no_collision(lesson, session, before).await;
        }
        lesson.pause().await;
    }
    link.close().await;
    Ok(())
}

/// One download into the scratch directory (its bytes are not the point).
async fn download(link: &mut Link<'_>, s: &Script, n: u32) -> Result<()> {
    let path = s.scratch.join(format!("transfer-{n}"));
    let result = transfer::get(link, &s.remote, &path, &ProgressBar::hidden()).await;
    let _ = std::fs::remove_file(&path);
    result.map(|_| ())
}

/// The step after a transfer: what happened, the tables, the TIME_WAIT countdown.
async fn after_transfer(lesson: &mut Lesson, session: &Session, s: &Script, n: u32) {
    lesson.step(&format!("transfer {n}: {}", s.remote));
    lesson.tables(session).await;
    let Some((tuple, incarnation)) = lesson.facts.tuples.last().copied() else { return };
    let left = lesson.read_timer(session, &tuple).await;
    lesson.say(&narration::time_wait_held(&tuple, incarnation, left));
    if left.is_some() {
        lesson.show_reading(&tuple, left, s.watch <= 1);
    }
    if left.is_some() && s.watch > 1 {
        tokio::time::sleep(COUNTDOWN_TICK).await;
        lesson.countdown(session, &tuple, s.watch - 1).await;
    }
}

/// After a transfer that did not collide: why not (once). True when said.
async fn explain_no_collision(lesson: &mut Lesson, session: &Session, before: Option<Tuple>) -> bool {
    let Some(now) = lesson.facts.last_tuple() else { return false };
    let changed = before.is_some_and(|b| b != now);
    let timestamps = crate::demo::sockets::server_timestamps(session).await;
    lesson.say(&narration::no_collision(changed, timestamps));
    true
}

/// Apply one remedy, narrated, with its cost measured. Returns the link to go on with.
async fn remedy_step<'s>(
    lesson: &mut Lesson,
    session: &'s Session,
    spec: &Spec,
    events: &Events,
    mut link: Link<'s>,
    remedy: Remedy,
    tuple: Option<DataTuple>,
) -> Result<Link<'s>> {
    lesson.step(&format!("remedy: {}", format!("{remedy:?}").to_lowercase()));
    let started = Instant::now();
    let cost = match remedy {
        Remedy::Wait => {
            wait_out(lesson, session, tuple).await?;
            narration::cost("waiting", started.elapsed(), "the control connection is kept; the time is the server's timer")
        }
        Remedy::Rotate => {
            events.emit(Event::Rotated { why: "TIME_WAIT collision".into() });
            link.close().await;
            link = Link::open(session, spec).await?;
            narration::cost("rotating", started.elapsed(), "a new control connection: a relay, a forward and an FTP login")
        }
        Remedy::Reclaim => {
            let tuple = tuple.filter(|t| t.server_port.is_some()).context("the collided 4-tuple is not known")?;
            link.reclaim(&tuple, Duration::from_millis(2)).await.context("could not reclaim the 4-tuple")?;
            if !lesson.journal.all().iter().rev().take(3).any(|s| matches!(s.event, Event::Reclaimed { .. })) {
                events.emit(Event::Reclaimed { tuple });
            }
            narration::cost("reclaiming", started.elapsed(), "cancel the forward, one SYN, forward again; same control connection")
        }
    };
    lesson.tell_events();
    lesson.say(&cost);
    lesson.tables(session).await;
    lesson.pause().await;
    Ok(link)
}

/// `--pace wait`'s wait (the library's, which reads the timer and waits it
/// out), with the countdown shown live beside it.
async fn wait_out(lesson: &mut Lesson, session: &Session, tuple: Option<DataTuple>) -> Result<()> {
    let mut blind = backon::BackoffBuilder::build(measure::collision_backoff());
    let waiting = measure::wait_for(session, tuple.as_ref(), false, &mut blind);
    tokio::pin!(waiting);
    let shown = lesson.facts.last_tuple();
    lesson.say("The countdown, read on the server once a second while the client waits:");
    loop {
        tokio::select! {
            done = &mut waiting => {
                if let Some(t) = shown { lesson.show_reading(&t, None, true) }
                return done.map(|_| ());
            }
            _ = tokio::time::sleep(COUNTDOWN_TICK) => {
                lesson.tell_events();
                if let Some(t) = shown {
                    let left = lesson.read_timer(session, &t).await;
                    if left.is_some() { lesson.show_reading(&t, left, false) }
                }
            }
        }
    }
}

/// A scratch directory for the downloads, unique to this process.
pub fn scratch_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ftpssh-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    Ok(dir)
}

/// Remove the scratch directory.
pub fn remove_scratch(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// `1st incarnation` etc., for the closing summary.
pub fn incarnations(lesson: &Lesson) -> String {
    let lanes: Vec<String> =
        lesson.facts.tuples.iter().map(|(t, n)| format!("{t}: {} incarnation(s), the last the {}", n, ordinal(*n))).collect();
    lanes.join("\n")
}
