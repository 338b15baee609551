//! The bulk commands' plumbing: turning `mget` globs, `mput` files, a
//! batch file and a `mirror`'s two listings into [`Item`]s, `--shard` and
//! `--dry-run`, the lock, the report, the summary line.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::args::{remote_target, Cli, Cmd};
use super::work::{self, Work};
use crate::error::{classified, Kind};
use crate::interrupt::until_interrupted;
use crate::interrupt::{Interrupted, Watch};
use crate::jobs::batch::{self, Op};
use crate::jobs::early::Early;
use crate::jobs::lock::{self, Lock};
use crate::jobs::report::Report;
use crate::jobs::{self, Item, Options, Plan};
use crate::link::Link;
use crate::ssh::Session;
use crate::transfer;

/// Run a bulk command (mget, mput, batch, mirror); returns the exit code.
pub(super) async fn run(cli: &Cli, plan: Plan, interrupt: &Watch) -> Result<i32> {
    let args = &cli.bulk;
    let report_file = match args.report.as_slice() {
        [] => None,
        [format, file] if format == "json" => Some(PathBuf::from(file)),
        other => return Err(classified(Kind::Usage, format!("--report takes `json FILE`, not {other:?}"))),
    };
    let _lock = lock_for(cli, &plan)?;
    let opts = Options {
        jobs: usize::from(args.jobs),
        pace: args.pace,
        continue_on_error: args.continue_on_error,
        retries: args.retries,
        segments: usize::from(cli.segments),
        ssh_connections: cli.ssh_connections.map(|m| m.min(cli.segments).into()),
        segment_threshold: cli.segment_threshold,
    };
    let ran = match &cli.command {
        Cmd::Mget { .. } | Cmd::Mirror { .. } => listed(cli, &plan, opts, interrupt, report_file.as_deref()).await?,
        _ => {
            let mut work = Work::of(local_items(cli)?);
            work.shard(args.shard);
            if args.dry_run {
                check_login(&plan, interrupt).await?;
                work.print_dry_run(cli.quiet);
                return Ok(0);
            }
            Some(jobs::run(plan, work.items, opts, None, None, interrupt, new_report(report_file.as_deref())?).await)
        }
    };
    let Some((report, first_failure)) = ran else { return Ok(0) }; // a dry run
    finish(cli, report, first_failure, interrupt)
}

/// The report file is written as the run goes: memory stays flat for any
/// number of items. Made only when the run is for real (not a dry run).
fn new_report(file: Option<&Path>) -> Result<Report> {
    match file {
        Some(file) => Report::streaming(file),
        None => Ok(Report::new()),
    }
}

/// Connect and log in, and leave: a dry run proves the way there too.
async fn check_login(plan: &Plan, interrupt: &Watch) -> Result<()> {
    let session = until_interrupted(interrupt, Session::connect(&plan.target, plan.events.clone())).await?;
    let checked = match Link::open(&session, &plan.spec).await {
        Ok(link) => {
            link.close().await;
            Ok(())
        }
        Err(e) => Err(session.attribute(e).await),
    };
    session.close().await;
    checked
}

