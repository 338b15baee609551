//! Moving bytes: `get`, `put` and `ls` over a [`Link`].
//!
//! Memory stays constant whatever the size: data goes from the channel to
//! the disk (or back) one SSH packet at a time. A download is written to a
//! hidden part file beside the target and renamed only when the server said
//! 226 and the size matches what it announced, so a failure never leaves a
//! truncated file under the final name.

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

/// A data connection silent for this long is dead.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const CHUNK: usize = 64 * 1024;

/// Download `remote` into `local` (a file path). Returns the byte count.
pub async fn get(link: &mut Link<'_>, remote: &str, local: &Path, bar: &ProgressBar) -> Result<u64> {
    let expected = remote_size(link, remote).await;
    if let Some(n) = expected {
        bar.set_length(n);
    }
    let mut part = PartFile::create(local)?;
    let cmd = Command::Retr(remote.into());
    let mut data = link.start(&cmd).await?;
    let mut out = BufWriter::with_capacity(4 * CHUNK, part.file()?);
    let mut received = 0u64;
    loop {
        let msg = tokio::time::timeout(STALL_TIMEOUT, data.channel.wait()).await.map_err(|_| {
            classified(Kind::Transfer, format!("no data for {STALL_TIMEOUT:?} while downloading {remote}"))
        })?;
        match msg {
            Some(ChannelMsg::Data { data }) => {
                out.write_all(&data).with_context(|| format!("could not write {}", part.path.display()))?;
                received += data.len() as u64;
                bar.inc(data.len() as u64);
            }
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    // Close our side at once: ProFTPD holds its 226 until the client closes (TimeoutLinger).
    hang_up(data.channel).await;
    link.finish(&cmd).await?;
    let want = expected.or(data.announced);
    if let Some(want) = want.filter(|w| *w != received) {
        return Err(classified(
            Kind::Transfer,
            format!("{remote}: received {received} bytes, the server announced {want}; nothing saved"),
        ));
    }
    out.flush().with_context(|| format!("could not write {}", part.path.display()))?;
    drop(out);
    part.commit(local)?;
    Ok(received)
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
    loop {
        let n = file.read(&mut buf).with_context(|| format!("could not read {}", local.display()))?;
        if n == 0 {
            break;
        }
        tokio::time::timeout(STALL_TIMEOUT, channel.data(&buf[..n]))
            .await
            .map_err(|_| {
                classified(
                    Kind::Transfer,
                    format!("the server took no data for {STALL_TIMEOUT:?} while uploading {remote}"),
                )
            })?
            .map_err(|e| classified(Kind::Transfer, format!("the data connection for {remote} broke: {e}")))?;
        sent += n as u64;
        bar.inc(n as u64);
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
    let mut data = link.start(&cmd).await?;
    loop {
        match tokio::time::timeout(STALL_TIMEOUT, data.channel.wait()).await {
            Err(_) => bail!(classified(Kind::Transfer, "the listing stalled")),
            Ok(Some(ChannelMsg::Data { data })) => out.write_all(&data)?,
            Ok(Some(ChannelMsg::Eof | ChannelMsg::Close) | None) => break,
            Ok(Some(_)) => {}
        }
    }
    hang_up(data.channel).await;
    out.flush()?;
    link.finish(&cmd).await?;
    Ok(())
}

/// EOF and close, then drop without waiting for the server's close (a
/// russh channel nobody reads would stall the whole session).
async fn hang_up(channel: russh::Channel<russh::client::Msg>) {
    let _ = channel.eof().await;
    let _ = channel.close().await;
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

/// A hidden file beside the target that becomes the target only on success.
struct PartFile {
    path: PathBuf,
    file: Option<File>,
}

impl PartFile {
    fn create(target: &Path) -> Result<PartFile> {
        let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = target.file_name().context("download target has no file name")?.to_string_lossy();
        let path = dir.join(format!(".{name}.ftpssh-{}.part", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("could not create {}", path.display()))?;
        Ok(PartFile { path, file: Some(file) })
    }

    fn file(&mut self) -> Result<File> {
        self.file.take().context("part file already in use").map(Ok)?
    }

    fn commit(self, target: &Path) -> Result<()> {
        std::fs::rename(&self.path, target)
            .with_context(|| format!("could not rename {} to {}", self.path.display(), target.display()))?;
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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

    #[test]
    fn part_file_vanishes_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.bin");
        let mut part = PartFile::create(&target).unwrap();
        part.file().unwrap().write_all(b"half").unwrap();
        drop(part);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut part = PartFile::create(&target).unwrap();
        part.file().unwrap().write_all(b"whole").unwrap();
        part.commit(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
