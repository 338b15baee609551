//! The run the lesson narrates: the book's procedure driven through the
//! library (SSH session, control connection, default-port transfers), and,
//! when the server collides, each remedy in turn. The lesson only ever
//! renders events and socket-table readings; this file decides what to do.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::demo::lesson::Lesson;
use crate::demo::narration;
use crate::demo::run_facts::{ordinal, Tuple};
use crate::events::Event;
use crate::link::{Collision, Link, Spec};
use crate::ssh::Session;
use crate::tcp::DataTuple;
use crate::timewait::{self, Collisions, Next, Pace, COUNTDOWN_TICK};
use crate::transfer;

/// What the demo does.
#[derive(Debug, Clone)]
pub struct Script {
    /// The remote file downloaded on each transfer.
    pub remote: String,
    /// How many transfers.
    pub transfers: u32,
    /// Remedies to show, in this order, one per collision (`--pace`'s three).
    pub remedies: Vec<Pace>,
    /// Countdown readings after each transfer.
    pub watch: u32,
    /// Where downloads go (removed after each).
    pub scratch: PathBuf,
}

/// A link that closes its end of a download only after the server's EOF, as
/// in the book: the FTP server then always closes first and holds the
/// TIME_WAIT, so every collision the lesson promises happens.
async fn book_link<'s>(session: &'s Session, spec: &Spec) -> Result<Link<'s>> {
    let mut link = Link::open(session, spec).await?;
    link.early_eof = false;
    Ok(link)
}

/// The transfers of the run, on one SSH session. Returns when all are done
/// or the run cannot go on (a collision with no remedy left).
pub async fn transfers(lesson: &mut Lesson, session: &Session, spec: &Spec, s: &Script) -> Result<()> {
    let mut link = book_link(session, spec).await?;
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
                    let Some(collision) = crate::error::find::<Collision>(&e) else { return Err(e) };
                    let collided_on = (collision.tuple, format!("{e:#}"));
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
                    link = remedy_step(lesson, session, spec, link, remedy, collided_on).await?;
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
    let result = transfer::get(link, &s.remote, &path).await;
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

/// Apply one remedy, as the library's collision policy does it
/// ([`timewait::after_collision`]), narrated, with its cost measured.
/// Returns the link to go on with.
async fn remedy_step<'s>(
    lesson: &mut Lesson,
    session: &'s Session,
    spec: &Spec,
    mut link: Link<'s>,
    remedy: Pace,
    collision: (Option<DataTuple>, String),
) -> Result<Link<'s>> {
    let name = format!("{remedy:?}").to_lowercase();
    lesson.step(&format!("remedy: {name}"));
    let doing = match remedy {
        Pace::Wait => "waiting",
        Pace::Rotate => "rotating",
        Pace::Reclaim => "reclaiming",
    };
    let started = Instant::now();
    let mut so_far = Collisions::default();
    let next = {
        let policy = timewait::after_collision(remedy, &mut link, collision.0, &mut so_far, &collision.1);
        if remedy == Pace::Wait {
            countdown_beside(lesson, session, policy).await
        } else {
            policy.await
        }
    };
    let what = match next {
        Next::Reuse if remedy == Pace::Wait => "the control connection is kept; the time is the server's timer",
        Next::Reuse => "cancel the forward, one SYN, forward again; same control connection",
        Next::Rest(_) | Next::StopReclaiming => {
            session.events().emit(Event::Rotated { why: "TIME_WAIT collision".into() });
            link.close().await;
            link = book_link(session, spec).await?;
            "a new control connection: a relay, a forward and an FTP login"
        }
        Next::Fail(e) => return Err(e),
    };
    lesson.tell_events();
    lesson.say(&narration::cost(doing, started.elapsed(), what));
    lesson.tables(session).await;
    lesson.pause().await;
    Ok(link)
}

/// Run the wait (`policy`) with the countdown shown live beside it, read
/// from the server's timer once a second.
async fn countdown_beside<T>(
    lesson: &mut Lesson,
    session: &Session,
    policy: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(policy);
    let shown = lesson.facts.last_tuple();
    lesson.say("The countdown, read on the server once a second while the client waits:");
    loop {
        tokio::select! {
            done = &mut policy => {
                if let Some(t) = shown { lesson.show_reading(&t, None, true) }
                return done;
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
    let lanes: Vec<String> = lesson
        .facts
        .tuples
        .iter()
        .map(|(t, n)| format!("{t}: {} incarnation(s), the last the {}", n, ordinal(*n)))
        .collect();
    lanes.join("\n")
}
