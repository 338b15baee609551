//! What the ranges of one segmented download share ([`super`]): the record of what is written,
//! the part file, and which ranges a link is fetching now.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::events::Events;
use crate::transfer::ranges::{Record, RecordFile};

/// The record is saved each time a segment has written this much more.
const SAVE_EVERY: u64 = 8 << 20;

/// A chunk's write in flight, its range, and where it ends in the file.
pub(super) type Writing = (tokio::task::JoinHandle<std::io::Result<Vec<u8>>>, usize, u64);

/// What the segments share: the record, the part file, the ranges under way.
pub(super) struct Shared<'a> {
    pub(super) remote: &'a str,
    pub(super) events: Events,
    pub(super) record: Mutex<Record>,
    /// Saved on every [`SAVE_EVERY`] and when the run ends (also when it is dropped, at a signal).
    record_file: Mutex<Option<RecordFile>>,
    file: Arc<File>,
    /// Ranges being fetched now, and the bytes written since the last save.
    busy: Mutex<Vec<bool>>,
    unsaved: Mutex<u64>,
    said: Mutex<bool>,
}

impl<'a> Shared<'a> {
    pub(super) fn new(
        record: Record,
        record_file: RecordFile,
        file: File,
        remote: &'a str,
        events: Events,
    ) -> Shared<'a> {
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

    pub(super) fn unfinished(&self) -> usize {
        self.record.lock().unwrap().ranges.iter().filter(|r| r.left() > 0).count().max(1)
    }

    /// The next range nobody fetches and not yet complete.
    pub(super) fn take(&self) -> Option<usize> {
        let record = self.record.lock().unwrap();
        let mut busy = self.busy.lock().unwrap();
        let i = (0..busy.len()).find(|&i| !busy[i] && record.ranges[i].left() > 0)?;
        busy[i] = true;
        Some(i)
    }

    /// The range after `i`, taken, if it begins where `i` ends, nobody fetches it and none of
    /// it is written yet: a transfer at the end of `i` reads on into it.
    pub(super) fn run_on(&self, i: usize) -> Option<usize> {
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

    pub(super) fn give_back(&self, i: usize) {
        self.busy.lock().unwrap()[i] = false;
    }

    pub(super) fn range(&self, i: usize) -> (u64, u64) {
        let r = self.record.lock().unwrap().ranges[i];
        (r.done, r.end)
    }

    /// Start writing `buf`, which ends at `end` in range `i`, off the async thread.
    pub(super) fn write(&self, i: usize, buf: Vec<u8>, end: u64) -> Writing {
        let (file, at) = (self.file.clone(), end - buf.len() as u64);
        (tokio::task::spawn_blocking(move || file.write_all_at(&buf, at).map(|()| buf)), i, end)
    }

    /// Wait for a write, then record it in its range; its buffer comes back empty.
    pub(super) async fn settle(&self, (writing, i, end): Writing) -> Result<Vec<u8>> {
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

    pub(super) fn save(&self) -> Result<()> {
        match self.record_file.lock().unwrap().as_ref() {
            Some(f) => f.save(&self.record.lock().unwrap()),
            None => Ok(()),
        }
    }

    /// Save the record one last time and hand its file over.
    pub(super) fn finish(&self) -> Result<Option<RecordFile>> {
        self.save()?;
        Ok(self.record_file.lock().unwrap().take())
    }

    /// A connection fewer than asked: said once, and the others fetch its ranges.
    pub(super) fn fewer(&self, why: &str) {
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
