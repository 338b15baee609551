//! What a bulk run will do once listed ([`Work`]), and `mirror`'s listing
//! of both sides turned into work ([`mirror()`]; [`crate::jobs::mirror`] judges).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::{classified, Kind};
use crate::ftp::control::FtpError;
use crate::ftp::shown::shown;
use crate::ftp::Command;
use crate::jobs::batch::Op;
use crate::jobs::mirror::{self, Direction, File};
use crate::jobs::shard::Shard;
use crate::jobs::Item;
use crate::link::Link;
use crate::transfer::listing;

/// A file `mirror --delete` removes from the target.
pub(super) enum Deletion {
    /// A local file (a download's target directory).
    Local(PathBuf),
    /// A remote file (an upload's, with `--reverse`).
    Remote(String),
}

impl Deletion {
    fn name(&self) -> String {
        match self {
            Deletion::Local(p) => p.to_string_lossy().into_owned(),
            Deletion::Remote(r) => r.clone(),
        }
    }

    /// Its name as printed: the server chose it (or the one a local one mirrors), so its
    /// control characters are escaped ([`shown`]).
    fn shown_name(&self) -> String {
        shown(&self.name()).into_owned()
    }
}

/// What a bulk run will do.
pub(super) struct Work {
    /// The transfers.
    pub items: Vec<Item>,
    /// What `mirror --delete` removes (before the transfers).
    pub delete: Vec<Deletion>,
    /// For mirror: the source files the target already has.
    pub unchanged: Option<usize>,
    /// The local directory downloads go to, made when the run is for real.
    pub mkdir: Option<PathBuf>,
    /// Remote directories uploads go into (below the mirrored one), made first, parents first.
    pub remote_dirs: Vec<String>,
    /// For mirror: remote directories the server would not list (left out; nothing below them deleted).
    pub unlisted: Vec<String>,
}

impl Work {
    /// Just these transfers.
    pub fn of(items: Vec<Item>) -> Work {
        Work { items, delete: vec![], unchanged: None, mkdir: None, remote_dirs: vec![], unlisted: vec![] }
    }

    /// Keep only `shard`'s slice, by each transfer's source name.
    pub fn shard(&mut self, shard: Option<Shard>) {
        if let Some(shard) = shard {
            self.items.retain(|i| shard.takes(&i.source));
            self.delete.retain(|d| shard.takes(&d.name()));
        }
    }

    /// Make the target directory, delete what `--delete` removes, and say
    /// what mirror found up to date: the steps before the transfers.
    pub async fn prepare(&self, link: &mut Link<'_>, quiet: bool) -> Result<()> {
        if let Some(dir) = &self.mkdir {
            std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
        }
        // Downloads below the top: their directories (the part file is made beside the target),
        // each once, not once per file.
        let parents: std::collections::BTreeSet<&Path> = (self.items.iter().filter(|i| i.op == Op::Get))
            .filter_map(|i| Path::new(&i.target).parent().filter(|p| !p.as_os_str().is_empty()))
            .collect();
        for parent in parents {
            std::fs::create_dir_all(parent).with_context(|| format!("could not create {}", parent.display()))?;
        }
        for dir in &self.remote_dirs {
            // One that exists already is refused (550): the upload into it says whether it works.
            link.control.command(&Command::Mkd(dir.clone())).await?;
        }
        for deletion in &self.delete {
            match deletion {
                Deletion::Local(path) => {
                    std::fs::remove_file(path).with_context(|| format!("could not delete {}", path.display()))?
                }
                Deletion::Remote(remote) => {
                    link.control.expect(&Command::Dele(remote.clone()), |r| r.is_completion()).await?;
                }
            }
            if !quiet {
                eprintln!("deleted {}", deletion.shown_name());
            }
        }
        match (self.unchanged, self.items.len()) {
            (Some(same), 0) if !quiet => eprintln!("mirror: nothing to transfer, {same} up to date"),
            (Some(same), n) if !quiet => eprintln!("mirror: {n} to transfer, {same} up to date"),
            _ => {}
        }
        Ok(())
    }

    /// `--dry-run`: one line per transfer and deletion on stdout.
    pub fn print_dry_run(&self, quiet: bool) {
        for item in &self.items {
            println!("{} {} -> {}", item.op.as_str(), shown(&item.source), shown(&item.target));
        }
        for deletion in &self.delete {
            println!("delete {}", deletion.shown_name());
        }
        if !quiet {
            let same = self.unchanged.map_or_else(String::new, |n| format!(", {n} up to date"));
            let (n, d) = (self.items.len(), self.delete.len());
            eprintln!("dry run: {n} to transfer, {d} to delete{same}; nothing transferred");
        }
    }
}

