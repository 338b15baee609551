//! A lock held for the life of a batch run, so that two runs of the same batch
//! (say, a cron job slower than its period) never overlap.
//!
//! The lock is a `flock` on `$XDG_RUNTIME_DIR/ftpssh-fullsecure/<hash>.lock`
//! (else `$TMPDIR/ftpssh-fullsecure-<uid>/<hash>.lock`). The kernel releases it
//! when the file is closed, even if we crash, so there is no stale lock to
//! clean up, and the file is never deleted: a runner that opened it just
//! before a delete would lock an orphan while a third locks a new file.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held lock; dropping it releases the lock.
pub struct Lock {
    _file: Flock<File>,
}

/// Take the lock for `key` (e.g. the canonical batch file path plus the SSH and
/// FTP targets), or fail at once if another run holds it.
pub fn acquire(key: &str) -> Result<Lock> {
    let uid = nix::unistd::getuid().as_raw();
    acquire_in(&lock_dir(std::env::var_os("XDG_RUNTIME_DIR"), uid), key)
}

fn lock_dir(xdg_runtime_dir: Option<OsString>, uid: u32) -> PathBuf {
    match xdg_runtime_dir.filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("ftpssh-fullsecure"),
        None => std::env::temp_dir().join(format!("ftpssh-fullsecure-{uid}")),
    }
}

/// The lock file of `key` in `dir`.
fn lock_file(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{:016x}.lock", crate::transfer::part::fnv1a64(key.as_bytes())))
}

/// [`acquire`] with the lock file in `dir` (created 0700 if missing).
pub fn acquire_in(dir: &Path, key: &str) -> Result<Lock> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("could not create the lock directory {}", dir.display()))?;
    // In a shared /tmp someone else may have made the directory first, to
    // hold our lock or swap the file; refuse anything not private to us.
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("could not stat {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != nix::unistd::getuid().as_raw() || meta.mode() & 0o022 != 0 {
        bail!("the lock directory {} is not a directory private to this user", dir.display());
    }
    let path = lock_file(dir, key);
    // No truncate on open: the file may hold the current holder's pid.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("could not open the lock file {}", path.display()))?;
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let pid = if pid.is_empty() { "unknown" } else { pid };
            bail!("another run holds the lock {} (pid {pid})", path.display());
        }
        Err((_, e)) => bail!("could not lock {}: {e}", path.display()),
    };
    // Overwrite in place, then trim: a reader never sees an empty file.
    let pid = format!("{}\n", std::process::id());
    file.write_all_at(pid.as_bytes(), 0)
        .and_then(|()| file.set_len(pid.len() as u64))
        .with_context(|| format!("could not write our pid into {}", path.display()))?;
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_dir_prefers_xdg_runtime_dir() {
        assert_eq!(lock_dir(Some("/run/user/1000".into()), 1000), Path::new("/run/user/1000/ftpssh-fullsecure"));
        assert_eq!(lock_dir(Some("".into()), 7), std::env::temp_dir().join("ftpssh-fullsecure-7"));
        assert_eq!(lock_dir(None, 7), std::env::temp_dir().join("ftpssh-fullsecure-7"));
    }

    #[test]
    fn second_holder_is_refused_until_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("locks");
        let first = acquire_in(&dir, "batch.txt ssh ftp").unwrap();
        let (first_path, other_path) = (lock_file(&dir, "batch.txt ssh ftp"), lock_file(&dir, "other.txt ssh ftp"));
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_to_string(&first_path).unwrap(), format!("{}\n", std::process::id()));
        // flock locks belong to the open file description, so a second open in
        // this same process conflicts just as another process would.
        let err = acquire_in(&dir, "batch.txt ssh ftp").err().unwrap().to_string();
        let expected = format!("another run holds the lock {} (pid {})", first_path.display(), std::process::id());
        assert_eq!(err, expected);
        let _other = acquire_in(&dir, "other.txt ssh ftp").unwrap();
        assert_ne!(other_path, first_path);
        assert!(other_path.exists(), "the other key's lock is its own file");
        drop(first);
        std::fs::write(&first_path, "stale\n").unwrap();
        let _again = acquire_in(&dir, "batch.txt ssh ftp").unwrap();
        let pid = format!("{}\n", std::process::id());
        assert_eq!(std::fs::read_to_string(&first_path).unwrap(), pid, "the same lock file again");
    }
}
