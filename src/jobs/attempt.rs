//! One item's progress across its attempts: its record, its part file, its
//! retry delays and what its TIME_WAIT collisions have cost so far.

use std::path::{Path, PathBuf};

use anyhow::Result;
use backon::{BackoffBuilder, ExponentialBackoff};

use crate::backoff;
use crate::error::{classified, Kind};
use crate::events::{Event, Events, Recorder};
use crate::jobs::batch::Op;
use crate::jobs::report::Record;
use crate::link::Link;
use crate::timewait::Collisions;
use crate::transfer::ranges;
use crate::transfer::segments::{self, Segments};
use crate::transfer::{self, PartFile};

/// One transfer to make.
#[derive(Debug, Clone)]
pub struct Item {
    /// Get or put.
    pub op: Op,
    /// Remote name (get) or local path (put).
    pub source: String,
    /// Local path (get) or remote name (put).
    pub target: String,
    /// Its line in the batch file, named when it fails.
    pub line: Option<usize>,
    /// For a download by `mirror`: the server's modification time, given to the copy.
    pub mtime: Option<std::time::SystemTime>,
}

/// One item, as far as it got.
pub struct Attempt {
    /// Its place in the run.
    pub index: usize,
    /// What to transfer.
    pub item: Item,
    /// What the report will say of it.
    pub record: Record,
    part: Option<PartFile>,
    delays: ExponentialBackoff,
    /// For the TIME_WAIT policy.
    pub collisions: Collisions,
}

impl Attempt {
    /// The first attempt at `item`.
    pub fn new(index: usize, item: Item) -> Attempt {
        let record = Record::new(item.op, &item.source, &item.target);
        let delays = backoff::passing_failure().build();
        Attempt { index, item, record, part: None, delays, collisions: Collisions::default() }
    }

    /// Tell `events` something the scheduler did for this item, and record it.
    pub fn tell(&mut self, events: &Events, event: Event) {
        self.record.apply(&event);
        events.emit(event);
    }

    /// Record what the procedure told the session's `recorder` about this item so far.
    pub fn absorb(&mut self, recorder: &Recorder) {
        for event in recorder.take() {
            self.record.apply(&event);
        }
    }

    /// Count a retry and sleep its backoff delay.
    pub async fn retry_later(&mut self, events: &Events, e: &anyhow::Error) {
        let delay = backoff::next_pause(&mut self.delays);
        let what = format!("{} {}", self.item.op.as_str(), self.item.source);
        let retry = self.record.retries + 1;
        self.tell(events, Event::Retrying { what, error: format!("{e:#}"), retry, delay });
        tokio::time::sleep(delay).await;
    }

    /// Put this download's commands on the wire now, behind whatever `link`
    /// still owes ([`transfer::send_get`]), if it starts from nothing (a
    /// resumed one must read SIZE's answer before its REST). True if sent.
    pub async fn send_ahead(&mut self, link: &mut Link<'_>) -> Result<bool> {
        if self.item.op != Op::Get {
            return Ok(false);
        }
        if self.open_part().await?.len().is_ok_and(|n| n == 0) {
            transfer::send_get(link, &self.item.source).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Open (and lock) the download's part file, unless an earlier attempt did:
    /// it is kept across attempts.
    async fn open_part(&mut self) -> Result<&PartFile> {
        if self.part.is_none() {
            self.part = Some(PartFile::open_off_thread(Path::new(&self.item.target)).await?);
        }
        Ok(self.part.as_ref().expect("opened above"))
    }

    /// Make the transfer on `link`. A download goes to its part file, kept
    /// across attempts so a retry resumes it; in ranges where `segments` says.
    pub async fn perform(&mut self, link: &mut Link<'_>, segments: Option<&Segments<'_>>) -> Result<()> {
        match self.item.op {
            Op::Get => {
                let target = PathBuf::from(&self.item.target);
                self.open_part().await?;
                let part = self.part.as_ref().expect("opened above");
                let fetched = match segments {
                    Some(how) => segments::fetch(link, how, &self.item.source, part).await,
                    None => transfer::fetch(link, &self.item.source, part).await.map(|(n, _)| n),
                };
                // A segmented part file has its full length from the start: its record says what arrived.
                self.record.bytes = match &fetched {
                    Ok(n) => *n,
                    Err(_) => ranges::held(part),
                };
                fetched?;
                let part = self.part.take().unwrap();
                // Set on our descriptor before the rename: after it, the name could be
                // someone else's link in a shared directory.
                if let Some(mtime) = self.item.mtime {
                    part.set_modified(mtime).map_err(|e| classified(Kind::Local, format!("{e:#}")))?;
                }
                part.commit_off_thread(&target).await?;
            }
            Op::Put => {
                transfer::put(link, self.item.source.as_ref(), &self.item.target).await?;
            }
        }
        Ok(())
    }
}
