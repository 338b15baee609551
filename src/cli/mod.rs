//! The command line: parse, set up output, run one command, map errors to exit codes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::error::Classify;
use crate::error::{classified, Kind};
use crate::ftp::control::REPLY_TIMEOUT;
use crate::ftp::shown::shown_lines;
use crate::interrupt::{Interrupted, Watch};
use crate::jobs::shard::{self, Shard};
use crate::link::{DataMode, Link};
use crate::ssh::endpoint::DEFAULT_FTP;
use crate::ssh::Session;
use crate::timewait::Pace;
use crate::transfer;

mod demo;
mod install;
mod many;
mod modes;
pub mod output;
mod plan;
mod work;

use plan::plan;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other error, or the local file system refused (permission, disk full; never retried)
  2  usage error (bad arguments, batch file missing, no FTP password available)
  3  SSH failure (connect, host key, authentication, channel or forward refused, connection lost)
  4  the FTP server refused or misbehaved (login, missing file, permission, not reachable, bad reply)
  5  transfer or verification failure
  6  mget, mput, batch, mirror: some transfers succeeded, some failed
     (when none succeeded: the code of the first failure)
  129/130/143  stopped by SIGHUP/SIGINT (Ctrl-C)/SIGTERM: the report lists what finished;
     a download keeps its part file, and the same command resumes it

The FTP password comes from FTPSSH_PASSWORD, else ~/.netrc, else a prompt on the terminal.";

/// The stack of the thread that runs every task (the SSH sessions, the bulk
/// workers, the transfers: futures nested in one another), and of the blocking
/// pool's (file I/O, hashing), chosen here rather than left to `ulimit -s`. An
/// unoptimised build moves those futures by value from frame to frame: a bulk run
/// used 7.8 MiB of it before a data connection's wait (gdb, the test build), past
/// tokio's 2 MiB long ago and now past 8. Only the pages touched are memory.
const STACK: usize = 32 << 20;

