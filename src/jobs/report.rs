//! The record of a bulk run (`batch`, `mget`): one [`Record`] per transfer,
//! a one-line summary for stderr, the exit code, and a JSON file for scripts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::events::Event;
use crate::jobs::batch::Op;
use crate::transfer::place;

/// Exit code when some transfers succeeded and some failed.
pub const PARTIAL_FAILURE: i32 = 6;

/// How one transfer ended.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Transferred and verified.
    Ok,
    /// Given up on; see [`Record::error`].
    Failed,
}

/// A pause before or during a transfer (rate limit, reconnect backoff).
#[derive(Serialize, Clone, Debug)]
pub struct Wait {
    /// How long we waited.
    pub seconds: f64,
    /// Why, in a few words.
    pub cause: String,
}

/// One transfer of a bulk run.
#[derive(Serialize, Clone, Debug)]
pub struct Record {
    /// `get` or `put`.
    pub op: Op,
    /// Remote name for a get, local path for a put.
    pub source: String,
    /// Local path for a get, remote name for a put.
    pub target: String,
    /// Bytes moved (for a failure: as far as it got).
    pub bytes: u64,
    /// Time spent transferring, waits excluded.
    pub seconds: f64,
    /// Pauses this transfer had to make.
    pub waits: Vec<Wait>,
    /// Attempts after the first.
    pub retries: u32,
    /// Fresh FTP sessions (or data paths) opened for this transfer.
    pub rotations: u32,
    /// TIME_WAIT entries of its data connection's 4-tuple ended so that the
    /// control connection could be kept (`--pace reclaim`).
    pub reclaims: u32,
    /// `default-port` or `passive`.
    pub data_path: String,
    /// What was checked: `sha256 = server's` (`--verify`, the server's own
    /// hash), else e.g. `size 10876 = announced`, or `none`.
    pub verified: String,
    /// Ok or failed.
    pub outcome: Outcome,
    /// The error chain on one line, for a failure.
    pub error: Option<String>,
}

impl Record {
    /// A fresh record for one transfer: failed until it succeeds.
    pub fn new(op: Op, source: &str, target: &str) -> Record {
        Record {
            op,
            source: source.into(),
            target: target.into(),
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

    /// What one event of this transfer's changes in its record: the report
    /// is a view of the event stream, like the `-v` trace.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Reclaimed { .. } => self.reclaims += 1,
            Event::Rotated { .. } => self.rotations += 1,
            Event::Waited { total, cause } => {
                self.waits.push(Wait { seconds: total.as_secs_f64(), cause: cause.clone() })
            }
            Event::Retrying { error, delay, .. } => {
                self.retries += 1;
                self.waits.push(Wait { seconds: delay.as_secs_f64(), cause: format!("retry after: {error}") });
            }
            Event::Reconnecting { delay, .. } => {
                self.waits.push(Wait { seconds: delay.as_secs_f64(), cause: "SSH reconnect backoff".into() })
            }
            Event::DataAccepted { .. } => self.data_path = "default-port".into(),
            Event::PassiveData { .. } => self.data_path = "passive".into(),
            // The server's hash (Verified, told just before) says more than the size.
            Event::TransferDone { bytes, .. } if self.verified.ends_with("= server's") => self.bytes = *bytes,
            Event::TransferDone { bytes, verified, .. } => {
                self.bytes = *bytes;
                self.verified = match (self.op, verified) {
                    (Op::Get, true) => format!("size {bytes} = announced"),
                    (Op::Get, false) => "none".into(),
                    // put fails when SIZE disagrees; a server without SIZE leaves it unchecked.
                    (Op::Put, _) => format!("size {bytes} (SIZE when the server has it)"),
                };
            }
            Event::Verified { algorithm, .. } => self.verified = format!("{algorithm} = server's"),
            _ => {}
        }
    }
}

/// Totals over a run; the `summary` object of the JSON file.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Number of transfers.
    pub transfers: usize,
    /// How many ended ok.
    pub ok: usize,
    /// How many failed.
    pub failed: usize,
    /// Bytes moved, failures included.
    pub bytes: u64,
    /// Time spent transferring, summed over transfers.
    pub seconds: f64,
    /// Wall-clock time since the run started.
    pub elapsed: f64,
    /// Number of waits.
    pub waits: usize,
    /// Time spent waiting, summed.
    pub wait_seconds: f64,
    /// Retries, summed.
    pub retries: u32,
    /// Rotations, summed.
    pub rotations: u32,
    /// Reclaimed 4-tuples, summed.
    pub reclaims: u32,
    /// `mirror`: remote directories the server would not list, left out (and, with
    /// `--delete`, nothing below them deleted).
    pub unlisted: Vec<String>,
}

