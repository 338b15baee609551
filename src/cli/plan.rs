//! From the command line and the files to a [`Plan`]: the SSH server (ssh_config, `-o`, `-F`,
//! `-J`), the FTP server and login, and who watches the run.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::args::{is_bulk, Cli, Cmd};
use super::output;
use crate::credentials;
use crate::error::{classified, Kind};
use crate::events::Events;
use crate::jobs::Plan;
use crate::link::Spec;
use crate::ssh::config::Settings;
use crate::ssh::endpoint::{self, Resolver};

/// Resolve the SSH server, known_hosts and the FTP login from the command line and the files.
pub(super) fn plan(cli: &Cli) -> Result<Plan> {
    let spec = cli
        .ssh
        .as_deref()
        .ok_or_else(|| classified(Kind::Usage, "no SSH server: give --ssh [USER@]HOST[:PORT] or set FTPSSH_SSH"))?;
    let home = endpoint::home();
    let usage = |e: anyhow::Error| classified(Kind::Usage, format!("{e:#}"));
    let ciphers = cli.cipher.as_deref().map(crate::ssh::ciphers::parse).transpose();
    // -i, --known-hosts, -c, -o and -F apply to every jump host too.
    let resolver = Resolver {
        settings: Settings::new(cli.ssh_config.as_deref(), home.as_deref(), &cli.ssh_options).map_err(usage)?,
        identities: cli.identity.clone(),
        known_hosts: cli.known_hosts.clone(),
        ciphers: ciphers.map_err(|e| classified(Kind::Usage, format!("-c: {e:#}")))?,
    };
    let target = resolver.target(spec, cli.jump.as_deref()).map_err(usage)?;
    let ftp = endpoint::ftp_target(&cli.ftp).map_err(usage)?;
    if cli.known_hosts.is_none() && home.is_none() && target.known_hosts.user_files.is_empty() {
        return Err(classified(Kind::Usage, "no HOME: give --known-hosts"));
    }
    let netrc = home.as_ref().map(|h| h.join(".netrc"));
    // The SSH host as typed (an alias), then as reached: what a loopback FTP server's netrc entry is under.
    let typed = endpoint::split_spec(spec).map(|(_, host, _)| host).unwrap_or_default();
    // The tunnel's clients log in themselves, each with its own USER and PASS.
    let login = if matches!(cli.command, Cmd::Tunnel { .. }) {
        credentials::Login { user: String::new(), password: String::new(), gate: None, ascii: false, runs_as: None }
    } else {
        credentials::resolve(
            cli.ftp_user.as_deref(),
            &target.user,
            &ftp.host,
            &[typed.as_str(), target.host.as_str()],
            netrc.as_deref(),
            std::env::var(credentials::PASSWORD_ENV).ok(),
            std::io::stdin().is_terminal(),
        )?
    };
    let mut login = login;
    login.ascii = super::modes::representation(cli)? == crate::ftp::command::TransferType::Ascii;
    login.runs_as = cli.ftp_uid.clone();
    let verify = super::modes::verify(cli);
    let throttle = cli.bwlimit.map(|rate| Arc::new(crate::throttle::Throttle::new(rate)));
    let timeout = Duration::from_secs(cli.timeout);
    let continue_uploads = cli.continue_uploads;
    let spec = Spec { ftp, login, mode: cli.data_mode, timeout, verify, throttle, continue_uploads };
    Ok(Plan { target, spec, events: observers(cli)? })
}

/// Who watches this run: the `-v` trace always (its level filter decides
/// what shows), the `--events` file, bars and countdowns on a terminal unless `-q` (or the demo).
pub(super) fn observers(cli: &Cli) -> Result<Events> {
    let mut events = Events::none().with(Arc::new(output::Trace));
    if let Some(file) = &cli.events {
        let lines = output::JsonLines::create(file).map_err(|e| classified(Kind::Usage, format!("--events: {e:#}")))?;
        events = events.with(Arc::new(lines));
    }
    // The demo draws its own countdowns on stdout: no bars beside them.
    if cli.quiet || !std::io::stderr().is_terminal() || matches!(cli.command, Cmd::Demo(_)) {
        return Ok(events);
    }
    let bulk = is_bulk(&cli.command);
    Ok(events.with(Arc::new(if bulk { output::Progress::items() } else { output::Progress::bytes() })))
}
