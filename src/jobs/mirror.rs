//! `mirror`: which files to copy, and which to delete, from the source's and
//! the target's listings, as lftp's `mirror` and rclone's `copy` judge it:
//! by size and modification time. A pure function, so the judgement is
//! tested apart from any server.
//!
//! - A download sets each copy's time to the server's, so a later run sees
//!   equal times: copy when the target is missing, or its size or its time
//!   (to the second) differs.
//! - An upload cannot set the server's time (the server stamps its copy
//!   when it is made): copy when the target is missing, its size differs,
//!   or the source is newer than it.
//!
//! The whole tree below the directory is mirrored, each file named by its
//! path below it (`sub/name`); links are not followed, and empty
//! directories are not made.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// A plain file in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Its name in the directory.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// When it was last modified, where known.
    pub modified: Option<SystemTime>,
}

/// Which way the copies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Remote to local (`mirror`).
    Down,
    /// Local to remote (`mirror --reverse`).
    Up,
}

/// What a mirror run does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Source names to copy, each with why.
    pub copy: Vec<(String, &'static str)>,
    /// Target names the source does not have (only with `--delete`).
    pub delete: Vec<String>,
    /// Source files the target already has.
    pub unchanged: usize,
}

/// What to copy from `source` to `target`, and with `delete`, what to remove from `target`.
pub fn plan(source: &[File], target: &[File], direction: Direction, delete: bool) -> Plan {
    plan_by(source, target, direction, delete, true)
}

/// [`plan`], judged by time alone unless `sizes`: a text file copied in
/// ASCII (`--ascii`) has the other side's line endings, hence its own size.
pub fn plan_by(source: &[File], target: &[File], direction: Direction, delete: bool, sizes: bool) -> Plan {
    let mut plan = Plan::default();
    for file in source {
        let why = match target.iter().find(|t| t.name == file.name) {
            None => Some("new"),
            Some(t) if sizes && t.size != file.size => Some("size differs"),
            Some(t) => match (direction, seconds(file.modified), seconds(t.modified)) {
                (Direction::Down, Some(s), Some(t)) if s != t => Some("time differs"),
                (Direction::Up, Some(s), Some(t)) if s > t => Some("newer"),
                _ => None,
            },
        };
        match why {
            Some(why) => plan.copy.push((file.name.clone(), why)),
            None => plan.unchanged += 1,
        }
    }
    if delete {
        let extra = target.iter().filter(|t| !source.iter().any(|s| s.name == t.name));
        plan.delete = extra.map(|t| t.name.clone()).collect();
    }
    plan
}

/// With `--delete`, where the source's listing of some directories failed
/// (`unlisted`, paths below the mirrored one): nothing at or below them is
/// deleted from the target, since it may well still be at the source (rsync
/// likewise deletes nothing after an I/O error).
pub fn spare_unlisted(delete: &mut Vec<String>, unlisted: &[String]) {
    delete.retain(|name| !unlisted.iter().any(|dir| name == dir || name.starts_with(&format!("{dir}/"))));
}

/// Whole seconds since 1970: listings give seconds, file systems nanoseconds.
fn seconds(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs())
}

