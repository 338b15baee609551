//! `put`: a local file to the server, from its first byte (STOR) or, with
//! `--continue`, after what the server already holds of it (APPE).
//!
//! A continuation trusts SIZE, as lftp's `put -c` and curl's `-C -` do:
//! - the server holds fewer bytes than the file: the rest is sent with APPE;
//! - as many: nothing is sent (the size check and `--verify` still run);
//! - more: it is not a start of this file; a usage error, nothing sent;
//! - no size (no such file, or SIZE refused): the whole file, with STOR.
//!
//! APPE, not REST+STOR: inetutils ftpd answers REST with 350 and then
//! truncates the file on STOR (measured), so a continuation by REST would
//! silently lose the start of the file there; APPE appends on every lab
//! server (ProFTPD only with `AllowStoreRestart on`; otherwise it refuses
//! with 451, and the upload fails with that reply).

use std::io::SeekFrom;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::ascii::Encoder;
use super::{remote_size, stall_window, verify, CHUNK, READ_CHUNK};
use crate::error::{classified, Kind};
use crate::events::Event;
use crate::ftp::Command;
use crate::link::Link;

/// Upload `local` to `remote`. Returns the byte count sent.
pub async fn put(link: &mut Link<'_>, local: &Path, remote: &str) -> Result<u64> {
    let mut file = tokio::fs::File::open(local).await.with_context(|| format!("could not open {}", local.display()))?;
    let size = file.metadata().await?.len();
    let ascii = link.spec().login.ascii;
    let method = verify::method(link).await?;
    let offset = match link.spec().continue_uploads {
        true => resume_point(link, local, remote, size).await?,
        false => 0,
    };
    let mut hasher = match method {
        Some(m) => Some(verify::seeded(m.algorithm(), local, offset).await?),
        None => None,
    };
    let events = link.events().clone();
    events.emit(Event::TransferStarted { name: remote.into(), offset, size: (!ascii).then_some(size) });
    let sent = match offset == size && offset > 0 {
        true => 0, // all there already: checked below like any upload
        false => {
            file.seek(SeekFrom::Start(offset)).await.with_context(|| format!("could not read {}", local.display()))?;
            let cmd = if offset > 0 { Command::Appe(remote.into()) } else { Command::Stor(remote.into()) };
            send(link, &cmd, file, local, ascii, hasher.as_mut()).await?
        }
    };
    // In ASCII the server stores its own line endings: its size is not ours.
    let stored = if ascii { None } else { remote_size(link, remote).await? };
    if let Some(stored) = stored.filter(|s| *s != size) {
        bail!(classified(Kind::Transfer, format!("{remote}: sent {size} bytes but the server holds {stored}")));
    }
    if let (Some(m), Some(h)) = (method, hasher) {
        if let Err(e) = verify::compare(link, remote, m, &h.finish()).await {
            // Not the bytes we sent: a bad copy is not left under the name (as rclone does).
            let deleted = link.control.expect(&Command::Dele(remote.into()), |r| r.is_completion()).await;
            return Err(match deleted {
                Ok(_) => e.context(format!("the server's copy of {remote} was deleted")),
                Err(why) => e.context(format!("the server's bad copy of {remote} could not be deleted ({why:#})")),
            });
        }
    }
    events.emit(Event::TransferDone { name: remote.into(), bytes: sent, verified: stored.is_some() });
    Ok(sent)
}

/// Where a continued upload starts: what SIZE says the server holds (see the module's rules).
async fn resume_point(link: &mut Link<'_>, local: &Path, remote: &str, size: u64) -> Result<u64> {
    match remote_size(link, remote).await? {
        None => {
            let what = format!("the server gives no size for {remote}: uploading all of {}", local.display());
            link.events().emit(Event::Detour { what });
            Ok(0)
        }
        Some(held) if held > size => Err(classified(
            Kind::Usage,
            format!(
                "--continue: the server's {remote} holds {held} bytes, more than the {size} of {}: it is not a \
                 start of this file; nothing sent (without --continue the upload replaces it)",
                local.display()
            ),
        )),
        Some(held) => Ok(held),
    }
}

/// Send `file` from its position with `cmd` (STOR or APPE); returns the bytes read from it.
async fn send(
    link: &mut Link<'_>,
    cmd: &Command,
    mut file: tokio::fs::File,
    local: &Path,
    ascii: bool,
    mut hasher: Option<&mut verify::Hasher>,
) -> Result<u64> {
    let remote = match cmd {
        Command::Stor(r) | Command::Appe(r) => r.clone(),
        _ => unreachable!("an upload is a STOR or an APPE"),
    };
    let data = link.start(cmd).await?;
    let events = link.events().clone();
    let throttle = link.spec().throttle.clone();
    // Nothing comes back on an upload's channel but window adjustments and
    // EOF/close; still, someone must read them, or the channel's bounded queue
    // fills and stalls the whole SSH session, control connection included.
    let (mut incoming, channel) = data.channel.split();
    let drain = tokio::spawn(async move { while incoming.wait().await.is_some() {} });
    let mut buf = vec![0u8; READ_CHUNK];
    let (mut encoder, mut wire) = (Encoder::default(), Vec::new());
    let mut sent = 0u64;
    let window = stall_window(link);
    let sending = async {
        loop {
            let n = file.read(&mut buf).await.with_context(|| format!("could not read {}", local.display()))?;
            if n == 0 {
                return Ok(());
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]); // the file's bytes, as the server stores them in binary
            }
            sent += n as u64;
            let out = match ascii {
                true => {
                    wire.clear();
                    encoder.encode(&buf[..n], &mut wire);
                    &wire[..]
                }
                false => &buf[..n],
            };
            for piece in out.chunks(CHUNK) {
                // A server that takes less than a chunk (64 KiB) in a window is stalled too.
                tokio::time::timeout(window, channel.data(piece))
                    .await
                    .map_err(|_| {
                        classified(
                            Kind::Transfer,
                            format!("the server took no data for {window:?} while uploading {remote}"),
                        )
                    })?
                    .map_err(|e| classified(Kind::Transfer, format!("the data connection for {remote} broke: {e}")))?;
                // Counted once the limit let it through: the shown rate is the limited one.
                if let Some(t) = &throttle {
                    t.take(piece.len()).await;
                }
                events.emit(Event::Progress { bytes: piece.len() as u64 });
            }
        }
    };
    let sent_all: Result<()> = sending.await;
    if let Err(e) = sent_all {
        let _ = channel.close().await;
        drain.abort();
        return Err(e);
    }
    let _ = channel.eof().await;
    let finished = link.finish(cmd).await;
    let _ = channel.close().await;
    drain.abort();
    finished?;
    Ok(sent)
}
