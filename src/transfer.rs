//! Moving bytes: `get`, `put` and `ls` over a [`Link`].
//!
//! Memory stays constant whatever the size: data goes from the channel to
//! the disk (or back) one SSH packet at a time, the disk's side through
//! tokio's file, off the async threads. A download is written to a
//! hidden part file beside the target ([`crate::transfer::part`]) and renamed only when
//! the server said 226 and the size matches what it announced, so a failure
//! never leaves a truncated file under the final name.
//!
//! Whatever fails here, the data channel is closed before returning, so the
//! server ends the transfer and the control connection can be brought back
//! in step ([`crate::ftp::control::Control::resync`]).

pub mod ascii;
pub mod listing;
pub mod part;
pub mod place;
pub mod ranges;
pub mod segments;
mod sink;
pub mod streams;
pub mod upload;
pub mod verify;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use russh::ChannelMsg;

use crate::error::{classified, Kind};
use crate::events::Event;
use crate::ftp::digest::Method;
use crate::ftp::{Command, Reply};
use crate::link::{Data, Link};
pub use crate::transfer::part::PartFile;
pub use crate::transfer::upload::put;

/// A data connection that moves less than this in a stall window (twice
/// `--timeout`: 60 s by default) is dead, silent or trickling: a hostile
/// server sending a byte a second would otherwise hold a transfer for hours.
pub const STALL_MIN_BYTES: u64 = 1024;
const CHUNK: usize = 64 * 1024;
/// An upload reads its file this much at a time: tokio does each read on its
/// blocking pool, a hand-over between threads that cost more than the read
/// itself at 64 KiB.
const READ_CHUNK: usize = 1 << 20;
/// A download writes this much at a time. Not 1 MiB: the kernel's copy into
/// the page cache then takes far more of the client's CPU (a buffer too big
/// for the CPU's cache, we think; docs/benchmarks.md#measured-effects).
const WRITE_CHUNK: usize = 256 << 10;
/// A hostile server could send an endless name listing.
const MAX_LISTING: usize = 16 << 20;

/// Download `remote` into `local` (a file path). Returns the byte count.
pub async fn get(link: &mut Link<'_>, remote: &str, local: &Path) -> Result<u64> {
    let part = PartFile::open_off_thread(local).await?;
    let (n, _) = fetch(link, remote, &part).await?;
    part.commit_off_thread(local).await?;
    Ok(n)
}