/// `mirror REMOTE [LOCAL]` (`--reverse`: LOCAL to REMOTE): list both, judge, make the work.
pub(super) async fn mirror(
    link: &mut Link<'_>,
    remote: &str,
    local: Option<&Path>,
    reverse: bool,
    delete: bool,
) -> Result<Work> {
    let dir = local.unwrap_or(Path::new(".")).to_path_buf();
    // An upload's target may be empty or missing (inetutils ftpd answers NLST of an empty
    // directory with 550 No files found): then it is made, and nothing is there yet.
    let (listed, unlisted, missing) = match listing::files(link, remote).await {
        Ok((listed, unlisted)) => (listed, unlisted, false),
        Err(e) if reverse && crate::error::find::<FtpError>(&e).is_some_and(|f| f.reply.code == 550) => {
            (vec![], vec![], true)
        }
        Err(e) => return Err(e),
    };
    let remote_files: Vec<File> =
        listed.into_iter().map(|e| File { name: e.name, size: e.size.unwrap_or(0), modified: e.modified }).collect();
    let local_files = match (dir.is_dir(), reverse) {
        (true, _) => mirror::local_files(&dir)?,
        (false, false) => vec![],
        (false, true) => return Err(classified(Kind::Usage, format!("{} is not a directory", dir.display()))),
    };
    let (source, target, direction) = match reverse {
        false => (&remote_files, &local_files, Direction::Down),
        true => (&local_files, &remote_files, Direction::Up),
    };
    // In ASCII the two sides' sizes differ by their line endings: times judge alone.
    let by_size = !link.spec().login.ascii;
    let mut plan = mirror::plan_by(source, target, direction, delete, by_size);
    if direction == Direction::Down {
        mirror::spare_unlisted(&mut plan.delete, &unlisted.iter().map(|u| u.below.clone()).collect::<Vec<_>>());
    }
    let spared = if delete && direction == Direction::Down { ", and nothing below it is deleted" } else { "" };
    for u in &unlisted {
        tracing::warn!("mirror: could not list {}: left out{spared} ({})", listing::join(remote, &u.below), u.error);
    }
    let mut items = Vec::new();
    for (name, why) in plan.copy {
        tracing::info!("mirror: {name}: {why}");
        let remote_path = listing::join(remote, &name);
        let local_path = dir.join(&name).to_string_lossy().into_owned();
        items.push(match direction {
            Direction::Down => {
                let mtime = remote_files.iter().find(|f| f.name == name).and_then(|f| f.modified);
                Item { op: Op::Get, source: remote_path, target: local_path, line: None, mtime }
            }
            Direction::Up => Item { op: Op::Put, source: local_path, target: remote_path, line: None, mtime: None },
        });
    }
    let delete = plan.delete.iter().map(|name| match direction {
        Direction::Down => Deletion::Local(dir.join(name)),
        Direction::Up => Deletion::Remote(listing::join(remote, name)),
    });
    let mkdir = (direction == Direction::Down).then_some(dir.clone());
    let remote_dirs = match direction {
        Direction::Down => vec![],
        Direction::Up => {
            let top = missing.then(|| remote.to_string());
            top.into_iter().chain(remote_parents(&items, remote, &remote_files)).collect()
        }
    };
    let unlisted = unlisted.iter().map(|u| listing::join(remote, &u.below)).collect();
    Ok(Work { items, delete: delete.collect(), unchanged: Some(plan.unchanged), mkdir, remote_dirs, unlisted })
}

/// The remote directories below `remote` that uploads go into and the server's listing does
/// not show a file in, parents before children.
fn remote_parents(items: &[Item], remote: &str, listed: &[File]) -> Vec<String> {
    let mut dirs = std::collections::BTreeSet::new();
    for item in items {
        let below = item.target.strip_prefix(&listing::join(remote, "")).unwrap_or(&item.target);
        let mut at = 0;
        while let Some(slash) = below[at..].find('/') {
            at += slash + 1;
            let dir = &below[..at - 1];
            if !listed.iter().any(|f| f.name.starts_with(&format!("{dir}/"))) {
                dirs.insert(listing::join(remote, dir));
            }
        }
    }
    dirs.into_iter().collect() // sorted: a parent comes before its children
}
