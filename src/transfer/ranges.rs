//! Which byte ranges of a segmented download ([`crate::transfer::segments`]) are in its part
//! file: a small text record beside it, `.NAME.ftpssh.segs`, so that a failed or interrupted
//! run resumes each segment where it stopped.
//!
//! ```text
//! ftpssh-segments 1
//! size 1073741824
//! 0 268435456 268435456
//! 268435456 536870912 301989888
//! ```
//!
//! After the size, one line per segment: its start, its end (exclusive), and how far it is
//! written. The record only ever claims bytes already written (it is saved after them), so
//! an old record is short of the truth, never beyond it. The record is made before the part
//! file is given its full length (until then a plain part file's length is what it holds),
//! and removed before the part file is renamed: a complete part file without a record is a
//! complete plain one. A plain `get` that finds a record keeps the written prefix only
//! ([`fold`]).
//!
//! The record is opened as the part file is (never through a link, only a private plain
//! file of ours), and only by the run that holds the part file's lock.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::transfer::part::{self, PartFile, SUFFIX};

/// What follows the target's name in its record's name (as long as [`SUFFIX`]: it fits where
/// the part file's name fits).
pub const RECORD_SUFFIX: &str = ".ftpssh.segs";
const MAGIC: &str = "ftpssh-segments 1";
/// A record longer than this is not one of ours.
const MAX_RECORD: u64 = 64 << 10;

/// One segment: bytes `start..end` of the file, written up to `done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Written from `start` up to here.
    pub done: u64,
}

impl Range {
    /// Bytes still to fetch.
    pub fn left(&self) -> u64 {
        self.end - self.done
    }
}

/// A segmented download's ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The remote file's size (SIZE) when the ranges were made.
    pub size: u64,
    /// The ranges, in order, covering `0..size`.
    pub ranges: Vec<Range>,
}

impl Record {
    /// `size` bytes in `n` ranges of (nearly) equal length, of which the first `held` bytes
    /// are written already (a plain part file's prefix).
    pub fn split(size: u64, n: usize, held: u64) -> Record {
        let n = (n.max(1) as u64).min(size.max(1));
        let ranges = (0..n)
            .map(|i| {
                let (start, end) = (size * i / n, size * (i + 1) / n);
                Range { start, end, done: held.clamp(start, end) }
            })
            .collect();
        Record { size, ranges }
    }

    /// Bytes written from the start with no gap: what a plain download may resume after.
    pub fn prefix(&self) -> u64 {
        let mut at = 0;
        for r in &self.ranges {
            if r.start != at {
                break;
            }
            at = r.done;
            if r.done < r.end {
                break;
            }
        }
        at
    }

    /// Bytes still to fetch.
    pub fn left(&self) -> u64 {
        self.ranges.iter().map(Range::left).sum()
    }

    /// A record as [`fmt::Display`] writes it; None for anything else (then the part file is
    /// not trusted: it starts over).
    pub fn parse(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        (lines.next()? == MAGIC).then_some(())?;
        let size = lines.next()?.strip_prefix("size ")?.parse().ok()?;
        let mut ranges = Vec::new();
        let mut at = 0;
        for line in lines {
            let mut n = line.split(' ').map(str::parse::<u64>);
            let (start, end, done) = (n.next()?.ok()?, n.next()?.ok()?, n.next()?.ok()?);
            let fits = n.next().is_none() && start == at && start < end && (start..=end).contains(&done);
            fits.then_some(())?;
            ranges.push(Range { start, end, done });
            at = end;
        }
        (at == size && !ranges.is_empty()).then_some(Record { size, ranges })
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{MAGIC}\nsize {}", self.size)?;
        for r in &self.ranges {
            writeln!(f, "{} {} {}", r.start, r.end, r.done)?;
        }
        Ok(())
    }
}

/// A segmented download's record beside `part` turned back into a plain part file: the
/// prefix written with no gap is kept, the rest cut off, the record removed. Nothing to do
/// where there is no record.
pub fn fold(part: &PartFile) -> Result<()> {
    let Some(record) = RecordFile::existing(&part.path)? else { return Ok(()) };
    let keep = record.load().filter(|r| Some(r.size) == part.len().ok()).map_or(0, |r| r.prefix());
    part.set_len(keep)?;
    record.remove()
}

/// What `part` holds of its download: the bytes its record says are written, where a segmented
/// run left one (the part file has its full length from the start), else its length.
pub fn held(part: &PartFile) -> u64 {
    let recorded = RecordFile::existing(&part.path).ok().flatten().and_then(|f| f.load());
    let len = part.len().unwrap_or(0);
    match recorded {
        Some(r) if r.size == len => r.size.saturating_sub(r.left()),
        _ => len,
    }
}

/// The record's path beside the part file at `part_path`.
pub fn record_path(part_path: &Path) -> PathBuf {
    let name = part_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = name.strip_suffix(SUFFIX).unwrap_or(&name);
    part_path.with_file_name(format!("{base}{RECORD_SUFFIX}"))
}

/// The record file, open.
pub struct RecordFile {
    /// Where it is.
    pub path: PathBuf,
    file: File,
}

impl RecordFile {
    /// Open (or make) the record beside the part file at `part_path`: only a private plain
    /// file of ours is read, anything else is removed and made anew.
    pub fn open(part_path: &Path) -> Result<RecordFile> {
        let path = record_path(part_path);
        for _ in 0..3 {
            if let Some(file) = part::open_ours(&path)? {
                return Ok(RecordFile { path, file });
            }
        }
        anyhow::bail!("{} keeps changing under us (another run?)", path.display())
    }

