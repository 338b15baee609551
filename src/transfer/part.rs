//! The part file a download is written to: `.NAME.ftpssh.part` beside the
//! target, renamed to NAME only when the transfer is complete and verified.
//!
//! The rule (as rsync's `--partial` and curl's `-C -`): a download that fails
//! or is interrupted keeps what arrived under that stable name, and the next
//! run of the same download resumes it (REST) if the server's SIZE says the
//! remote file is at least that long, else starts over. A part file that holds
//! nothing is removed; a successful run leaves none. Two runs cannot write one
//! part file: each holds an exclusive `flock` on it while it downloads, and the
//! second is refused at once.
//!
//! The directory may be shared with other users (`/tmp`): the part file is
//! never opened through a link, it is resumed only if it is a plain file of
//! ours that no one else can write, else removed and made anew (`O_EXCL`),
//! and its final rename never takes a name another user holds there
//! ([`place`]).
//!
//! A remote name may be up to NAME_MAX (255 bytes) long, and the part file's
//! name adds 14; where the plain part name would not fit, it keeps the
//! beginning of the name and adds a hash of the whole name.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::error::{classified, Kind};
use crate::transfer::place;

/// What follows the target's name in its part file's name.
pub const SUFFIX: &str = ".ftpssh.part";
/// Longest file name Linux file systems take (bytes).
const NAME_MAX: usize = 255;
/// Attempts to lock the file at the part path when another run keeps renaming
/// or removing it under us (it finished, or gave up on an empty file).
const LOCK_TRIES: usize = 3;

/// The part file's name for a target named `name`: `.NAME.ftpssh.part`, or,
/// where that passes `NAME_MAX`, `.PREFIX~HASH.ftpssh.part` with as much of
/// the name as fits (whole characters) and a 64-bit FNV-1a of the whole name.
pub fn part_name(name: &str) -> String {
    let plain = format!(".{name}{SUFFIX}");
    if plain.len() <= NAME_MAX {
        return plain;
    }
    let hash = format!("{:016x}", fnv1a64(name.as_bytes()));
    let room = NAME_MAX - ".~".len() - hash.len() - SUFFIX.len();
    let mut end = room.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}~{hash}{SUFFIX}", &name[..end])
}

/// A locked part file. Dropped uncommitted, it stays if it holds bytes (the
/// next run resumes) and is removed if it holds none.
pub struct PartFile {
    /// Where it is.
    pub path: PathBuf,
    file: Flock<File>,
    /// Renamed to its target: nothing left to remove.
    committed: bool,
}

impl PartFile {
    /// Open (or create) the part file for `target` and lock it.
    pub fn open(target: &Path) -> Result<PartFile> {
        let name = target.file_name().context("download target has no file name")?.to_string_lossy();
        let path = place::parent(target).join(part_name(&name));
        for _ in 0..LOCK_TRIES {
            let Some(file) = open_ours(&path)? else { continue };
            let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(f) => f,
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(classified(
                        Kind::Local,
                        format!("another run is downloading to {} (it holds the part file's lock)", path.display()),
                    ))
                }
                Err((_, e)) => return Err(anyhow::Error::new(e).context(format!("could not lock {}", path.display()))),
            };
            // Between our open and our lock another run may have renamed or
            // removed that file: lock only the file that is at the path now.
            let same = std::fs::symlink_metadata(&path).ok().map(|m| (m.dev(), m.ino()));
            let ours = file.metadata().ok().map(|m| (m.dev(), m.ino()));
            if same.is_some() && same == ours {
                return Ok(PartFile { path, file, committed: false });
            }
        }
        Err(classified(Kind::Local, format!("{} keeps changing under us (another run?)", path.display())))
    }

    /// A handle that writes at its end.
    pub fn append(&self) -> Result<File> {
        let mut file = self.file.try_clone().with_context(|| format!("could not open {}", self.path.display()))?;
        file.seek(SeekFrom::End(0)).with_context(|| format!("could not open {}", self.path.display()))?;
        Ok(file)
    }

    /// How many bytes it holds (read from the file system, so fallible: no `is_empty` to pair).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<u64> {
        Ok(self.file.metadata().with_context(|| format!("could not read {}", self.path.display()))?.len())
    }

    /// A handle for positioned writes (a segmented download's `write_at`).
    pub fn positioned(&self) -> Result<File> {
        self.file.try_clone().with_context(|| format!("could not open {}", self.path.display()))
    }

    /// Make it `len` bytes long (a segmented download gives it its final length at once).
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.file.set_len(len).with_context(|| format!("could not resize {}", self.path.display()))
    }

    /// Throw away what it holds (it cannot be resumed).
    pub fn restart(&self) -> Result<()> {
        self.file.set_len(0).with_context(|| format!("could not truncate {}", self.path.display()))
    }

    /// [`PartFile::open`], on a blocking thread (it creates, locks and reads a file).
    pub async fn open_off_thread(target: &Path) -> Result<PartFile> {
        let target = target.to_path_buf();
        tokio::task::spawn_blocking(move || PartFile::open(&target)).await?
    }

    /// [`PartFile::commit`], on a blocking thread (it renames).
    pub async fn commit_off_thread(self, target: &Path) -> Result<()> {
        let target = target.to_path_buf();
        tokio::task::spawn_blocking(move || self.commit(&target)).await?
    }

    /// Give it the server's modification time, before it takes its name:
    /// through our own descriptor, never through whatever is at a name.
    pub fn set_modified(&self, mtime: std::time::SystemTime) -> Result<()> {
        self.file.set_modified(mtime).with_context(|| format!("could not set the time of {}", self.path.display()))
    }

    /// Rename it to `target` (the lock goes with the file descriptor); never
    /// over another user's file or link in a shared directory
    /// ([`place::rename_into`]), and if refused, what arrived stays here.
    pub fn commit(mut self, target: &Path) -> Result<()> {
        place::rename_into(&self.path, target)
            .with_context(|| format!("the download stays in {}", self.path.display()))?;
        self.committed = true;
        Ok(())
    }
}