/// FTP with the control connection and every data connection inside SSH.
#[derive(Debug, Parser)]
#[command(name = "ftpssh-fullsecure", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The SSH server
    #[arg(
        short = 's',
        long = "ssh",
        overrides_with = "ssh",
        env = "FTPSSH_SSH",
        global = true,
        value_name = "[USER@]HOST[:PORT]"
    )]
    pub ssh: Option<String>,
    /// The FTP server, as reached from the SSH server
    #[arg(short = 'f', long = "ftp", overrides_with = "ftp", global = true, value_name = "HOST[:PORT]", default_value = DEFAULT_FTP)]
    pub ftp: String,
    /// FTP user name [default: the login in ~/.netrc for that host, else the SSH user]
    #[arg(short = 'u', long = "ftp-user", overrides_with = "ftp_user", global = true, value_name = "NAME")]
    pub ftp_user: Option<String>,
    /// SSH private key file (repeatable; the ssh-agent is tried first)
    #[arg(short = 'i', long = "identity", global = true, value_name = "FILE", action = clap::ArgAction::Append)]
    pub identity: Vec<PathBuf>,
    /// Jump hosts to reach the SSH server through, each [USER@]HOST[:PORT], as ssh -J (each with its own host key check and login)
    #[arg(short = 'J', long = "jump", overrides_with = "jump", global = true, value_name = "JUMP[,JUMP...]")]
    pub jump: Option<String>,
    /// An ssh_config option, as ssh -o (repeatable; only the options the tool reads, listed in docs/ssh.md)
    #[arg(short = 'o', long = "ssh-option", global = true, value_name = "OPTION=VALUE", action = clap::ArgAction::Append)]
    pub ssh_options: Vec<String>,
    /// The ssh_config file to read instead of ~/.ssh/config (`none`: none), as ssh -F
    #[arg(short = 'F', long = "ssh-config", overrides_with = "ssh_config", global = true, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// known_hosts file to check the SSH host key against [default: UserKnownHostsFile, else ~/.ssh/known_hosts and known_hosts2]
    #[arg(long = "known-hosts", overrides_with = "known_hosts", global = true, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// SSH ciphers to offer, comma-separated, as scp -c [default: AES-GCM first where the CPU has AES instructions, else chacha20-poly1305]
    #[arg(short = 'c', long = "cipher", overrides_with = "cipher", global = true, value_name = "CIPHER[,CIPHER...]")]
    pub cipher: Option<String>,
    /// How data connections are made: auto tries the default port first, then EPSV/PASV; both inside SSH
    #[arg(long = "data-mode", overrides_with = "data_mode", global = true, value_enum, default_value = "auto")]
    pub data_mode: DataMode,
    /// Seconds to wait for any FTP reply before giving up on a server that hangs; a data connection that moves less than 1 KiB in twice that is dead too
    #[arg(long = "timeout", overrides_with = "timeout", global = true, value_name = "SECS", default_value_t = REPLY_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Check each copy with the server's own hash (HASH, XSHA256, XSHA1, XMD5; else the size) [default: on for mget, mput, batch, mirror]
    #[arg(long = "verify", global = true, overrides_with = "no_verify")]
    pub verify: bool,
    /// Check sizes only, never ask for the server's hash
    #[arg(long = "no-verify", global = true, overrides_with = "verify")]
    pub no_verify: bool,
    /// Text transfers (TYPE A): downloads turn CRLF into LF, uploads send LF as CRLF; never resumed, no --verify
    #[arg(long = "ascii", global = true)]
    pub ascii: bool,
    /// put, mput, batch, mirror --reverse: go on after what the server holds of each file (SIZE, then APPE)
    #[arg(long = "continue", global = true)]
    pub continue_uploads: bool,
    /// Limit the data rate of the whole run, in bytes per second, 1024-based: 500K, 2M (a bare number is KiB/s)
    #[arg(long = "bwlimit", global = true, value_name = "RATE", value_parser = crate::throttle::parse_rate)]
    pub bwlimit: Option<u64>,
    /// Bulk options
    #[command(flatten)]
    pub bulk: BulkArgs,
    /// Show each step and the FTP control conversation (-vv: more)
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print nothing but errors
    #[arg(short = 'q', long = "quiet", global = true)]
    pub quiet: bool,
    /// Write every event of the run (ports, 4-tuples, TIME_WAIT, remedies) to FILE, one JSON object a line
    #[arg(long = "events", global = true, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// What to do
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Download REMOTE to LOCAL (a file or directory; default: the current directory)
    Get {
        /// Remote file
        remote: String,
        /// Local file or directory
        local: Option<PathBuf>,
    },
    /// Upload LOCAL to REMOTE (default: the same base name in the FTP login directory)
    Put {
        /// Local file
        local: PathBuf,
        /// Remote name
        remote: Option<String>,
    },
    /// List a remote directory (LIST)
    Ls {
        /// Remote directory
        path: Option<String>,
    },
    /// Download every remote file matching the globs (`many/*.txt`) into DIR
    Mget {
        /// Remote globs; the directory part is literal
        #[arg(required = true)]
        globs: Vec<String>,
        /// Local directory [default: the current directory]
        #[arg(short = 'd', long = "dir", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Upload local files into REMOTE-DIR
    Mput {
        /// Local files
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Remote directory [default: the FTP login directory]
        #[arg(short = 'd', long = "dir", value_name = "REMOTE-DIR")]
        dir: Option<String>,
    },
    /// Run the transfers of a file: `get REMOTE [LOCAL]` or `put LOCAL [REMOTE]` a line, `#` comments
    Batch {
        /// The batch file
        file: PathBuf,
    },
    /// Watch the book's procedure on real sockets, step by step: narration, both socket tables, TIME_WAIT, a timeline
    Demo(demo::DemoArgs),
    /// Copy REMOTE-DIR's new and changed files into LOCAL-DIR (--reverse: upload), judged by size and time
    Mirror {
        /// Remote directory
        remote: String,
        /// Local directory [default: the current directory]
        local: Option<PathBuf>,
        /// Upload LOCAL-DIR's new and changed files into REMOTE-DIR instead
        #[arg(long = "reverse")]
        reverse: bool,
        /// Also delete the target's files that the source does not have
        #[arg(long = "delete")]
        delete: bool,
    },
    /// Serve any FTP client on a loopback port: its control and data connections all travel inside SSH
    Tunnel {
        /// Where FTP clients connect (a loopback address only)
        #[arg(long = "listen", value_name = "ADDR:PORT", default_value = crate::tunnel::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
    },
    /// Print a shell completion script: `source <(ftpssh-fullsecure completions bash)`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `ftpssh-fullsecure man | man -l -`
    Man,
}

