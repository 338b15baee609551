//! Moving bytes: `get`, `put` and `ls` over a [`Link`].
//!
//! Memory stays constant whatever the size: data goes from the channel to
//! the disk (or back) one SSH packet at a time. A download is written to a
//! hidden part file beside the target ([`crate::part`]) and renamed only when
//! the server said 226 and the size matches what it announced, so a failure
//! never leaves a truncated file under the final name.
//!
//! Whatever fails here, the data channel is closed before returning, so the
//! server ends the transfer and the control connection can be brought back
//! in step ([`crate::ftp::control::Control::resync`]).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use russh::ChannelMsg;

use crate::error::{classified, Kind};
use crate::ftp::Command;
use crate::link::Link;
pub use crate::part::PartFile;

/// A data connection that moves less than this in a stall window (twice
/// `--timeout`: 60 s by default) is dead, silent or trickling: a hostile
/// server sending a byte a second would otherwise hold a transfer for hours.
pub const STALL_MIN_BYTES: u64 = 1024;
const CHUNK: usize = 64 * 1024;
/// A hostile server could send an endless name listing.
const MAX_LISTING: usize = 16 << 20;

/// Download `remote` into `local` (a file path). Returns the byte count.
pub async fn get(link: &mut Link<'_>, remote: &str, local: &Path, bar: &ProgressBar) -> Result<u64> {
    let part = PartFile::open(local)?;
    let (n, _) = fetch(link, remote, &part, bar).await?;
    part.commit(local)?;
    Ok(n)
}

/// Download `remote` into `part`, resuming (REST) after what it already
/// holds from an earlier attempt or run if SIZE says the remote file is at
/// least that long (else starting over); verifies the size where the server
/// tells it. Returns the total size and whether it was verified.
pub async fn fetch(link: &mut Link<'_>, remote: &str, part: &PartFile, bar: &ProgressBar) -> Result<(u64, bool)> {
    let expected = remote_size(link, remote).await;
    let mut offset = part.len()?;
    if offset > 0 && expected.is_none_or(|n| n < offset) {
        tracing::info!(
            "{} holds {offset} bytes but the server gives {remote}'s size as {expected:?}: starting over",
            part.path.display()
        );
        part.restart()?;
        offset = 0;
    }
    if let Some(n) = expected {
        bar.set_length(n);
    }
    bar.set_position(offset);
    if offset > 0 {
        link.control.expect(&Command::Rest(offset), |r| r.code == 350).await?;
        tracing::info!("resuming {remote} at byte {offset}");
    }
    let cmd = Command::Retr(remote.into());
    let data = link.start(&cmd).await?;
    let mut out = BufWriter::with_capacity(4 * CHUNK, part.append()?);
    let mut received = offset;
    receive(data.channel, stall_window(link), &format!("downloading {remote}"), |chunk| {
        out.write_all(chunk).with_context(|| format!("could not write {}", part.path.display()))?;
        received += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
        Ok(())
    })
    .await?;
    // What arrived is kept even if the rest fails: a retry resumes after it.
    out.flush().with_context(|| format!("could not write {}", part.path.display()))?;
    link.finish(&cmd).await?;
    // The 150 announces what remains after REST; SIZE the whole file.
    let want = expected.or(data.announced.map(|n| n + offset));
    if let Some(want) = want.filter(|w| *w != received) {
        part.restart()?; // not the file the server has: nothing to resume
        return Err(classified(
            Kind::Transfer,
            format!("{remote}: received {received} bytes, the server announced {want}; nothing saved"),
        ));
    }
    Ok((received, want.is_some()))
}

/// The names NLST gives for `dir` (as the server writes them).
pub async fn names(link: &mut Link<'_>, dir: Option<&str>) -> Result<Vec<String>> {
    let cmd = Command::Nlst(dir.map(str::to_string));
    let data = link.start(&cmd).await?;
    let mut raw = Vec::new();
    receive(data.channel, stall_window(link), "reading the name listing", |chunk| {
        if raw.len() >= MAX_LISTING {
            bail!(classified(Kind::FtpRefused, "the name listing is too long"));
        }
        raw.extend_from_slice(chunk);
        Ok(())
    })
    .await?;
    link.finish(&cmd).await?;
    Ok(String::from_utf8_lossy(&raw).lines().map(|l| l.trim_end_matches('\r').to_string()).collect())
}

