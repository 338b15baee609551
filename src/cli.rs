//! The command line: parse, set up output, run one command, map errors to exit codes.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use crate::error::{classified, Kind};
use crate::ftp::shown::shown_lines;
use crate::interrupt::{Interrupted, Watch};
use crate::link::Link;
use crate::ssh::Session;
use crate::transfer;
use crate::transfer::segments::Segments;

mod args;
mod demo;
mod install;
mod many;
mod modes;
pub mod output;
mod plan;
mod work;

use plan::plan;

use crate::interrupt::until_interrupted;
use args::{is_bulk, remote_target};
pub use args::{BulkArgs, Cli, Cmd};

/// The stack of the thread that runs every task (the SSH sessions, the bulk
/// workers, the transfers: futures nested in one another), and of the blocking
/// pool's (file I/O, hashing), chosen here rather than left to `ulimit -s`. An
/// unoptimised build moves those futures by value from frame to frame: a bulk run
/// used 7.8 MiB of it before a data connection's wait (gdb, the test build), past
/// tokio's 2 MiB long ago and now past 8. Only the pages touched are memory.
const STACK: usize = 32 << 20;

/// Run the program; returns the process exit code.
pub fn main() -> i32 {
    // Before the password is read: no core dump holds it, and no other process
    // of the same user may ptrace us or read /proc/PID/mem or environ (the
    // kernel gives /proc/PID to root). Best effort: prctl(2) cannot fail here.
    let _ = nix::sys::prctl::set_dumpable(false);
    let cli = Cli::parse();
    output::init(cli.verbose, cli.quiet);
    let outcome = match cli.command {
        // Generated text only: no SSH server, password, HOME or network needed.
        Cmd::Completions { shell } => install::print(&install::completions(shell)).map(|()| 0),
        Cmd::Man => install::print(&install::man_page()).map(|()| 0),
        _ => {
            // One thread, as scp and lftp: every task (the SSH session, the
            // workers, the transfers) on the main thread, and only file I/O on
            // the blocking pool. tokio's multi-thread scheduler handed each SSH
            // packet between threads: 80,000 context switches for a 1 GiB put
            // against 2,000 here, and a third of the client's CPU; one core
            // still encrypts far faster than the network carries.
            let on_one_thread = || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_stack_size(STACK)
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async {
                    let interrupt = crate::interrupt::listen()?;
                    run(&cli, &interrupt).await
                })
            };
            std::thread::scope(|scope| {
                let thread = std::thread::Builder::new().stack_size(STACK).spawn_scoped(scope, on_one_thread);
                thread.expect("a thread").join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        }
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ftpssh-fullsecure: error: {}", shown_lines(&format!("{e:#}")));
            crate::error::exit_code(&e)
        }
    }
}

async fn run(cli: &Cli, interrupt: &Watch) -> Result<i32> {
    // A get that ignored --dry-run would transfer what the user meant only to see.
    if !is_bulk(&cli.command) && (cli.bulk.dry_run || cli.bulk.shard.is_some()) {
        return Err(classified(Kind::Usage, "--dry-run and --shard are for mget, mput, batch and mirror"));
    }
    let downloads = matches!(cli.command, Cmd::Get { .. } | Cmd::Mget { .. } | Cmd::Batch { .. })
        || matches!(cli.command, Cmd::Mirror { reverse: false, .. });
    if (cli.segments > 1 || cli.ssh_connections.is_some()) && !downloads {
        return Err(classified(Kind::Usage, "--segments and --ssh-connections are for get, mget, batch and mirror"));
    }
    if cli.segments > 1 && cli.ascii {
        return Err(classified(
            Kind::Usage,
            "--segments and --ascii exclude each other: text is never resumed at an offset",
        ));
    }
    let plan = plan(cli)?;
    match &cli.command {
        Cmd::Get { .. } | Cmd::Put { .. } | Cmd::Ls { .. } => {
            tracing::info!("connecting to SSH server {}@{}:{}", plan.target.user, plan.target.host, plan.target.port);
            let session = until_interrupted(interrupt, Session::connect(&plan.target, plan.events.clone())).await?;
            let work = async {
                let mut link = Link::open(&session, &plan.spec).await?;
                let outcome = execute(cli, &plan.target, &mut link).await;
                link.close().await;
                outcome
            };
            let result = match until_interrupted(interrupt, work).await {
                Err(e) if crate::error::find::<Interrupted>(&e).is_some() => Err(e),
                Err(e) => Err(session.attribute(e).await),
                Ok(()) => Ok(()),
            };
            // Also after a signal: ending the session ends every helper it started on the server.
            session.close().await;
            result.map(|()| 0)
        }
        Cmd::Mget { .. } | Cmd::Mput { .. } | Cmd::Batch { .. } | Cmd::Mirror { .. } => {
            many::run(cli, plan, interrupt).await
        }
        Cmd::Demo(args) => until_interrupted(interrupt, demo::run(&plan, args)).await,
        Cmd::Tunnel { listen } => {
            crate::tunnel::run(plan.target, plan.spec, plan.events, *listen, interrupt).await.map(|()| 0)
        }
        Cmd::Completions { .. } | Cmd::Man => unreachable!("generated in main, without a runtime"),
    }
}

async fn execute(cli: &Cli, target: &crate::ssh::endpoint::SshTarget, link: &mut Link<'_>) -> Result<()> {
    let started = Instant::now();
    let (what, bytes) = match &cli.command {
        Cmd::Get { remote, local } => {
            let path = transfer::local_target(remote, local.as_deref())?;
            let n = match cli.segments {
                1 => transfer::get(link, remote, &path).await,
                n => {
                    let connections = cli.ssh_connections.map(|m| m.min(n).into());
                    let how = Segments { segments: n.into(), connections, target, threshold: 0 };
                    transfer::segments::get(link, &how, remote, &path).await
                }
            };
            let n = n.with_context(|| format!("get {remote}"))?;
            (format!("{remote} -> {}", path.display()), n)
        }
        Cmd::Put { local, remote } => {
            let remote = remote_target(local, remote.as_deref())?;
            let n = transfer::put(link, local, &remote).await.with_context(|| format!("put {}", local.display()))?;
            (format!("{} -> {remote}", local.display()), n)
        }
        Cmd::Ls { path } => {
            // The names are the server's: shown escaped, as everything it says.
            let mut out = crate::ftp::shown::Lines::new(std::io::stdout().lock());
            return transfer::list(link, path.as_deref(), &mut out).await.context("ls");
        }
        _ => unreachable!("bulk commands run in many::run"),
    };
    if !cli.quiet {
        let secs = started.elapsed().as_secs_f64();
        let mode = if link.is_passive() { "passive" } else { "default port" };
        let what = shown_lines(&what);
        eprintln!(
            "{what}: {bytes} bytes in {secs:.2} s ({:.1} MiB/s, data inside SSH, {mode})",
            bytes as f64 / secs.max(1e-6) / 1048576.0
        );
    }
    Ok(())
}