/// Download `remote` into `part`, resuming (REST) after what it already
/// holds from an earlier attempt or run if SIZE says the remote file is at
/// least that long (else starting over); verifies the size where the server
/// tells it. Returns the total size and whether it was verified.
pub async fn fetch(link: &mut Link<'_>, remote: &str, part: &PartFile) -> Result<(u64, bool)> {
    let method = verify::method(link).await?;
    let cmd = Command::Retr(remote.into());
    let (expected, offset, data, mut hasher, hash_reply) = begin(link, &cmd, part, method).await?;
    let events = link.events().clone();
    let throttle = link.spec().throttle.clone();
    // In ASCII the server's size is not what arrives: no total to show.
    events.emit(Event::TransferStarted { name: remote.into(), offset, size: expected.filter(|_| !ascii(link)) });
    let mut out = sink::Sink::new(part.append()?, WRITE_CHUNK);
    let announced = data.announced;
    let mut incoming = Incoming::new(data, stall_window(link), format!("downloading {remote}"));
    let mut received = offset;
    let mut text = ascii(link).then(|| (ascii::Decoder::default(), Vec::new()));
    let copied = async {
        let mut ended = false;
        while !ended {
            let chunk = incoming.next().await?;
            ended = chunk.is_none();
            let wire = chunk.as_ref().map_or(&[][..], |c| c.as_ref());
            let bytes = match text.as_mut() {
                Some((decoder, lines)) => {
                    lines.clear();
                    match ended {
                        true => decoder.finish(lines),
                        false => decoder.decode(wire, lines),
                    }
                    &lines[..]
                }
                None => wire,
            };
            out.write(bytes).await.with_context(|| format!("could not write {}", part.path.display()))?;
            // The hash of the bytes as written: no second read of the file.
            if let Some(h) = hasher.as_mut() {
                h.update(bytes);
            }
            received += bytes.len() as u64;
            // Counted once the limit let it through: the shown rate is the limited one.
            if let Some(t) = &throttle {
                t.take(wire.len()).await;
            }
            events.emit(Event::Progress { bytes: wire.len() as u64 });
        }
        Ok::<_, anyhow::Error>(())
    };
    let copied = copied.await;
    incoming.hang_up().await;
    // What arrived is kept even if the rest fails: a retry resumes after it.
    let flushed = out.flush().await;
    copied?;
    flushed.with_context(|| format!("could not write {}", part.path.display()))?;
    link.finish(&cmd).await?;
    // The 150 announces what remains after REST; SIZE the whole file. Checked: the server's number
    // (`file_size` keeps both below 2^63, this holds if that ever changes).
    // In ASCII both count the server's bytes, not the converted ones: no check.
    let want = expected.or_else(|| announced.and_then(|n| n.checked_add(offset))).filter(|_| !ascii(link));
    if let Some(want) = want.filter(|w| *w != received) {
        part.restart()?; // not the file the server has: nothing to resume
        return Err(classified(
            Kind::Transfer,
            format!("{remote}: received {received} bytes, the server announced {want}; nothing saved"),
        ));
    }
    if let (Some(m), Some(h)) = (method, hasher) {
        let judged = match hash_reply {
            Some(reply) => verify::judge(link.events(), remote, m, &reply, &h.finish()),
            None => verify::compare(link, remote, m, &h.finish()).await,
        };
        if let Err(e) = judged {
            part.restart()?; // not the server's file: nothing to resume, nothing saved
            return Err(e.context("nothing saved"));
        }
    }
    events.emit(Event::TransferDone { name: remote.into(), bytes: received, verified: want.is_some() });
    Ok((received, want.is_some()))
}

/// Put a fresh download's commands on the wire now: SIZE, (for `--verify`) the
/// hash command, and RETR, in one write, behind whatever `link` still owes.
/// [`fetch`] of the same file then receives it; sent while the last transfer
/// runs, it starts the moment that one ends.
///
/// The hash is asked before the transfer, not after: its reply then never meets
/// the transfer's (a server that reads commands during a transfer, as ProFTPD
/// does wherever it copies the data itself, answers one sent after RETR before
/// the 226), and the next file's commands need not wait for it. A file that
/// changes between the two fails the check, as it would after.
pub async fn send_get(link: &mut Link<'_>, remote: &str) -> Result<()> {
    let mut before = vec![Command::Size(remote.into())];
    before.extend(verify::method(link).await?.map(|m| m.command(remote)));
    link.send_transfer(&before, &Command::Retr(remote.into())).await
}

/// A download begun: the size SIZE gave, the offset, the data connection,
/// for `--verify` a hasher that has seen what the part file holds, and
/// the reply to the hash command sent before RETR, if one was.
type Begun = (Option<u64>, u64, Data, Option<verify::Hasher>, Option<Reply>);

