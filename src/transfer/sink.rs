//! Where a download's bytes go: its part file, written off the async threads
//! in chunks, one chunk written while the next fills.
//!
//! tokio's `BufWriter` over tokio's `File` copied every byte twice in user
//! space (into the `BufWriter`, then into the `File`'s own buffer before its
//! blocking write): `perf` put a 1 GiB get's `memmove` at 8-22% of the
//! client's CPU. Here the chunk itself goes to the blocking write, and comes
//! back to be filled again: one copy, two buffers for the whole download.

use std::fs::File;
use std::io::{self, Write};

use tokio::task::JoinHandle;

/// A write in flight: the file and the chunk come back with the result.
type Writing = JoinHandle<(File, Vec<u8>, io::Result<()>)>;

/// A part file's writer: [`Sink::write`] fills a chunk, [`Sink::flush`] writes
/// what is left and waits for it.
pub struct Sink {
    /// The file and a spare chunk, while no write is in flight.
    idle: Option<(File, Vec<u8>)>,
    writing: Option<Writing>,
    /// The chunk being filled.
    buf: Vec<u8>,
    chunk: usize,
}

impl Sink {
    /// Write to `file` (at its position) in chunks of `chunk` bytes.
    pub fn new(file: File, chunk: usize) -> Sink {
        Sink { idle: Some((file, Vec::with_capacity(chunk))), writing: None, buf: Vec::with_capacity(chunk), chunk }
    }

    /// Take `bytes`; a full chunk goes to be written once the last one is.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.chunk {
            self.send().await?;
        }
        Ok(())
    }

    /// Write everything taken so far, and wait until it is written.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send().await?;
        }
        self.settle().await
    }

    async fn send(&mut self) -> io::Result<()> {
        self.settle().await?;
        let (mut file, mut spare) = self.idle.take().ok_or_else(failed_before)?;
        spare.clear();
        let full = std::mem::replace(&mut self.buf, spare);
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let result = file.write_all(&full);
            (file, full, result)
        }));
        Ok(())
    }

    /// Wait for the write in flight. After a failure the file is let go: what
    /// follows could only land after a gap.
    async fn settle(&mut self) -> io::Result<()> {
        if let Some(writing) = self.writing.take() {
            let (file, chunk, result) = writing.await.map_err(io::Error::other)?;
            result?;
            self.idle = Some((file, chunk));
        }
        self.idle.as_ref().map(drop).ok_or_else(failed_before)
    }
}

fn failed_before() -> io::Error {
    io::Error::other("an earlier write of this file failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_byte_arrives_in_order_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut sink = Sink::new(File::create(&path).unwrap(), 1000);
        let want: Vec<u8> = (0..10_007u32).map(|i| (i * 7 % 251) as u8).collect();
        for piece in want.chunks(333) {
            sink.write(piece).await.unwrap();
        }
        sink.flush().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
        sink.flush().await.unwrap(); // nothing left: a second flush is harmless
    }

    #[tokio::test]
    async fn a_failed_write_is_reported() {
        let full = File::options().write(true).open("/dev/full").unwrap();
        let mut sink = Sink::new(full, 10);
        let mut failed = false;
        for _ in 0..3 {
            failed |= sink.write(&[1; 10]).await.is_err();
        }
        failed |= sink.flush().await.is_err();
        assert!(failed, "writing to /dev/full succeeded");
    }
}