    /// The record if one of ours is there, else None if the part file has no record
    /// (nothing at its name).
    pub fn existing(part_path: &Path) -> Result<Option<RecordFile>> {
        match std::fs::symlink_metadata(record_path(part_path)) {
            Ok(_) => Ok(Some(RecordFile::open(part_path)?)),
            Err(_) => Ok(None),
        }
    }

    /// What it says, if it is a record.
    pub fn load(&self) -> Option<Record> {
        let mut text = String::new();
        (&self.file).take(MAX_RECORD).read_to_string(&mut text).ok()?;
        Record::parse(&text)
    }

    /// Write `record` over what it said.
    pub fn save(&self, record: &Record) -> Result<()> {
        let text = record.to_string();
        let wrote = self.file.write_all_at(text.as_bytes(), 0).and_then(|()| self.file.set_len(text.len() as u64));
        wrote.with_context(|| format!("could not write {}", self.path.display()))
    }

    /// Take it away (the download is complete, or no longer segmented).
    pub fn remove(self) -> Result<()> {
        std::fs::remove_file(&self.path).with_context(|| format!("could not remove {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_file_and_keeps_a_written_prefix() {
        let r = Record::split(10, 3, 0);
        let ends: Vec<_> = r.ranges.iter().map(|r| (r.start, r.end, r.done)).collect();
        assert_eq!(ends, [(0, 3, 0), (3, 6, 3), (6, 10, 6)]);
        assert_eq!(r.left(), 10);
        let r = Record::split(10, 3, 4);
        assert_eq!(r.ranges.iter().map(|r| r.done).collect::<Vec<_>>(), [3, 4, 6]);
        assert_eq!((r.left(), r.prefix()), (6, 4));
        assert_eq!(Record::split(2, 4, 0).ranges.len(), 2, "never an empty range");
    }

    #[test]
    fn the_prefix_stops_at_the_first_gap() {
        let mut r = Record::split(100, 4, 0);
        r.ranges[1].done = 50;
        assert_eq!(r.prefix(), 0);
        r.ranges[0].done = 25;
        assert_eq!(r.prefix(), 50);
        r.ranges[1].done = 40;
        assert_eq!(r.prefix(), 40);
        for x in &mut r.ranges {
            x.done = x.end;
        }
        assert_eq!((r.prefix(), r.left()), (100, 0));
    }

    #[test]
    fn records_round_trip_and_anything_else_is_refused() {
        let mut r = Record::split(1 << 30, 4, 0);
        r.ranges[1].done += 7;
        let text = r.to_string();
        assert!(text.starts_with("ftpssh-segments 1\nsize 1073741824\n0 268435456 0\n"), "{text}");
        assert_eq!(Record::parse(&text), Some(r));
        for bad in [
            "",
            "ftpssh-segments 2\nsize 10\n0 10 0\n",
            "ftpssh-segments 1\nsize 10\n",
            "ftpssh-segments 1\nsize 10\n0 5 0\n",
            "ftpssh-segments 1\nsize 10\n0 5 6\n5 10 5\n",
            "ftpssh-segments 1\nsize 10\n0 5 5\n4 10 5\n",
            "ftpssh-segments 1\nsize 10\n0 10 3 1\n",
            "ftpssh-segments 1\nsize 10\n0 10 x\n",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn what_a_part_file_holds_is_its_records_written_bytes() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let part = PartFile::open(&dir.path().join("h.bin")).unwrap();
        part.append().unwrap().write_all(b"abcdefghij").unwrap();
        assert_eq!(held(&part), 10, "no record: its length");
        let mut r = Record::split(10, 2, 0);
        (r.ranges[0].done, r.ranges[1].done) = (3, 7);
        RecordFile::open(&part.path).unwrap().save(&r).unwrap();
        assert_eq!(held(&part), 5, "3 of the first range and 2 of the second");
    }

    #[test]
    fn a_plain_download_keeps_only_the_prefix_without_gaps() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let part = PartFile::open(&dir.path().join("t.bin")).unwrap();
        part.append().unwrap().write_all(b"abcdefghij").unwrap();
        let mut r = Record::split(10, 2, 0);
        (r.ranges[0].done, r.ranges[1].done) = (3, 7);
        RecordFile::open(&part.path).unwrap().save(&r).unwrap();
        fold(&part).unwrap();
        assert_eq!(std::fs::read(&part.path).unwrap(), b"abc", "range 1 is kept out: a gap before it");
        assert!(RecordFile::existing(&part.path).unwrap().is_none(), "the record is gone");
        fold(&part).unwrap();
        assert_eq!(part.len().unwrap(), 3, "nothing to fold without a record");
    }

    #[test]
    fn the_record_sits_beside_the_part_file_and_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join(".a.bin.ftpssh.part");
        assert_eq!(record_path(&part), dir.path().join(".a.bin.ftpssh.segs"));
        assert!(RecordFile::existing(&part).unwrap().is_none());
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, record_path(&part)).unwrap();
        let rec = RecordFile::existing(&part).unwrap().expect("something is there");
        assert_eq!(rec.load(), None);
        let r = Record::split(10, 2, 0);
        rec.save(&r).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(RecordFile::open(&part).unwrap().load(), Some(r));
        rec.remove().unwrap();
        assert!(RecordFile::existing(&part).unwrap().is_none());
    }
}
