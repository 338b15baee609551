//! The teaching demo: the book's procedure happening on real sockets, told
//! step by step with the real values of the run.
//!
//! The demo watches the library's event stream ([`crate::events`]) and the
//! two hosts' socket tables, and nothing else:
//!
//! - [`journal`]: the observer that stamps and keeps every event;
//! - [`run_facts`]: C, P, U-1 (or U), the 4-tuples, folded from the events;
//! - [`narration`]: a plain-words paragraph per event, with the real values;
//! - [`tables`]: both socket tables side by side, rows labelled; [`sockets`] reads them;
//! - [`timeline`] and [`svg`]: one lane per 4-tuple, one bar per incarnation, as SVG and HTML;
//! - [`terminal`]: the classroom's pace (`--step`) and looks (colours, `NO_COLOR`);
//! - [`lesson`]: steps, tables and the live TIME_WAIT countdown; [`acts`]: what the run does.

pub mod acts;
pub mod journal;
pub mod lesson;
pub mod narration;
pub mod run_facts;
pub mod sockets;
pub mod svg;
pub mod tables;
pub mod terminal;
pub mod timeline;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::jobs::Plan;
use crate::ssh::Session;
use acts::Script;
use journal::Journal;
use lesson::Lesson;
use terminal::{Pacer, Style};

/// Where the timeline goes.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// The SVG file.
    pub svg: PathBuf,
    /// The HTML page holding it.
    pub html: PathBuf,
}

/// Run the demo: connect, transfer, collide and remedy as the script says,
/// narrating each step; then draw the timeline.
pub async fn run(plan: &Plan, script: Script, step: bool, outputs: &Outputs) -> Result<()> {
    let journal = Arc::new(Journal::new());
    let events = plan.events.with(journal.clone()); // -v and --events FILE see the run too
    let ssh = format!("{}:{}", plan.target.host, plan.target.port);
    let mut lesson = Lesson::new(journal.clone(), Style::detect(), Pacer::new(step), &ssh);
    let title = format!("ftpssh-fullsecure demo: SSH {ssh}, FTP {}:{}", plan.spec.ftp.host, plan.spec.ftp.port);
    lesson.say(&title);
    let session = Session::connect(&plan.target, events.clone()).await?;
    lesson.step("the SSH connection");
    lesson.tables(&session).await;
    lesson.pause().await;
    let outcome = acts::transfers(&mut lesson, &session, &plan.spec, &script).await;
    session.close().await;
    acts::remove_scratch(&script.scratch);
    if let Err(e) = &outcome {
        lesson.tell_events();
        lesson.alert(&format!("The run stopped: {e:#}"));
    }
    lesson.step("the timeline");
    lesson.say(&acts::incarnations(&lesson));
    let picture = timeline::Timeline::build(&journal.all(), &lesson.readings, journal.now());
    let drawing = svg::svg(&picture, &title);
    std::fs::write(&outputs.svg, &drawing).with_context(|| format!("could not write {}", outputs.svg.display()))?;
    let page = svg::html(&drawing, &title, &lesson.transcript);
    std::fs::write(&outputs.html, page).with_context(|| format!("could not write {}", outputs.html.display()))?;
    lesson.say(&format!(
        "The timeline of this run: {} (and the page {}, for a browser or a projector).",
        outputs.svg.display(),
        outputs.html.display()
    ));
    outcome
}
