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
//! A remote name may be up to NAME_MAX (255 bytes) long, and the part file's
//! name adds 14; where the plain part name would not fit, it keeps the
//! beginning of the name and adds a hash of the whole name.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{classified, Kind};

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
        let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = target.file_name().context("download target has no file name")?.to_string_lossy();
        let path = dir.join(part_name(&name));
        for _ in 0..LOCK_TRIES {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("could not create {}", path.display()))?;
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
            let same = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
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

    /// How many bytes it holds.
    pub fn len(&self) -> Result<u64> {
        Ok(self.file.metadata().with_context(|| format!("could not read {}", self.path.display()))?.len())
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

    /// Rename it to `target` (the lock goes with the file descriptor).
    pub fn commit(mut self, target: &Path) -> Result<()> {
        std::fs::rename(&self.path, target)
            .with_context(|| format!("could not rename {} to {}", self.path.display(), target.display()))?;
        self.committed = true;
        Ok(())
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
    fn restart_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let part = PartFile::open(&dir.path().join("t.bin")).unwrap();
        part.append().unwrap().write_all(b"stale").unwrap();
        part.restart().unwrap();
        assert_eq!(part.len().unwrap(), 0);
    }
}