/// Options of the bulk commands (mget, mput, batch).
#[derive(Debug, clap::Args)]
pub struct BulkArgs {
    /// Transfers at once, each over its own SSH session and control connection
    #[arg(short = 'j', long = "jobs", global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Around TIME_WAIT collisions: end our own tuple's TIME_WAIT (RFC 1337) and keep the control connection, rotate to a fresh one, or wait the measured timer out
    #[arg(long = "pace", global = true, value_enum, default_value = "reclaim")]
    pub pace: Pace,
    /// Go on after a failed transfer [default: stop at the first failure]
    #[arg(long = "continue-on-error", global = true)]
    pub continue_on_error: bool,
    /// Retries of a transfer after a passing failure (dropped connection, broken data connection)
    #[arg(long = "retries", global = true, default_value_t = 3, value_name = "N")]
    pub retries: u32,
    /// Write a report of every transfer: `--report json FILE`
    #[arg(long = "report", global = true, num_args = 2, value_names = ["FORMAT", "FILE"])]
    pub report: Vec<String>,
    /// Print what would be transferred (and deleted); connects and lists, transfers nothing
    #[arg(long = "dry-run", global = true)]
    pub dry_run: bool,
    /// Take only slice I of N (0 <= I < N) of the work, by a stable hash of each name: one of N machines
    #[arg(long = "shard", global = true, value_name = "I/N", value_parser = shard::parse)]
    pub shard: Option<Shard>,
}

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
    let plan = plan(cli)?;
    match &cli.command {
        Cmd::Get { .. } | Cmd::Put { .. } | Cmd::Ls { .. } => {
            tracing::info!("connecting to SSH server {}@{}:{}", plan.target.user, plan.target.host, plan.target.port);
            let session = until_interrupted(interrupt, Session::connect(&plan.target, plan.events.clone())).await?;
            let work = async {
                let mut link = Link::open(&session, &plan.spec).await?;
                let outcome = execute(cli, &mut link).await;
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

/// `work`'s result, or [`Interrupted`] if a signal comes first (`work` is then dropped where it is).
pub(crate) async fn until_interrupted<T>(interrupt: &Watch, work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        out = work => out,
        signal = interrupt.wait() => Err(Interrupted(signal).classified()),
    }
}

async fn execute(cli: &Cli, link: &mut Link<'_>) -> Result<()> {
    let started = Instant::now();
    let (what, bytes) = match &cli.command {
        Cmd::Get { remote, local } => {
            let path = transfer::local_target(remote, local.as_deref())?;
            let n = transfer::get(link, remote, &path).await.with_context(|| format!("get {remote}"))?;
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

/// Where `put` stores: REMOTE as given (a trailing `/` means "into that
/// directory"), else the local base name.
pub(crate) fn remote_target(local: &Path, remote: Option<&str>) -> Result<String> {
    let base =
        local.file_name().map(|n| n.to_string_lossy().into_owned()).context("the local path has no file name")?;
    Ok(match remote {
        Some(r) if r.ends_with('/') => format!("{r}{base}"),
        Some(r) => r.to_string(),
        None => base,
    })
}

/// The commands that run many transfers through [`crate::jobs`].
fn is_bulk(cmd: &Cmd) -> bool {
    matches!(cmd, Cmd::Mget { .. } | Cmd::Mput { .. } | Cmd::Batch { .. } | Cmd::Mirror { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_go_anywhere_and_the_last_one_wins() {
        let cli =
            Cli::parse_from(["x", "--known-hosts", "k1", "get", "f", "-i", "a", "-i", "b", "--known-hosts", "k2"]);
        assert_eq!(cli.identity, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(cli.known_hosts, Some(PathBuf::from("k2")));
        assert!(matches!(cli.command, Cmd::Get { ref remote, local: None } if remote == "f"));
    }

    #[test]
    fn remote_names_for_put() {
        assert_eq!(remote_target(Path::new("/x/a b.bin"), None).unwrap(), "a b.bin");
        assert_eq!(remote_target(Path::new("a"), Some("dir/")).unwrap(), "dir/a");
        assert_eq!(remote_target(Path::new("a"), Some("c")).unwrap(), "c");
    }
}
