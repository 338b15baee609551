//! The bulk commands' plumbing: turning `mget` globs, `mput` files and a
//! batch file into [`Item`]s, the lock, the report, the summary line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{remote_target, until_interrupted, Cli, Cmd};
use crate::error::{classified, Kind};
use crate::interrupt::{Interrupted, Watch};
use crate::jobs::batch::{self, Op};
use crate::jobs::lock;
use crate::jobs::report::Report;
use crate::jobs::{self, Item, Plan};
use crate::link::Link;
use crate::ssh::Session;
use crate::transfer;

/// Run a bulk command (mget, mput, batch); returns the exit code.
pub(super) async fn run(cli: &Cli, plan: Plan, interrupt: &Watch) -> Result<i32> {
    let args = &cli.bulk;
    let report_file = match args.report.as_slice() {
        [] => None,
        [format, file] if format == "json" => Some(PathBuf::from(file)),
        other => return Err(classified(Kind::Usage, format!("--report takes `json FILE`, not {other:?}"))),
    };
    // Two cron runs of the same batch must not overlap.
    let _lock = match &cli.command {
        Cmd::Batch { file } => {
            let path = std::fs::canonicalize(file).map_err(|e| batch_file_error(file, e))?;
            let t = &plan.target;
            Some(lock::acquire(&format!("{}|{}@{}:{}|{:?}", path.display(), t.user, t.host, t.port, plan.spec.ftp))?)
        }
        _ => None,
    };
    let items = match &cli.command {
        Cmd::Mget { .. } => vec![], // listed below, on the session that will fetch them
        Cmd::Mput { files, dir } => {
            let dir = dir.as_deref().map(|d| if d.ends_with('/') { d.to_string() } else { format!("{d}/") });
            let put = |f: &PathBuf| -> Result<Item> {
                let target = remote_target(f, dir.as_deref())?;
                Ok(Item { op: Op::Put, source: f.to_string_lossy().into_owned(), target, line: None })
            };
            files.iter().map(put).collect::<Result<_>>()?
        }
        Cmd::Batch { file } => batch_items(file)?,
        _ => unreachable!("many::run is only called for bulk commands"),
    };
    let opts = jobs::Options {
        jobs: usize::from(args.jobs),
        pace: args.pace,
        continue_on_error: args.continue_on_error,
        retries: args.retries,
    };
    // The report file is written as the run goes: memory stays flat for any number of items.
    let report = match &report_file {
        Some(file) => Report::streaming(file)?,
        None => Report::new(),
    };
    let (mut report, first_failure) = match &cli.command {
        Cmd::Mget { globs, dir } => {
            let session = until_interrupted(interrupt, Session::connect(&plan.target, plan.events.clone())).await?;
            let listing = async {
                let mut link = Link::open(&session, &plan.spec).await?;
                let items = expand_mget(&mut link, globs, dir.as_deref()).await?;
                Ok::<_, anyhow::Error>((link, items))
            };
            let listed = match until_interrupted(interrupt, listing).await {
                Ok((link, items)) => {
                    Ok(jobs::run(plan.clone(), items, opts, Some((&session, link)), interrupt, report).await)
                }
                Err(e) if crate::error::find::<Interrupted>(&e).is_some() => Err(e),
                Err(e) => Err(session.attribute(e).await),
            };
            session.close().await;
            listed?
        }
        _ => jobs::run(plan, items, opts, None, interrupt, report).await,
    };
    report.finish()?;
    if !cli.quiet {
        eprintln!("{}", report.summary_line());
    }
    if let Some(signal) = interrupt.received() {
        eprintln!("ftpssh-fullsecure: interrupted by {}", signal.name());
        return Ok(signal.exit_code());
    }
    Ok(report.exit_code(first_failure))
}

/// The remote files the globs name, each with its local path in `dir`.
async fn expand_mget(link: &mut Link<'_>, globs: &[String], dir: Option<&Path>) -> Result<Vec<Item>> {
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let mut items = Vec::new();
    for glob in globs {
        let (remote_dir, _) = batch::split_glob(glob);
        let names = transfer::names(link, remote_dir).await?;
        let matches = batch::glob_matches(glob, &names)?;
        if matches.is_empty() {
            return Err(classified(Kind::FtpRefused, format!("no remote file matches {glob:?}")));
        }
        for remote in matches {
            let target = dir.join(transfer::safe_base_name(&remote)?);
            items.push(Item { op: Op::Get, source: remote, target: target.to_string_lossy().into_owned(), line: None });
        }
    }
    Ok(items)
}

/// A batch file named on the command line that cannot be read is a usage error (2).
fn batch_file_error(file: &Path, e: std::io::Error) -> anyhow::Error {
    classified(Kind::Usage, format!("could not read the batch file {}: {e}", file.display()))
}

/// The transfers of a batch file, with their targets filled in.
fn batch_items(file: &Path) -> Result<Vec<Item>> {
    let text = std::fs::read_to_string(file).map_err(|e| batch_file_error(file, e))?;
    let to_item = |job: batch::Job| -> Result<Item> {
        let target = match job.op {
            Op::Get => transfer::local_target(&job.source, job.target.as_deref().map(Path::new))?
                .to_string_lossy()
                .into_owned(),
            Op::Put => remote_target(Path::new(&job.source), job.target.as_deref())?,
        };
        Ok(Item { op: job.op, source: job.source, target, line: Some(job.line) })
    };
    batch::parse(&text)?.into_iter().map(to_item).collect()
}