/// Start `cmd` (a RETR) on `link`: from the start (SIZE, the hash command and
/// RETR in one write, unless [`send_get`] sent them already), or after what
/// `part` already holds (SIZE, REST, RETR).
async fn begin(link: &mut Link<'_>, cmd: &Command, part: &PartFile, method: Option<Method>) -> Result<Begun> {
    let remote = match cmd {
        Command::Retr(remote) => remote.as_str(),
        _ => unreachable!("begin starts a RETR"),
    };
    let mut hasher = method.map(|m| verify::Hasher::new(m.algorithm()));
    let sent = link.sent_next(cmd);
    if !sent {
        ranges::fold(part)?; // a segmented download's part file, resumed by a plain one
    }
    let held = if sent { 0 } else { part.len()? };
    if held == 0 {
        if !sent {
            send_get(link, remote).await?;
        }
        let (mut replies, data) = link.receive(cmd).await?;
        let size = replies.first().and_then(size_of);
        let hash_reply = (replies.len() == 2 && method.is_some()).then(|| replies.swap_remove(1));
        return Ok((size, 0, data, hasher, hash_reply));
    }
    let expected = remote_size(link, remote).await?;
    let mut offset = held;
    // An offset in converted text is not one in the server's file: ASCII never resumes.
    if ascii(link) || expected.is_none_or(|n| n < offset) {
        let what = match ascii(link) {
            true => format!("{} holds {offset} bytes, but an ASCII download starts over", part.path.display()),
            false => format!(
                "{} holds {offset} bytes but the server gives {remote}'s size as {expected:?}: starting over",
                part.path.display()
            ),
        };
        link.events().emit(Event::Detour { what });
        part.restart()?;
        offset = 0;
    }
    if offset > 0 {
        // Through the link: a passive retry of the RETR sends it again.
        link.expect_rest(offset).await?;
        // What the part file holds is hashed before the rest arrives.
        if let Some(m) = method {
            hasher = Some(verify::seeded(m.algorithm(), &part.path, offset).await?);
        }
    }
    Ok((expected, offset, link.start(cmd).await?, hasher, None))
}

/// The names NLST gives for `dir` (as the server writes them).
pub async fn names(link: &mut Link<'_>, dir: Option<&str>) -> Result<Vec<String>> {
    let raw = read_listing(link, Command::Nlst(dir.map(str::to_string))).await?;
    Ok(String::from_utf8_lossy(&raw).lines().map(|l| l.trim_end_matches('\r').to_string()).collect())
}

/// The whole of a listing's data connection (NLST, MLSD), bounded by [`MAX_LISTING`].
pub(crate) async fn read_listing(link: &mut Link<'_>, cmd: Command) -> Result<Vec<u8>> {
    let data = link.start(&cmd).await?;
    let mut raw = Vec::new();
    let mut incoming = Incoming::new(data, stall_window(link), "reading the listing".into());
    let read = async {
        while let Some(chunk) = incoming.next().await? {
            if raw.len() >= MAX_LISTING {
                bail!(classified(Kind::FtpRefused, "the name listing is too long"));
            }
            raw.extend_from_slice(chunk.as_ref());
        }
        Ok(())
    };
    let read = read.await;
    incoming.hang_up().await;
    read?;
    link.finish(&cmd).await?;
    Ok(raw)
}

/// List `path` (LIST) into `out`.
pub async fn list(link: &mut Link<'_>, path: Option<&str>, out: &mut impl Write) -> Result<()> {
    let cmd = Command::List(path.map(str::to_string));
    let data = link.start(&cmd).await?;
    let mut incoming = Incoming::new(data, stall_window(link), "reading the listing".into());
    let read = async {
        while let Some(chunk) = incoming.next().await? {
            out.write_all(chunk.as_ref())?;
        }
        Ok::<_, anyhow::Error>(out.flush()?)
    };
    let read = read.await;
    incoming.hang_up().await;
    read?;
    link.finish(&cmd).await?;
    Ok(())
}

/// A chunk of a download: read before the transfer began, or off the wire.
enum Chunk<B> {
    Early(Vec<u8>),
    Wire(B),
}

impl<B: AsRef<[u8]>> AsRef<[u8]> for Chunk<B> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Chunk::Early(v) => v,
            Chunk::Wire(b) => b.as_ref(),
        }
    }
}

/// The session is in TYPE A (`--ascii`): line endings are converted ([`ascii`]).
fn ascii(link: &Link<'_>) -> bool {
    link.spec().login.ascii
}

