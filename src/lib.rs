//! ftpssh-fullsecure: classic FTP with the control connection *and* every data
//! connection inside one SSH session (the O'Reilly SSH book's "forwarding the
//! data connection" case study, automated).
//!
//! # Layout
//!
//! The book's procedure, one module per step, in the order a transfer takes
//! them; each imports only modules listed before it (`tests/layout.rs`
//! checks that the import graph has no cycle):
//!
//! - [`error`]: failure classes and exit codes, classified where they happen.
//! - [`backoff`]: the pauses between retries, one named policy each.
//! - [`tcp`]: pure TCP knowledge: the socket table parser (states, timers), the data 4-tuple,
//!   and the one-tuple lookup the scripts on the SSH server share ([`tcp::tuple_state`]).
//! - [`ftp`]: the FTP control protocol over any byte stream: commands, replies, PASV/EPSV,
//!   the dialect (U-1 or U), what FEAT lists, the server's hash of a file (HASH,
//!   XSHA256), MLSD and MDTM facts; the control connection's I/O in [`ftp::control`].
//! - [`events`]: the one stream of typed events the procedure emits, and what observes it.
//! - [`credentials`], [`interrupt`]: who logs in ([`ftp::login`] sends it); SIGINT, SIGTERM, SIGHUP.
//! - [`ssh`] — **step 1**, the SSH session: `[USER@]HOST[:PORT]` and ssh_config, `-o`, `-F`
//!   ([`ssh::endpoint`], [`ssh::config`]), the way there, direct, ProxyCommand or jump hosts
//!   ([`ssh::transport`]), host keys, the login ([`ssh::auth`]) and its questions
//!   ([`ssh::prompt`]), ciphers, channels ([`ssh::session`]), the forwarded channels handed
//!   from the session's event loop to whoever installed a receiver ([`ssh::forwarded`]), and
//!   the helpers run on the SSH server ([`ssh::helper`]), such as the [`ssh::shell`].
//! - [`dataport`] — **steps 2 to 4**, how a data connection is made: knowing P (the
//!   SO_REUSEADDR [`dataport::relay`] that carries the control connection, or the
//!   socket-table [`dataport::discovery`]), where the server connects back, the
//!   reverse [`dataport::forward`] checked in the socket table, the [`dataport::gate`] that
//!   admits each connection to it once its [`dataport::origin`] is proven, and the
//!   [`dataport::passive`] fallback, with [`dataport::Fallback`] saying why; the link's
//!   [`dataport::path::DataPath`] that owns all of it (default port or passive); freeing the
//!   4-tuple from TIME_WAIT ([`dataport::reclaim`]: after a collision, or as each download
//!   arrives, with its helper on the SSH server).
//! - [`throttle`]: `--bwlimit`, one token bucket for every data connection of a run.
//! - [`link`]: one FTP session inside SSH: a control connection, its data path, the
//!   transfers in flight.
//! - [`transfer`] — **step 5**: `get`, `put`, `ls` with no PORT/PASV; resumable part files;
//!   `--verify` ([`transfer::verify`]); a directory's files and facts ([`transfer::listing`]);
//!   `--ascii` line endings ([`transfer::ascii`]); `put --continue` ([`transfer::upload`]);
//!   `--segments`, one file in ranges over several links ([`transfer::segments`], the record of
//!   ranges written in [`transfer::ranges`], how many SSH connections in [`transfer::streams`]).
//! - [`timewait`] — **step 6**: pacing around TIME_WAIT: the collision policy (reclaim
//!   through [`dataport::reclaim`], rotate, the measured wait).
//! - [`jobs`]: many transfers: workers, the scheduler, batch files, the report, the lock,
//!   what `mirror` copies ([`jobs::mirror`]), `--shard` ([`jobs::shard`]).
//! - [`demo`]: the teaching demo: the procedure narrated from its events, both socket
//!   tables side by side, the TIME_WAIT countdown, the timeline (SVG, HTML).
//! - [`tunnel`]: any FTP client through the tool: a loopback FTP endpoint whose clients'
//!   control and data connections all travel inside SSH, on the paths above.
//! - [`cli`]: the command line; [`cli::output`] renders the events on stderr (`-v`,
//!   progress) and to `--events FILE`.
//!
//! # Events
//!
//! [`events::Event`]: `SshConnected` (C), `ControlOpened` (P, and how it is known),
//! `DialectChosen` (U-1 or U), `ForwardListening`, `DataAccepted` (the 4-tuple and its
//! incarnation), `PassiveData`, `Sent`/`Received` (the control conversation),
//! `TransferStarted`/`Progress`/`TransferDone`, `Verified`/`Unverified` (the server's hash), `Collision`, `TimeWaitLeft`, `Reclaimed`,
//! `Rotated`, `ReclaimFailed`, `Waiting`/`Waited`, `FellBack` (to passive, and why),
//! `Detour`, `StrayRefused`, `Retrying`, `JobDone`; `Tunnel` (the tunnel's facts about an
//! outside client: its C, its listeners, each data connection's ends, refusals). Observers: the `-v` trace, the progress
//! bars, the bulk report's records, `--events FILE` (JSON lines), and the teaching demo.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod cli;
pub mod credentials;
pub mod dataport;
pub mod demo;
pub mod error;
pub mod events;
pub mod ftp;
pub mod interrupt;
pub mod jobs;
pub mod link;
pub mod ssh;
pub mod tcp;
pub mod throttle;
pub mod timewait;
pub mod transfer;
pub mod tunnel;
