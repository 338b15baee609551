//! A remote directory's plain files with their sizes and modification
//! times, for `mirror`: one MLSD where FEAT lists MLST (ProFTPD), else NLST
//! and then SIZE and MDTM for each name (inetutils ftpd); a name SIZE
//! refuses is not a plain file (inetutils: `550 many: not a plain file.`).
//!
//! The server is trusted for nothing but names and facts: a name must be a
//! plain name inside the directory asked for.

use anyhow::Result;

use crate::ftp::facts::{self, Entry};
use crate::ftp::Command;
use crate::link::Link;
use crate::transfer::{names, read_listing, remote_size};

/// The plain files directly in `dir` (`.` for the login directory).
pub async fn files(link: &mut Link<'_>, dir: &str) -> Result<Vec<Entry>> {
    let mut found = if link.features().await?.has("MLST") {
        let raw = read_listing(link, Command::Mlsd(Some(dir.to_string()))).await?;
        let entries = facts::parse_mlsd(&String::from_utf8_lossy(&raw));
        entries.into_iter().filter(|e| e.is_file && e.size.is_some() && plain(&e.name, dir).is_some()).collect()
    } else {
        let mut entries = Vec::new();
        for name in names(link, Some(dir)).await? {
            let Some(name) = plain(&name, dir).map(str::to_string) else { continue };
            let path = join(dir, &name);
            let Some(size) = remote_size(link, &path).await? else { continue };
            let mdtm = link.control.command(&Command::Mdtm(path)).await?;
            let modified = (mdtm.code == 213).then(|| facts::parse_mdtm(&mdtm.text())).flatten();
            entries.push(Entry { name, is_file: true, size: Some(size), modified });
        }
        entries
    };
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found.dedup_by(|a, b| a.name == b.name);
    Ok(found)
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