/// All the transfers of one run, in the order of the items. The totals are
/// kept as records come; the records themselves are kept in memory, or, for
/// a run with a JSON file, written to it as they come, so memory stays flat
/// however long the run.
#[derive(Debug)]
pub struct Report {
    /// One per transfer (none kept when they are streamed).
    pub records: Vec<Record>,
    /// When the run started.
    pub started: Instant,
    totals: Summary,
    stream: Option<JsonStream>,
    /// The first failure to write the stream: [`Report::finish`] returns it.
    write_error: Option<anyhow::Error>,
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

impl Report {
    /// An empty report, started now, kept in memory.
    pub fn new() -> Report {
        let totals = Summary::default();
        Report { records: Vec::new(), started: Instant::now(), totals, stream: None, write_error: None }
    }

    /// An empty report whose records go to the JSON file `path` as they come
    /// ([`Report::finish`] completes it).
    pub fn streaming(path: &Path) -> Result<Report> {
        Ok(Report { stream: Some(JsonStream::create(path)?), ..Report::new() })
    }

    /// Add one finished transfer.
    pub fn push(&mut self, record: Record) {
        let t = &mut self.totals;
        t.transfers += 1;
        if record.outcome == Outcome::Ok {
            t.ok += 1;
        } else {
            t.failed += 1;
        }
        t.bytes += record.bytes;
        t.seconds += record.seconds;
        t.waits += record.waits.len();
        t.wait_seconds += record.waits.iter().map(|w| w.seconds).sum::<f64>();
        t.retries += record.retries;
        t.rotations += record.rotations;
        t.reclaims += record.reclaims;
        match &mut self.stream {
            Some(stream) => {
                if let Err(e) = stream.record(&record) {
                    self.write_error.get_or_insert(e);
                }
            }
            None => self.records.push(record),
        }
    }

    /// Say which remote directories the listing left out.
    pub fn left_out(&mut self, unlisted: Vec<String>) {
        self.totals.unlisted = unlisted;
    }

    /// The totals.
    pub fn summary(&self) -> Summary {
        Summary { elapsed: self.started.elapsed().as_secs_f64(), ..self.totals.clone() }
    }

    /// Complete a streamed JSON file: the summary, then in place under its name.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(e) = self.write_error.take() {
            self.stream = None; // removes the half-written file
            return Err(e);
        }
        match self.stream.take() {
            Some(stream) => stream.finish(&self.summary()),
            None => Ok(()),
        }
    }

    /// E.g. `200 transfers: 200 ok, 0 failed, 2.1 MiB in 3.42 s, 3 waits (121.4 s), 12 retries, 0 rotations, 199 reclaims`.
    pub fn summary_line(&self) -> String {
        let s = self.summary();
        let waits = match s.waits {
            0 => "0 waits".to_string(),
            n => format!("{} ({:.1} s)", plural(n, "wait", "waits"), s.wait_seconds),
        };
        format!(
            "{}: {} ok, {} failed, {} in {:.2} s, {waits}, {}, {}, {}",
            plural(s.transfers, "transfer", "transfers"),
            s.ok,
            s.failed,
            human_bytes(s.bytes),
            s.seconds,
            plural(s.retries as usize, "retry", "retries"),
            plural(s.rotations as usize, "rotation", "rotations"),
            plural(s.reclaims as usize, "reclaim", "reclaims"),
        )
    }

    /// The process exit code: 0 if nothing failed, [`PARTIAL_FAILURE`] if some
    /// failed and some did not; if all failed, the class code (2..=5) of the
    /// first failure, else 1.
    pub fn exit_code(&self, first_failure: Option<i32>) -> i32 {
        let s = self.summary();
        match (s.ok, s.failed) {
            (_, 0) => 0,
            (0, _) => first_failure.filter(|c| (2..=5).contains(c)).unwrap_or(1),
            _ => PARTIAL_FAILURE,
        }
    }

    /// Write `{"transfers": [...], "summary": {...}}` to `path` at once.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut stream = JsonStream::create(path)?;
        for r in &self.records {
            stream.record(r)?;
        }
        stream.finish(&self.summary())
    }
}

/// A JSON report being written: beside its target under a hidden name no
/// other user can guess ([`place::temp_beside`]), then renamed over it, so a
/// reader never sees half a file.
#[derive(Debug)]
struct JsonStream {
    out: Option<BufWriter<File>>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    first: bool,
}

impl JsonStream {
    fn create(path: &Path) -> Result<JsonStream> {
        let (file, tmp) =
            place::temp_beside(path).with_context(|| format!("could not write the report {}", path.display()))?;
        let mut stream = JsonStream { out: Some(BufWriter::new(file)), tmp, path: path.to_path_buf(), first: true };
        stream.write(|out| Ok(out.write_all(b"{\"transfers\": [")?))?;
        Ok(stream)
    }