/// Finish the report, say the summary, and the exit code.
fn finish(cli: &Cli, mut report: Report, first_failure: Option<i32>, interrupt: &Watch) -> Result<i32> {
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

/// Two cron runs of the same batch or mirror must not overlap (a shard of
/// it is another run: N shards may share a machine).
fn lock_for(cli: &Cli, plan: &Plan) -> Result<Option<Lock>> {
    let t = &plan.target;
    let whom = format!("{}@{}:{}|{:?}|{:?}", t.user, t.host, t.port, plan.spec.ftp, cli.bulk.shard);
    let key = match &cli.command {
        Cmd::Batch { file } => {
            let path = std::fs::canonicalize(file).map_err(|e| batch_file_error(file, e))?;
            format!("{}|{whom}", path.display())
        }
        Cmd::Mirror { remote, local, reverse, .. } => {
            let local = std::path::absolute(local.as_deref().unwrap_or(Path::new(".")))?;
            format!("mirror|{remote}|{}|{reverse}|{whom}", local.display())
        }
        _ => return Ok(None),
    };
    lock::acquire(&key).map(Some)
}

/// mget and mirror: list on a link of the session that will transfer, then
/// run the items (or, for `--dry-run`, print them). None for a dry run.
async fn listed(
    cli: &Cli,
    plan: &Plan,
    opts: Options,
    interrupt: &Watch,
    report_file: Option<&Path>,
) -> Result<Option<(Report, Option<i32>)>> {
    let session = until_interrupted(interrupt, Session::connect(&plan.target, plan.events.clone())).await?;
    let dry_run = cli.bulk.dry_run;
    // The other workers connect while this one lists.
    let mut early = (!dry_run && opts.jobs > 1).then(|| Early::start(plan, opts.jobs - 1));
    let listing = async {
        let mut link = Link::open(&session, &plan.spec).await?;
        if let Some(early) = &early {
            early.logged_in();
        }
        let mut work = match &cli.command {
            Cmd::Mget { globs, dir } => expand_mget(&mut link, globs, dir.as_deref()).await?,
            Cmd::Mirror { remote, local, reverse, delete } => {
                work::mirror(&mut link, remote, local.as_deref(), *reverse, *delete).await?
            }
            _ => unreachable!("only mget and mirror list first"),
        };
        work.shard(cli.bulk.shard);
        if !dry_run {
            work.prepare(&mut link, cli.quiet).await?;
        }
        Ok::<_, anyhow::Error>((link, work))
    };
    let listed = match until_interrupted(interrupt, listing).await {
        Ok((link, work)) if dry_run => {
            link.close().await;
            work.print_dry_run(cli.quiet);
            Ok(None)
        }
        Ok((link, work)) => match new_report(report_file) {
            Ok(mut report) => {
                report.left_out(work.unlisted);
                let first = Some((&session, link));
                Ok(Some(jobs::run(plan.clone(), work.items, opts, first, early.take(), interrupt, report).await))
            }
            Err(e) => {
                link.close().await;
                Err(e)
            }
        },
        Err(e) if crate::error::find::<Interrupted>(&e).is_some() => Err(e),
        Err(e) => Err(session.attribute(e).await),
    };
    if let Some(early) = early {
        early.stop().await; // no run took them
    }
    session.close().await;
    listed
}

/// The items of mput and batch, made without the server.
fn local_items(cli: &Cli) -> Result<Vec<Item>> {
    match &cli.command {
        Cmd::Mput { files, dir } => {
            let dir = dir.as_deref().map(|d| if d.ends_with('/') { d.to_string() } else { format!("{d}/") });
            let put = |f: &PathBuf| -> Result<Item> {
                let target = remote_target(f, dir.as_deref())?;
                Ok(Item { op: Op::Put, source: f.to_string_lossy().into_owned(), target, line: None, mtime: None })
            };
            files.iter().map(put).collect()
        }
        Cmd::Batch { file } => batch_items(file),
        _ => unreachable!("only mput and batch are made without the server"),
    }
}

/// The remote files the globs name, each with its local path in `dir`.
async fn expand_mget(link: &mut Link<'_>, globs: &[String], dir: Option<&Path>) -> Result<Work> {
    let dir = dir.unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for glob in globs {
        let (remote_dir, _) = batch::split_glob(glob);
        let names = transfer::names(link, remote_dir).await?;
        let matches = batch::glob_matches(glob, &names)?;
        if matches.is_empty() {
            return Err(classified(Kind::FtpRefused, format!("no remote file matches {glob:?}")));
        }
        for remote in matches {
            let target = dir.join(transfer::safe_base_name(&remote)?).to_string_lossy().into_owned();
            items.push(Item { op: Op::Get, source: remote, target, line: None, mtime: None });
        }
    }
    Ok(Work { mkdir: Some(dir.to_path_buf()), ..Work::of(items) })
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
        Ok(Item { op: job.op, source: job.source, target, line: Some(job.line), mtime: None })
    };
    batch::parse(&text)?.into_iter().map(to_item).collect()
}