/// The plain files in local `dir` and below, without our own part files
/// (`.NAME.ftpssh.part`) and names that are not UTF-8 (said, and skipped).
pub fn local_files(dir: &Path) -> Result<Vec<File>> {
    let mut files = Vec::new();
    let mut pending = vec![(String::new(), 0)];
    while let Some((below, depth)) = pending.pop() {
        let here = if below.is_empty() { dir.to_path_buf() } else { dir.join(&below) };
        let entries = std::fs::read_dir(&here).with_context(|| format!("could not list {}", here.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("could not list {}", here.display()))?;
            // Not followed: a link is neither a file nor a directory here.
            let meta = entry.metadata()?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!("skipping {}: not a UTF-8 name", entry.path().display());
                continue;
            };
            let name = if below.is_empty() { name } else { format!("{below}/{name}") };
            if meta.is_dir() && depth < MAX_DEPTH {
                pending.push((name, depth + 1));
            } else if meta.is_file() && !is_part_file(&name) {
                files.push(File { name, size: meta.len(), modified: meta.modified().ok() });
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// How deep a mirror goes below the directory it is given.
const MAX_DEPTH: usize = 16;

/// Our own part files (`.NAME.ftpssh.part`), wherever in the tree.
fn is_part_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with('.') && name.ends_with(".ftpssh.part")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn file(name: &str, size: u64, secs: u64) -> File {
        File { name: name.into(), size, modified: Some(UNIX_EPOCH + Duration::from_secs(secs)) }
    }

    #[test]
    fn nothing_below_an_unlisted_directory_is_deleted() {
        let remote = [file("top.txt", 1, 1)];
        let local = [file("top.txt", 1, 1), file("old.txt", 1, 1), file("sub/a.txt", 1, 1), file("subway.txt", 1, 1)];
        let mut p = plan(&remote, &local, Direction::Down, true);
        assert_eq!(p.delete, ["old.txt", "sub/a.txt", "subway.txt"]);
        spare_unlisted(&mut p.delete, &["sub".to_string()]);
        assert_eq!(p.delete, ["old.txt", "subway.txt"]);
    }

    #[test]
    fn download_copies_new_and_changed_only() {
        let remote = [file("a", 1, 100), file("b", 2, 200), file("c", 3, 300), file("d", 4, 400)];
        let mut local = vec![file("a", 1, 100), file("b", 5, 200), file("c", 3, 299), file("old", 1, 1)];
        // Sub-second parts do not count: listings give whole seconds.
        local[0].modified = Some(UNIX_EPOCH + Duration::from_millis(100_700));
        let p = plan(&remote, &local, Direction::Down, false);
        assert_eq!(p.copy, [("b".into(), "size differs"), ("c".into(), "time differs"), ("d".into(), "new")]);
        assert_eq!((p.unchanged, p.delete.len()), (1, 0));
        assert_eq!(plan(&remote, &local, Direction::Down, true).delete, ["old"]);
        // In ASCII, times alone.
        let p = plan_by(&remote, &local, Direction::Down, false, false);
        assert_eq!(p.copy, [("c".into(), "time differs"), ("d".into(), "new")]);
        // A second run after the copies: nothing.
        let p = plan(&remote, &remote, Direction::Down, true);
        assert_eq!(p, Plan { copy: vec![], delete: vec![], unchanged: 4 });
    }

    #[test]
    fn upload_copies_what_is_newer_than_the_servers_copy() {
        let local = [file("a", 1, 100), file("b", 1, 500), file("c", 1, 100)];
        // The server stamped its copies when they were made, after the local times.
        let remote = [file("a", 1, 150), file("b", 1, 150), file("x", 1, 150)];
        let p = plan(&local, &remote, Direction::Up, true);
        assert_eq!(p.copy, [("b".into(), "newer"), ("c".into(), "new")]);
        assert_eq!((p.unchanged, p.delete), (1, vec!["x".to_string()]));
        // Without times, sizes decide.
        let untimed = [File { name: "a".into(), size: 1, modified: None }];
        assert_eq!(plan(&untimed, &remote, Direction::Down, false).unchanged, 1);
    }

    #[test]
    fn local_listing_skips_part_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"abc").unwrap();
        std::fs::write(dir.path().join(".a.txt.ftpssh.part"), b"ab").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let names: Vec<_> = local_files(dir.path()).unwrap().into_iter().map(|f| (f.name, f.size)).collect();
        assert_eq!(names, [(".hidden".to_string(), 0), ("a.txt".to_string(), 3)]);
    }

    #[test]
    fn local_listing_goes_down_the_tree_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(dir.path().join("sub/b.txt"), b"b").unwrap();
        std::fs::write(dir.path().join("sub/.b.txt.ftpssh.part"), b"").unwrap();
        std::fs::write(dir.path().join("sub/deeper/c.txt"), b"cc").unwrap();
        std::os::unix::fs::symlink(dir.path().join("sub"), dir.path().join("loop")).unwrap();
        let names: Vec<_> = local_files(dir.path()).unwrap().into_iter().map(|f| (f.name, f.size)).collect();
        assert_eq!(names, [("sub/b.txt".to_string(), 1), ("sub/deeper/c.txt".to_string(), 2)]);
    }
}
