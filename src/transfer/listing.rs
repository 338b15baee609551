//! A remote directory tree's plain files with their sizes and modification
//! times, for `mirror`: one MLSD per directory where FEAT lists MLST
//! (ProFTPD), else NLST and then SIZE and MDTM for each name (inetutils
//! ftpd); a name SIZE refuses is not a plain file (inetutils: `550 many: not
//! a plain file.`) and is listed in its turn as a directory.
//!
//! The server is trusted for nothing but names and facts: a name must be a
//! plain name inside the directory asked for.

use anyhow::Result;

use crate::ftp::control::FtpError;
use crate::ftp::facts::{self, Entry};
use crate::ftp::Command;
use crate::link::Link;
use crate::transfer::{names, read_listing, remote_size};

/// How deep `mirror` goes below the directory it is given, and how many
/// files it takes in all: a hostile server could list without end.
const MAX_DEPTH: usize = 16;
const MAX_FILES: usize = 1_000_000;

/// A subdirectory the server would not list (a 550): left out of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlisted {
    /// Its path below the directory asked for (`sub`, `sub/deeper`).
    pub below: String,
    /// The server's refusal, on one line.
    pub error: String,
}

/// The plain files in `dir` and its subdirectories (`.` for the login
/// directory), each named by its path below `dir` (`sub/name`), and the
/// subdirectories the server would not list.
pub async fn files(link: &mut Link<'_>, dir: &str) -> Result<(Vec<Entry>, Vec<Unlisted>)> {
    let (mut found, mut unlisted) = (Vec::new(), Vec::new());
    let mut pending = vec![(String::new(), 0)];
    while let Some((below, depth)) = pending.pop() {
        let here = if below.is_empty() { dir.to_string() } else { join(dir, &below) };
        let (files, dirs) = match one_directory(link, &here).await {
            Ok(both) => both,
            // A subdirectory we may not list is left out (the caller says so); the directory asked for is not.
            Err(e) if depth > 0 && crate::error::find::<FtpError>(&e).is_some() => {
                unlisted.push(Unlisted { below, error: format!("{e:#}") });
                continue;
            }
            Err(e) => return Err(e),
        };
        found.extend(files.into_iter().map(|f| Entry { name: relative(&below, &f.name), ..f }));
        if found.len() > MAX_FILES {
            anyhow::bail!(crate::error::classified(
                crate::error::Kind::FtpRefused,
                format!("{dir} lists more than {MAX_FILES} files")
            ));
        }
        if depth < MAX_DEPTH {
            pending.extend(dirs.iter().map(|d| (relative(&below, d), depth + 1)));
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found.dedup_by(|a, b| a.name == b.name);
    Ok((found, unlisted))
}

/// `below/name`, or `name` at the top.
fn relative(below: &str, name: &str) -> String {
    if below.is_empty() {
        name.to_string()
    } else {
        format!("{below}/{name}")
    }
}

/// The plain files directly in `dir`, and the names of its subdirectories.
async fn one_directory(link: &mut Link<'_>, dir: &str) -> Result<(Vec<Entry>, Vec<String>)> {
    if link.features().await?.has("MLST") {
        let raw = read_listing(link, Command::Mlsd(Some(dir.to_string()))).await?;
        let entries = facts::parse_mlsd(&String::from_utf8_lossy(&raw));
        let entries = entries.into_iter().filter(|e| plain(&e.name, dir).is_some());
        let (dirs, files): (Vec<Entry>, Vec<Entry>) = entries.partition(|e| e.is_dir);
        let files = files.into_iter().filter(|e| e.is_file && e.size.is_some()).collect();
        return Ok((files, dirs.into_iter().map(|d| d.name).collect()));
    }
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for name in names(link, Some(dir)).await? {
        let Some(name) = plain(&name, dir).map(str::to_string) else { continue };
        let path = join(dir, &name);
        // SIZE refuses what is not a plain file: taken for a directory, listed in its turn.
        let Some(size) = remote_size(link, &path).await? else {
            dirs.push(name);
            continue;
        };
        let mdtm = link.control.command(&Command::Mdtm(path)).await?;
        let modified = (mdtm.code == 213).then(|| facts::parse_mdtm(&mdtm.text())).flatten();
        files.push(Entry { name, is_file: true, is_dir: false, size: Some(size), modified });
    }
    Ok((files, dirs))
}

/// `dir/name`, or `name` in the login directory.
pub fn join(dir: &str, name: &str) -> String {
    match dir.trim_end_matches('/') {
        "" if dir.starts_with('/') => format!("/{name}"),
        "" | "." => name.to_string(),
        d => format!("{d}/{name}"),
    }
}

/// `name` as a plain name in `dir` (NLST may answer `dir/name`), or None
/// for anything that could point elsewhere.
fn plain<'a>(name: &'a str, dir: &str) -> Option<&'a str> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let name = name.strip_prefix(prefix.as_str()).unwrap_or(name);
    let bad =
        name.is_empty() || name == "." || name == ".." || name.contains('/') || name.chars().any(char::is_control);
    (!bad).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside() {
        assert_eq!(plain("many/f001.txt", "many"), Some("f001.txt"));
        assert_eq!(plain("f001.txt", "many/"), Some("f001.txt"));
        for bad in ["..", ".", "", "other/x", "many/../x", "a\nb"] {
            assert_eq!(plain(bad, "many"), None, "{bad:?}");
        }
        assert_eq!(join("many/", "a b"), "many/a b");
        assert_eq!(join(".", "a"), "a");
        assert_eq!(join("/", "a"), "/a");
    }
}