/// The part file at `path` if it is ours to resume, else a new one made in
/// its place; None when another run made one between our steps (try again).
/// Never through a link: in a shared directory another user may have planted
/// one, or a file of theirs, at the name we will use.
pub(crate) fn open_ours(path: &Path) -> Result<Option<File>> {
    // O_NONBLOCK: a FIFO planted there must not hang the open (no effect on a regular file).
    let flags = OFlag::O_NOFOLLOW.bits() | OFlag::O_NONBLOCK.bits();
    match OpenOptions::new().read(true).write(true).custom_flags(flags).open(path) {
        Ok(file) => {
            let meta = file.metadata().with_context(|| format!("could not read {}", path.display()))?;
            match untrusted(&meta, place::umask()) {
                None => Ok(Some(file)),
                Some(why) => {
                    drop(file);
                    remove(path, &why)?;
                    create(path)
                }
            }
        }
        Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => {
            remove(path, "a symbolic link")?;
            create(path)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => create(path),
        Err(e) => Err(e).with_context(|| format!("could not open {}", path.display())),
    }
}

/// Why an existing part file must not be resumed, if it must not: another
/// user could have written it, or could write it while we append.
fn untrusted(meta: &Metadata, umask: u32) -> Option<String> {
    // Group-writable only where the user's umask makes their files so (a private group).
    let writable = meta.mode() & 0o022 & !(0o020 & !umask);
    if !meta.is_file() {
        Some("not a regular file".into())
    } else if meta.uid() != nix::unistd::geteuid().as_raw() {
        Some(format!("owned by uid {}", meta.uid()))
    } else if meta.nlink() != 1 {
        Some(format!("a file with {} names (a hard link to another file?)", meta.nlink()))
    } else if writable != 0 {
        Some(format!(
            "writable by {} (mode {:o})",
            if writable & 0o002 != 0 { "others" } else { "its group" },
            meta.mode() & 0o7777
        ))
    } else {
        None
    }
}

/// Take away what is at `path` (`why`: it is not ours to resume); an error
/// naming it, with nothing touched, where we may not (another user's file in
/// a sticky directory).
fn remove(path: &Path, why: &str) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::warn!("{} was {why}: removed, the download starts over", path.display());
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(classified(
            Kind::Local,
            format!(
                "{} is {why}, so it is not resumed, and it cannot be removed ({e}): remove it, or download elsewhere",
                path.display()
            ),
        )),
    }
}

