//! What the user sees on stderr: warnings always (`warning: ...`), each step
//! and the FTP conversation with `-v` (`---> RETR x`, as `ftp -d` shows it),
//! only errors with `-q`. Plain lines, no timestamps: this is a CLI. Control characters and
//! invisible format characters (from the server's replies and names) are shown escaped
//! ([`crate::ftp::shown`]).
//!
//! The procedure's part of it is rendered from its events ([`Trace`]), and
//! so are the progress bars and countdowns ([`Progress`]).

use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::events::{Event, Observer};
use crate::timewait::COUNTDOWN_TICK;
use crate::transfer::place;

mod bulk_line;
use bulk_line::BulkLine;

/// Install the stderr subscriber for the given verbosity.
pub fn init(verbose: u8, quiet: bool) {
    // Libraries' own log lines (russh reports a request on a channel that a cancelled helper has
    // just closed as an error) are internals, not messages for the user: shown from -vv only.
    let filter = match (quiet, verbose) {
        (true, _) => "off,ftpssh=error,ftp=error",
        (false, 0) => "off,ftpssh=warn,ftp=warn",
        (false, 1) => "off,ftpssh=info,ftp=info",
        (false, _) => "warn,ftpssh=debug,ftp=debug",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .event_format(Plain)
        .try_init();
}

struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        match *event.metadata().level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            _ => {}
        }
        // Whatever the message carries from the server (a reply, a name) is shown escaped.
        let mut message = String::new();
        ctx.field_format().format_fields(Writer::new(&mut message), event)?;
        writeln!(writer, "{}", crate::ftp::shown::shown_lines(&message))
    }
}

/// The `-v` trace of the procedure: each event's line at its level.
pub struct Trace;

impl Observer for Trace {
    fn see(&self, event: &Event) {
        match event {
            Event::Progress { .. } | Event::JobDone { .. } => {}
            Event::Sent { .. } | Event::Received { .. } => tracing::info!(target: "ftp", "{event}"),
            Event::FellBack { first: true, .. }
            | Event::Unverified { first: true, .. }
            | Event::Retrying { .. }
            | Event::Reconnecting { .. } => {
                tracing::warn!("{event}")
            }
            Event::StrayRefused { late: false, .. } => tracing::warn!("{event}"),
            Event::Tunnel(fact) if fact.is_warning() => tracing::warn!("{event}"),
            Event::StrayRefused { late: true, .. }
            | Event::Waited { .. }
            | Event::TransferDone { .. }
            | Event::Unverified { first: false, .. } => {
                tracing::debug!("{event}")
            }
            Event::TransferStarted { offset: 0, .. } => tracing::debug!("{event}"),
            _ => tracing::info!("{event}"),
        }
    }
}

/// Bars and countdowns on a terminal: the bytes of one transfer, or the
/// items of a bulk run, and a wait's countdown (a minute of silence looks
/// like a hang).
#[derive(Default)]
pub struct Progress {
    /// Show a byte bar per transfer (one transfer), else an item bar (bulk).
    per_transfer: bool,
    bytes: Mutex<Option<ProgressBar>>,
    items: Mutex<Option<ProgressBar>>,
    /// What the bulk line says.
    line: Mutex<BulkLine>,
    wait: Mutex<Option<ProgressBar>>,
}

impl Progress {
    /// For `get` and `put`: one byte bar.
    pub fn bytes() -> Progress {
        Progress { per_transfer: true, ..Progress::default() }
    }

    /// For bulk runs: one bar counting items.
    pub fn items() -> Progress {
        Progress::default()
    }
}

/// The byte bar: done / total, bar, rate, time left.
const BYTES_TEMPLATE: &str = "{bytes:>10} / {total_bytes:10} {wide_bar} {binary_bytes_per_sec:>12} {eta:>4}";