/// Upload `local` to `remote`. Returns the byte count.
pub async fn put(link: &mut Link<'_>, local: &Path, remote: &str, bar: &ProgressBar) -> Result<u64> {
    let mut file = File::open(local).with_context(|| format!("could not open {}", local.display()))?;
    let size = file.metadata()?.len();
    bar.set_length(size);
    let cmd = Command::Stor(remote.into());
    let data = link.start(&cmd).await?;
    // Nothing comes back on an upload's channel but window adjustments and
    // EOF/close; still, someone must read them, or the channel's bounded queue
    // fills and stalls the whole SSH session, control connection included.
    let (mut incoming, channel) = data.channel.split();
    let drain = tokio::spawn(async move { while incoming.wait().await.is_some() {} });
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let window = stall_window(link);
    let sending = async {
        loop {
            let n = file.read(&mut buf).with_context(|| format!("could not read {}", local.display()))?;
            if n == 0 {
                return Ok(());
            }
            // A server that takes less than a chunk (64 KiB) in a window is stalled too.
            tokio::time::timeout(window, channel.data(&buf[..n]))
                .await
                .map_err(|_| {
                    classified(
                        Kind::Transfer,
                        format!("the server took no data for {window:?} while uploading {remote}"),
                    )
                })?
                .map_err(|e| classified(Kind::Transfer, format!("the data connection for {remote} broke: {e}")))?;
            sent += n as u64;
            bar.inc(n as u64);
        }
    };
    let sent_all: Result<()> = sending.await;
    if let Err(e) = sent_all {
        let _ = channel.close().await;
        drain.abort();
        return Err(e);
    }
    let _ = channel.eof().await;
    let finished = link.finish(&cmd).await;
    let _ = channel.close().await;
    drain.abort();
    finished?;
    if let Some(stored) = remote_size(link, remote).await.filter(|s| *s != sent) {
        bail!(classified(Kind::Transfer, format!("{remote}: sent {sent} bytes but the server holds {stored}")));
    }
    Ok(sent)
}

/// List `path` (LIST) into `out`.
pub async fn list(link: &mut Link<'_>, path: Option<&str>, out: &mut impl Write) -> Result<()> {
    let cmd = Command::List(path.map(str::to_string));
    let data = link.start(&cmd).await?;
    receive(data.channel, stall_window(link), "reading the listing", |chunk| Ok(out.write_all(chunk)?)).await?;
    out.flush()?;
    link.finish(&cmd).await?;
    Ok(())
}

/// Twice the reply timeout (`--timeout`): how long a data connection has to
/// move [`STALL_MIN_BYTES`].
fn stall_window(link: &Link<'_>) -> Duration {
    link.control.timeout * 2
}

/// Hand every chunk of a download-direction data connection to `sink` until
/// the server's EOF, then hang up at once: ProFTPD holds its 226 until the
/// client closes (TimeoutLinger). A connection that moves less than
/// [`STALL_MIN_BYTES`] in a `window` is dead; `doing` says what for the message.
async fn receive(
    mut channel: russh::Channel<russh::client::Msg>,
    window: Duration,
    doing: &str,
    sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let received = read_to_eof(&mut channel, window, doing, sink).await;
    // EOF and close on every path (a failed sink too: the server must see the
    // connection end to end the transfer), then drop without waiting for the
    // server's close (a russh channel nobody reads would stall the session).
    let _ = channel.eof().await;
    let _ = channel.close().await;
    received
}

async fn read_to_eof(
    channel: &mut russh::Channel<russh::client::Msg>,
    window: Duration,
    doing: &str,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let (mut window_ends, mut moved) = (tokio::time::Instant::now() + window, 0u64);
    loop {
        let msg = tokio::time::timeout_at(window_ends, channel.wait()).await.ok();
        if tokio::time::Instant::now() >= window_ends {
            if moved < STALL_MIN_BYTES {
                return Err(classified(
                    Kind::Transfer,
                    format!("the data connection stalled: {moved} bytes in {window:?} while {doing}"),
                ));
            }
            (window_ends, moved) = (tokio::time::Instant::now() + window, 0);
        }
        let Some(msg) = msg else { continue };
        match msg {
            Some(ChannelMsg::Data { data }) => {
                moved += data.len() as u64;
                sink(&data)?
            }
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return Ok(()),
            Some(_) => {}
        }
    }
}

/// SIZE, if the server knows it (None on any refusal: RETR will say why).
async fn remote_size(link: &mut Link<'_>, remote: &str) -> Option<u64> {
    let reply = link.control.command(&Command::Size(remote.into())).await.ok()?;
    (reply.code == 213).then(|| reply.text().trim().rsplit(' ').next()?.parse().ok()).flatten()
}

/// The final local path for a download: `local` if it names a file, else
/// the remote base name inside `local` (or the current directory).
pub fn local_target(remote: &str, local: Option<&Path>) -> Result<PathBuf> {
    let base = safe_base_name(remote)?;
    Ok(match local {
        Some(p) if p.is_dir() => p.join(base),
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(base),
    })
}

/// The last component of a remote name, refused if it could escape the
/// target directory or carries control characters.
pub fn safe_base_name(remote: &str) -> Result<&str> {
    let base = remote.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
    if base.is_empty() || base == "." || base == ".." || base.chars().any(|c| c.is_control()) {
        bail!(classified(Kind::Usage, format!("cannot make a local file name from {remote:?}")));
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_never_escape() {
        assert_eq!(safe_base_name("dir/a b.bin").unwrap(), "a b.bin");
        assert_eq!(safe_base_name("nön ✓").unwrap(), "nön ✓");
        for bad in ["..", "a/..", "", "/", "x\ny", "a/."] {
            assert!(safe_base_name(bad).is_err(), "{bad:?}");
        }
    }
}
