//! Putting a finished file at the name the user gave, where other users may
//! write too (a shared `/tmp`): it is written under a name nobody can guess
//! or plant in advance (created with `O_EXCL`), then renamed to its name.
//! rename(2) replaces a link at that name, it never writes through it. A name
//! another user holds in a sticky directory is refused rather than taken over:
//! they chose where the result would be, and could have planted it for us.

use std::fs::{File, Metadata, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use crate::error::{classified, Kind};

/// Tries when another user keeps planting the name between our look and our rename (or create).
const RENAME_TRIES: usize = 3;
/// The sticky bit of a directory's mode: only a file's owner may remove or replace it.
const STICKY: u32 = 0o1000;

/// The directory `path` is in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A new file beside `path`, `.NAME.XXXXXX.tmp` with random letters, made
/// with `O_EXCL` (a link planted at any name is never opened) and the
/// user's umask, as a plain create would. The caller renames or removes it.
pub fn temp_beside(path: &Path) -> Result<(File, PathBuf)> {
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(parent(path))
        .with_context(|| format!("could not create a file beside {}", path.display()))?;
    temp.keep().with_context(|| format!("could not create a file beside {}", path.display()))
}

/// Rename `from` to `to`, refusing a `to` that another user holds in a
/// sticky directory; where nothing is at `to`, nothing may appear there
/// between our look and the rename (`RENAME_NOREPLACE`).
pub fn rename_into(from: &Path, to: &Path) -> Result<()> {
    let failed = || format!("could not rename {} to {}", from.display(), to.display());
    for _ in 0..RENAME_TRIES {
        match std::fs::symlink_metadata(to) {
            Ok(there) => {
                refuse_theirs(to, &there)?;
                return std::fs::rename(from, to).with_context(failed);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
                    Ok(()) => return Ok(()),
                    Err(Errno::EEXIST) => continue, // made since we looked: look again
                    // A file system without RENAME_NOREPLACE: the look above is all we have.
                    Err(Errno::EINVAL | Errno::ENOSYS) => return std::fs::rename(from, to).with_context(failed),
                    Err(e) => return Err(anyhow::Error::new(e).context(failed())),
                }
            }
            Err(e) => return Err(anyhow::Error::new(e).context(failed())),
        }
    }
    Err(classified(Kind::Local, format!("{} keeps appearing under us (another user?)", to.display())))
}

/// Open `path` for writing from its start, as `File::create` does, for a
/// file written as it goes (`--events`), but never through another user's
/// link in a shared directory: a name nothing holds is made with `O_EXCL`,
/// one another user holds in a sticky directory is refused, and one of ours
/// (a link to `/dev/stderr`, a FIFO) is opened as it is.
pub fn create(path: &Path) -> Result<File> {
    let failed = || format!("could not create {}", path.display());
    for _ in 0..RENAME_TRIES {
        match std::fs::symlink_metadata(path) {
            Ok(there) => {
                refuse_theirs(path, &there)?;
                return File::create(path).with_context(failed);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match OpenOptions::new().write(true).create_new(true).open(path) {
                    Ok(file) => return Ok(file),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => continue, // made since we looked
                    Err(e) => return Err(e).with_context(failed),
                }
            }
            Err(e) => return Err(e).with_context(failed),
        }
    }
    Err(classified(Kind::Local, format!("{} keeps appearing under us (another user?)", path.display())))
}

/// An error if `there`, found at `to`, belongs to another user and sits in a
/// sticky directory (a shared one, where they may plant names).
pub fn refuse_theirs(to: &Path, there: &Metadata) -> Result<()> {
    let ours = there.uid() == nix::unistd::geteuid().as_raw();
    let dir = parent(to);
    if ours || !std::fs::metadata(dir).is_ok_and(|d| d.mode() & STICKY != 0) {
        return Ok(());
    }
    let what = if there.file_type().is_symlink() { "a symbolic link" } else { "a file" };
    Err(classified(
        Kind::Local,
        format!(
            "{} is {what} of uid {} in the shared directory {}: not replaced (remove it, or choose another name)",
            to.display(),
            there.uid(),
            dir.display()
        ),
    ))
}

/// The process's umask, from `/proc/self/status` (reading it with umask(2)
/// would change it for a moment, under the other threads' feet); 022 if unknown.
pub fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"));
    line.and_then(|v| u32::from_str_radix(v.trim(), 8).ok()).unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_are_unguessable_new_and_renamed_over_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("report.json");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        let (a, a_path) = temp_beside(&target).unwrap();
        let (_b, b_path) = temp_beside(&target).unwrap();
        assert_ne!(a_path, b_path);
        let name = a_path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".report.json.") && name.ends_with(".tmp"), "{name}");
        let mode = a.metadata().unwrap().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask(), "the umask, as a plain create");
        rename_into(&a_path, &target).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep", "the link was replaced, not followed");
        assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
    }

    #[test]
    fn create_makes_a_new_file_or_opens_our_own_link() {
        let dir = tempfile::tempdir().unwrap();
        let (events, ours) = (dir.path().join("events.jsonl"), dir.path().join("ours"));
        std::io::Write::write_all(&mut create(&events).unwrap(), b"new").unwrap();
        assert_eq!(std::fs::read(&events).unwrap(), b"new");
        std::fs::remove_file(&events).unwrap();
        std::os::unix::fs::symlink(&ours, &events).unwrap();
        std::io::Write::write_all(&mut create(&events).unwrap(), b"through our link").unwrap();
        assert_eq!(std::fs::read(&ours).unwrap(), b"through our link", "as --events /dev/stderr");
    }

    #[test]
    fn umask_is_read() {
        assert!(umask() <= 0o777);
    }
}