impl Observer for Progress {
    fn see(&self, event: &Event) {
        match event {
            Event::TransferStarted { offset, size, .. } if self.per_transfer => {
                let bar = ProgressBar::new(size.unwrap_or(0));
                bar.set_style(ProgressStyle::with_template(BYTES_TEMPLATE).expect("a valid template"));
                bar.set_position(*offset);
                replace(&self.bytes, Some(bar));
            }
            Event::TransferStarted { name, offset, size } => {
                let now = Instant::now();
                let mut line = self.line.lock().unwrap();
                line.started(name, *offset, *size, now);
                self.bulk_bar().set_message(line.message(now));
            }
            Event::Progress { bytes } if self.per_transfer => {
                if let Some(bar) = self.bytes.lock().unwrap().as_ref() {
                    bar.inc(*bytes);
                }
            }
            Event::Progress { bytes } => {
                let now = Instant::now();
                let mut line = self.line.lock().unwrap();
                line.moved(*bytes, now);
                if let Some(bar) = self.items.lock().unwrap().as_ref() {
                    bar.set_message(line.message(now));
                }
            }
            Event::TransferDone { .. } if self.per_transfer => replace(&self.bytes, None),
            Event::TransferDone { name, .. } => self.line.lock().unwrap().done(name),
            Event::JobDone { done, total } => {
                let bar = self.bulk_bar();
                bar.set_length(*total as u64);
                bar.set_position(*done as u64);
                if done == total {
                    bar.finish_and_clear();
                }
            }
            Event::Waiting { total, cause } => {
                let bar = ProgressBar::new_spinner();
                let style = ProgressStyle::with_template("{msg} ({elapsed} so far)").expect("a valid template");
                bar.set_style(style);
                bar.set_message(format!("waiting {} s: {cause}", total.as_secs_f64().ceil()));
                bar.enable_steady_tick(COUNTDOWN_TICK);
                replace(&self.wait, Some(bar));
            }
            Event::Waited { .. } => replace(&self.wait, None),
            _ => {}
        }
    }
}

impl Progress {
    /// The bulk run's line: `3/10 files`, then what [`BulkLine`] says.
    fn bulk_bar(&self) -> ProgressBar {
        let mut items = self.items.lock().unwrap();
        let bar = items.get_or_insert_with(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(ProgressStyle::with_template(BULK_TEMPLATE).expect("a valid template"));
            bar
        });
        bar.clone()
    }
}

/// The bulk line: files done of all, then the current file, the rate and the time left.
const BULK_TEMPLATE: &str = "{pos}/{len} files  {wide_msg}";

/// Put `bar` in `slot`, clearing the one that was there.
fn replace(slot: &Mutex<Option<ProgressBar>>, bar: Option<ProgressBar>) {
    if let Some(old) = std::mem::replace(&mut *slot.lock().unwrap(), bar) {
        old.finish_and_clear();
    }
}

/// `--events FILE`: every event but byte counts, one JSON object a line,
/// written as it happens (a reader may follow the file during the run), each
/// with `"at"`: seconds since the file was opened. Never opened through
/// another user's link in a shared directory ([`place::create`]).
pub struct JsonLines(Mutex<std::io::LineWriter<std::fs::File>>, std::time::Instant);

impl JsonLines {
    /// Create (or truncate) `path`.
    pub fn create(path: &std::path::Path) -> anyhow::Result<JsonLines> {
        let file = place::create(path)?;
        Ok(JsonLines(Mutex::new(std::io::LineWriter::new(file)), std::time::Instant::now()))
    }
}

impl Observer for JsonLines {
    fn see(&self, event: &Event) {
        use std::io::Write;
        if matches!(event, Event::Progress { .. }) {
            return;
        }
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::to_value(event) else { return };
        fields.insert("at".into(), self.1.elapsed().as_secs_f64().into());
        // A full disk must not stop the transfer it describes.
        let _ = writeln!(self.0.lock().unwrap(), "{}", serde_json::Value::Object(fields));
    }
}