/// A new part file, with `O_EXCL` (nothing at the name is ever opened) and
/// the user's umask; None if something took the name since we looked.
fn create(path: &Path) -> Result<Option<File>> {
    let new =
        OpenOptions::new().read(true).write(true).create_new(true).custom_flags(OFlag::O_NOFOLLOW.bits()).open(path);
    match new {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not create {}", path.display())),
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        // Removed while still locked, so no other run can be writing it.
        if !self.committed && self.file.metadata().map(|m| m.len() == 0).unwrap_or(false) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// FNV-1a, 64 bits: stable across Rust releases, unlike `DefaultHasher`, so
/// runs built by different compilers agree on the file name.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }
    use std::io::Write;

    #[test]
    fn part_names_fit_any_valid_name() {
        assert_eq!(part_name("a.bin"), ".a.bin.ftpssh.part");
        let longest_plain = "x".repeat(NAME_MAX - 1 - SUFFIX.len());
        assert_eq!(part_name(&longest_plain), format!(".{longest_plain}{SUFFIX}"));
        for name in ["y".repeat(254), "y".repeat(255), "é".repeat(127), format!("{}✓", "z".repeat(240))] {
            let part = part_name(&name);
            assert!(part.len() <= NAME_MAX, "{} bytes", part.len());
            assert!(part.starts_with(&format!(".{}", &name[..8])) && part.ends_with(SUFFIX));
        }
        // Two long names that share their beginning get different part files.
        let (a, b) = (format!("{}a", "q".repeat(250)), format!("{}b", "q".repeat(250)));
        assert_ne!(part_name(&a), part_name(&b));
    }

    #[test]
    fn kept_when_it_holds_bytes_removed_when_empty_gone_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.bin");
        drop(PartFile::open(&target).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "an empty part file is removed");
        let part = PartFile::open(&target).unwrap();
        part.append().unwrap().write_all(b"half").unwrap();
        drop(part);
        let part = PartFile::open(&target).unwrap();
        assert_eq!(part.len().unwrap(), 4, "the next run finds what arrived");
        part.append().unwrap().write_all(b"+rest").unwrap();
        part.commit(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"half+rest");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no part file after success");
    }

    #[test]
    fn two_runs_cannot_write_one_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.bin");
        let first = PartFile::open(&target).unwrap();
        let second = PartFile::open(&target).err().expect("the second is refused");
        assert!(format!("{second:#}").contains("another run"), "{second:#}");
        assert_eq!(crate::error::kind(&second), Some(Kind::Local));
        drop(first);
        assert!(PartFile::open(&target).is_ok());
    }

    #[test]
    fn a_planted_link_is_replaced_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (target, victim) = (dir.path().join("t.bin"), dir.path().join("victim"));
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(part_name("t.bin"))).unwrap();
        let part = PartFile::open(&target).unwrap();
        assert_eq!(part.len().unwrap(), 0, "a new file, not the link's");
        part.append().unwrap().write_all(b"download").unwrap();
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        part.commit(&target).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&target).unwrap(), b"download");
        assert!(!std::fs::symlink_metadata(&target).unwrap().is_symlink());
    }

    #[test]
    fn only_a_private_plain_file_of_ours_is_resumed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let mode = |m: u32| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
        let why = |umask: u32| untrusted(&std::fs::metadata(&file).unwrap(), umask);
        mode(0o644);
        assert_eq!(why(0o022), None);
        mode(0o664);
        assert!(why(0o022).unwrap().contains("writable by its group"));
        assert_eq!(why(0o002), None, "a umask that makes the user's files group-writable");
        mode(0o666);
        assert!(why(0o002).unwrap().contains("writable by others"));
        mode(0o600);
        std::fs::hard_link(&file, dir.path().join("g")).unwrap();
        assert!(why(0o022).unwrap().contains("2 names"));
        assert!(untrusted(&std::fs::metadata(dir.path()).unwrap(), 0o022).unwrap().contains("not a regular file"));
        // A file we may not trust, replaced: what the user sees is a new, empty part file.
        mode(0o666);
        std::fs::remove_file(dir.path().join("g")).unwrap();
        std::fs::rename(&file, dir.path().join(part_name("t.bin"))).unwrap();
        let part = PartFile::open(&dir.path().join("t.bin")).unwrap();
        assert_eq!(part.len().unwrap(), 0);
    }

    #[test]
    fn restart_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let part = PartFile::open(&dir.path().join("t.bin")).unwrap();
        part.append().unwrap().write_all(b"stale").unwrap();
        part.restart().unwrap();
        assert_eq!(part.len().unwrap(), 0);
    }
}