/// Twice the reply timeout (`--timeout`): how long a data connection has to
/// move [`STALL_MIN_BYTES`].
fn stall_window(link: &Link<'_>) -> Duration {
    link.control.timeout * 2
}

/// A download-direction data connection, read chunk by chunk until the
/// server's EOF. One that moves less than [`STALL_MIN_BYTES`] in a stall
/// window is dead, silent or trickling; `doing` says what for the message.
struct Incoming {
    channel: russh::Channel<russh::client::Msg>,
    /// What came before the 150 (see [`crate::link::Early`]), handed out first.
    early: std::vec::IntoIter<Vec<u8>>,
    ended: bool,
    /// Our EOF went out already ([`Data::eof_sent`]).
    eof_sent: bool,
    doing: String,
    window: Duration,
    /// The current window's end, and what moved in it.
    window_ends: tokio::time::Instant,
    moved: u64,
}

impl Incoming {
    fn new(data: Data, window: Duration, doing: String) -> Incoming {
        let (channel, early, ended) = (data.channel, data.early.chunks.into_iter(), data.early.ended);
        let eof_sent = data.eof_sent;
        Incoming {
            channel,
            early,
            ended,
            eof_sent,
            doing,
            window,
            window_ends: tokio::time::Instant::now() + window,
            moved: 0,
        }
    }

    /// The next chunk, or None at the server's EOF.
    async fn next(&mut self) -> Result<Option<impl AsRef<[u8]>>> {
        if let Some(chunk) = self.early.next() {
            self.moved += chunk.len() as u64;
            return Ok(Some(Chunk::Early(chunk)));
        }
        if self.ended {
            return Ok(None);
        }
        loop {
            let msg = tokio::time::timeout_at(self.window_ends, self.channel.wait()).await.ok();
            if tokio::time::Instant::now() >= self.window_ends {
                if self.moved < STALL_MIN_BYTES {
                    let (moved, window, doing) = (self.moved, self.window, &self.doing);
                    let why = format!("the data connection stalled: {moved} bytes in {window:?} while {doing}");
                    return Err(classified(Kind::Transfer, why));
                }
                (self.window_ends, self.moved) = (tokio::time::Instant::now() + self.window, 0);
            }
            match msg {
                None => continue,
                Some(Some(ChannelMsg::Data { data })) => {
                    self.moved += data.len() as u64;
                    return Ok(Some(Chunk::Wire(data)));
                }
                Some(Some(ChannelMsg::Eof | ChannelMsg::Close) | None) => {
                    self.ended = true;
                    return Ok(None);
                }
                Some(Some(_)) => {}
            }
        }
    }

    /// Our EOF at once (ProFTPD holds its 226 until it sees the connection
    /// end, TimeoutLinger), then drop the channel without waiting for the
    /// server's close (a russh channel nobody reads would stall the session).
    /// After the server's EOF that is all: the server closes, and russh
    /// forgets the channel when its CHANNEL_CLOSE comes. Before it (a failed
    /// write, a stall), close too, so the server ends the transfer now; russh
    /// then keeps that channel's queue (~2.5 KiB) until the session ends.
    async fn hang_up(self) {
        if !self.eof_sent {
            let _ = self.channel.eof().await;
        }
        if !self.ended {
            let _ = self.channel.close().await;
        }
    }
}

/// SIZE, if the server knows it (None on any refusal: RETR will say why).
/// No answer at all is an error: the conversation cannot go on.
pub(crate) async fn remote_size(link: &mut Link<'_>, remote: &str) -> Result<Option<u64>> {
    Ok(size_of(&link.control.command(&Command::Size(remote.into())).await?))
}

/// The size a SIZE reply gives (213), if any.
fn size_of(reply: &Reply) -> Option<u64> {
    (reply.code == 213).then(|| crate::ftp::reply::file_size(reply.text().trim().rsplit(' ').next()?)).flatten()
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