    fn write(&mut self, f: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
        let out = self.out.as_mut().context("the report is closed")?;
        f(out).with_context(|| format!("could not write the report {}", self.path.display()))
    }

    fn record(&mut self, record: &Record) -> Result<()> {
        let sep: &[u8] = if std::mem::take(&mut self.first) { b"\n" } else { b",\n" };
        self.write(|out| {
            out.write_all(sep)?;
            Ok(serde_json::to_writer(&mut *out, record)?)
        })
    }

    fn finish(mut self, summary: &Summary) -> Result<()> {
        self.write(|out| {
            out.write_all(b"\n],\n\"summary\": ")?;
            serde_json::to_writer_pretty(&mut *out, summary)?;
            Ok(out.write_all(b"}\n")?)
        })?;
        let out = self.out.take().context("the report is closed")?;
        let done = (|| -> Result<()> {
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            place::rename_into(&self.tmp, &self.path)
        })();
        done.with_context(|| format!("could not write the report {}", self.path.display()))
    }
}

impl Drop for JsonStream {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.tmp); // not finished: no half report
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `512 B`, `10.6 KiB`, `2.1 MiB`, `3.0 GiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome, bytes: u64, seconds: f64, waits: &[f64], retries: u32) -> Record {
        Record {
            op: Op::Get,
            source: "many/f001.txt".into(),
            target: "out/f001.txt".into(),
            bytes,
            seconds,
            waits: waits.iter().map(|&seconds| Wait { seconds, cause: "421 too many connections".into() }).collect(),
            retries,
            rotations: 1,
            reclaims: 0,
            data_path: "default-port".into(),
            verified: if outcome == Outcome::Ok { format!("size {bytes} = {bytes}") } else { "none".into() },
            outcome,
            error: (outcome == Outcome::Failed).then(|| "550 no such file".into()),
        }
    }

    fn report(records: Vec<Record>) -> Report {
        let mut report = Report::new();
        for r in records {
            report.push(r);
        }
        report
    }

    #[test]
    fn summary_line_adds_up() {
        let r = report(vec![
            record(Outcome::Ok, 2 * 1024 * 1024, 3.0, &[100.0, 21.0], 10),
            record(Outcome::Ok, 100 * 1024, 0.42, &[0.4], 2),
        ]);
        assert_eq!(
            r.summary_line(),
            "2 transfers: 2 ok, 0 failed, 2.1 MiB in 3.42 s, 3 waits (121.4 s), 12 retries, 2 rotations, 0 reclaims"
        );
        let one = report(vec![record(Outcome::Failed, 10, 0.5, &[], 1)]);
        assert_eq!(
            one.summary_line(),
            "1 transfer: 0 ok, 1 failed, 10 B in 0.50 s, 0 waits, 1 retry, 1 rotation, 0 reclaims"
        );
        assert_eq!(human_bytes(10876), "10.6 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn exit_codes() {
        let ok = || record(Outcome::Ok, 1, 0.1, &[], 0);
        let failed = || record(Outcome::Failed, 0, 0.1, &[], 0);
        assert_eq!(report(vec![]).exit_code(None), 0);
        assert_eq!(report(vec![ok(), ok()]).exit_code(Some(4)), 0);
        assert_eq!(report(vec![ok(), failed()]).exit_code(Some(4)), PARTIAL_FAILURE);
        assert_eq!(report(vec![failed(), failed()]).exit_code(Some(4)), 4);
        assert_eq!(report(vec![failed()]).exit_code(Some(1)), 1);
        assert_eq!(report(vec![failed()]).exit_code(Some(7)), 1);
        assert_eq!(report(vec![failed()]).exit_code(None), 1);
    }

    #[test]
    fn json_has_summary_and_transfers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old").unwrap();
        let r = report(vec![record(Outcome::Ok, 10876, 1.5, &[2.0], 1), record(Outcome::Failed, 0, 0.1, &[], 0)]);
        r.write_json(&path).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let s = &v["summary"];
        assert_eq!((s["transfers"].as_u64(), s["ok"].as_u64(), s["failed"].as_u64()), (Some(2), Some(1), Some(1)));
        assert_eq!(s["bytes"], 10876);
        assert_eq!(s["waits"], 1);
        assert!(s["elapsed"].is_f64());
        let t = v["transfers"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["op"], "get");
        assert_eq!(t[0]["outcome"], "ok");
        assert_eq!(t[0]["verified"], "size 10876 = 10876");
        assert_eq!(t[0]["waits"][0]["cause"], "421 too many connections");
        assert_eq!(t[0]["data_path"], "default-port");
        assert!(t[0]["error"].is_null());
        assert_eq!(t[1]["outcome"], "failed");
        assert_eq!(t[1]["error"], "550 no such file");
        // Only the report itself is left: the temp file was renamed away.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(report(vec![]).write_json(&dir.path().join("no/such/dir.json")).is_err());
    }
}
