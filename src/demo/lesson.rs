//! The lesson's voice: numbered steps, each the paragraphs of what happened
//! since the last one (from the journal), both socket tables side by side,
//! and the live TIME_WAIT countdown read from the server's timer. Everything
//! printed is also kept, uncoloured, for the HTML page.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::demo::journal::Journal;
use crate::demo::narration;
use crate::demo::run_facts::{Facts, Tuple};
use crate::demo::sockets;
use crate::demo::tables::{self, Table};
use crate::demo::terminal::{Pacer, Style};
use crate::demo::timeline::{self, Reading};
use crate::ssh::Session;
use crate::timewait::COUNTDOWN_TICK;

/// What the lesson has said and seen.
pub struct Lesson {
    /// Every event of the run.
    pub journal: Arc<Journal>,
    /// Folded from the events told so far.
    pub facts: Facts,
    /// Every TIME_WAIT reading of a data 4-tuple (for the timeline).
    pub readings: Vec<Reading>,
    /// The whole narration, uncoloured.
    pub transcript: String,
    style: Style,
    pacer: Pacer,
    step: u32,
    /// A countdown line is being redrawn in place on the terminal: end it before other text.
    live_line: bool,
    client_title: String,
    server_title: String,
}

impl Lesson {
    /// A lesson about a run whose events go to `journal`; `ssh` names the SSH server.
    pub fn new(journal: Arc<Journal>, style: Style, pacer: Pacer, ssh: &str) -> Lesson {
        Lesson {
            journal,
            facts: Facts::default(),
            readings: Vec::new(),
            transcript: String::new(),
            style,
            pacer,
            step: 0,
            live_line: false,
            client_title: "client (this host; read here)".into(),
            server_title: format!("SSH server {ssh} (read over SSH)"),
        }
    }

    /// Print a paragraph (or any text), and keep it.
    pub fn say(&mut self, text: &str) {
        self.say_styled(text, text);
    }

    fn say_styled(&mut self, plain: &str, styled: &str) {
        if std::mem::take(&mut self.live_line) {
            println!("\n");
        }
        println!("{styled}\n");
        self.transcript.push_str(plain);
        self.transcript.push_str("\n\n");
    }

    /// A new step: its heading, then the paragraphs of every event since the last step.
    pub fn step(&mut self, title: &str) {
        self.step += 1;
        let heading = format!("== Step {}: {title} ==", self.step);
        self.say_styled(&heading, &self.style.heading(&heading));
        self.tell_events();
    }

    /// Paragraphs for the events not told yet.
    pub fn tell_events(&mut self) {
        for stamped in self.journal.untold() {
            self.facts.see(&stamped.event);
            if let Some(text) = narration::tell(&stamped.event, &self.facts) {
                let styled = match stamped.event {
                    crate::events::Event::Collision { .. } => self.style.alert(&text),
                    _ => text.clone(),
                };
                self.say_styled(&text, &styled);
            }
        }
    }

    /// A warning in the lesson (something did not go as the book says).
    pub fn alert(&mut self, text: &str) {
        let text = narration::wrap(text, narration::WIDTH);
        let styled = self.style.alert(&text);
        self.say_styled(&text, &styled);
    }

    /// Both socket tables, side by side, labelled; the server's TIME_WAIT readings kept.
    pub async fn tables(&mut self, session: &Session) {
        let client = sockets::client(&self.client_title);
        let server = sockets::server(session, &self.server_title).await;
        let (client, server) = match (client, server) {
            (Ok(c), Ok(s)) => (c, s),
            (c, s) => {
                let why = c.err().or(s.err()).map(|e| format!("{e:#}")).unwrap_or_default();
                return self.alert(&format!("(socket tables not shown: {why})"));
            }
        };
        self.keep_readings(&server);
        let plain = tables::side_by_side(&client, &server, &self.facts, Style { color: false });
        let styled = tables::side_by_side(&client, &server, &self.facts, self.style);
        self.say_styled(plain.trim_end(), styled.trim_end());
    }

    fn keep_readings(&mut self, server: &Table) {
        let tuples: Vec<Tuple> = self.facts.tuples.iter().map(|(t, _)| *t).collect();
        let at = self.journal.now();
        let clk = server.clk_tck.unwrap_or(100);
        self.readings.extend(timeline::readings(at, &server.rows, clk, &tuples));
    }

    /// Wait for Enter, with `--step`.
    pub async fn pause(&self) {
        self.pacer.next().await;
    }

    /// One reading of `tuple`'s TIME_WAIT timer on the server (None: no such row).
    pub async fn read_timer(&mut self, session: &Session, tuple: &Tuple) -> Option<Duration> {
        let server = sockets::server(session, "").await.ok()?;
        let clk = server.clk_tck.unwrap_or(100);
        let reading = timeline::readings(self.journal.now(), &server.rows, clk, &[*tuple]).remove(0);
        self.readings.push(reading);
        reading.left
    }

    /// Show the countdown of `tuple`'s TIME_WAIT: `ticks` readings, one per
    /// [`COUNTDOWN_TICK`], or until it is gone. On a terminal the line is
    /// redrawn in place; otherwise each reading is a line.
    pub async fn countdown(&mut self, session: &Session, tuple: &Tuple, ticks: u32) -> Option<Duration> {
        let mut last = None;
        for i in 0..ticks {
            if i > 0 {
                tokio::time::sleep(COUNTDOWN_TICK).await;
            }
            let left = self.read_timer(session, tuple).await;
            self.show_reading(tuple, left, i + 1 == ticks || left.is_none());
            last = left;
            if left.is_none() {
                break;
            }
        }
        last
    }

    /// One countdown line; `last` ends the redrawn line on a terminal.
    pub fn show_reading(&mut self, tuple: &Tuple, left: Option<Duration>, last: bool) {
        let line = match left {
            Some(left) => narration::countdown_line(tuple, left),
            None => format!("    TIME_WAIT {tuple}: gone from the server's table"),
        };
        self.transcript.push_str(&line);
        self.transcript.push('\n');
        if std::io::stdout().is_terminal() {
            print!("\r\x1b[K{line}");
            self.live_line = !last;
            if last {
                println!("\n");
                self.transcript.push('\n');
            }
            let _ = std::io::stdout().flush();
        } else {
            println!("{line}");
            if last {
                println!();
                self.transcript.push('\n');
            }
        }
    }
}
