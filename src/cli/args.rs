//! The command line: the options, the subcommands, and what they mean before anything runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use super::demo;
use crate::ftp::control::REPLY_TIMEOUT;
use crate::jobs::shard::{self, Shard};
use crate::link::DataMode;
use crate::ssh::endpoint::DEFAULT_FTP;
use crate::timewait::Pace;

/// The largest `--timeout`: deadlines are instants, which a larger one overflows (a panic).
const MAX_TIMEOUT: u64 = u32::MAX as u64;

pub(super) const EXIT_CODES: &str = "\
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
    /// The account the FTP server runs this login's session as on the SSH server, where the login has none of its own (virtual users): its data connections are then proven by their owner [default: the login's own account]
    #[arg(long = "ftp-uid", overrides_with = "ftp_uid", global = true, value_name = "UID|NAME")]
    pub ftp_uid: Option<String>,
    /// SSH private key file (repeatable; the ssh-agent is tried first)
    #[arg(short = 'i', long = "identity", global = true, value_name = "FILE", action = clap::ArgAction::Append)]
    pub identity: Vec<PathBuf>,
    /// Jump hosts, as ssh -J (the help is an attribute: its brackets would be links here).
    #[arg(
        short = 'J',
        long = "jump",
        overrides_with = "jump",
        global = true,
        value_name = "JUMP[,JUMP...]",
        help = "Jump hosts to reach the SSH server through, each [USER@]HOST[:PORT], as ssh -J (each with its own host key check and login)"
    )]
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
    /// Seconds to wait for any FTP reply before giving up on a server that hangs (for a file's hash, a second more per 16 MiB); a data connection that moves less than 1 KiB in twice that is dead too
    #[arg(long = "timeout", overrides_with = "timeout", global = true, value_name = "SECS", default_value_t = REPLY_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT))]
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
    /// get, mget, batch, mirror: fetch a file in N ranges at once, each over its own control connection (REST + RETR) and SSH connection
    #[arg(long = "segments", global = true, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub segments: u16,
    /// With --segments: how many SSH connections (sshd processes) carry them [default: one where the round trip is below 2 ms, as on this host or a LAN; else one per segment]
    #[arg(long = "ssh-connections", global = true, value_name = "M", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub ssh_connections: Option<u16>,
    /// mget, batch, mirror with --segments: only files of at least this size are split, 1024-based: 64M, 1G (a bare number is KiB)
    #[arg(long = "segment-threshold", global = true, value_name = "SIZE", default_value = "64M", value_parser = crate::throttle::parse_rate)]
    pub segment_threshold: u64,
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
pub(super) fn is_bulk(cmd: &Cmd) -> bool {
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
    fn a_timeout_past_any_instant_is_a_usage_error() {
        assert_eq!(Cli::parse_from(["x", "--timeout", "4294967295", "ls"]).timeout, u64::from(u32::MAX));
        for bad in ["0", "4294967296", "18446744073709551615"] {
            assert!(Cli::try_parse_from(["x", "--timeout", bad, "ls"]).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_names_for_put() {
        assert_eq!(remote_target(Path::new("/x/a b.bin"), None).unwrap(), "a b.bin");
        assert_eq!(remote_target(Path::new("a"), Some("dir/")).unwrap(), "dir/a");
        assert_eq!(remote_target(Path::new("a"), Some("c")).unwrap(), "c");
    }
}
