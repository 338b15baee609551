//! One outside client's FTP conversation, relayed to a [`Link`] of its own: the
//! login, the data connections' addresses and AUTH are answered here, transfers
//! go through the built-in data paths, everything else passes on as it came.

use std::net::SocketAddr;

use anyhow::Result;
use tokio::net::TcpListener;

use super::client_control::ClientControl;
use super::local::{self, LocalEnd};
use super::pool::Tunnel;
use super::transfer::Transfer;
use super::verbs::{self, Verb};
use crate::credentials::Login;
use crate::error::{kind, Kind};
use crate::events::tunnel::Fact;
use crate::ftp::Command;
use crate::link::Link;

/// How long the connection to a client's PORT listener may take when it is named (a
/// loopback connect: the kernel answers at once, or refuses).
const EARLY_CONNECT: std::time::Duration = std::time::Duration::from_secs(2);

/// Until the client has logged in: USER and PASS open the link with its login.
pub async fn login<'s>(
    tunnel: &'s Tunnel,
    client: &mut ClientControl,
    session: &'s crate::ssh::Session,
) -> Result<Option<Link<'s>>> {
    let mut user = None;
    while let Some(line) = client.next().await? {
        match verbs::parse(&line) {
            Verb::User(name) => {
                client.say(&format!("331 Password required for {name}")).await?;
                user = Some(name);
            }
            Verb::Pass(password) => {
                let Some(name) = user.clone() else {
                    client.say("503 Login with USER first.").await?;
                    continue;
                };
                tracing::info!(
                    "tunnel: ---> PASS **** (client {}, FTP user {name}): logging in through SSH",
                    client.peer
                );
                let spec = tunnel.spec_for(Login { user: name, password, gate: None, ascii: false, runs_as: None });
                match Link::open(session, &spec).await {
                    Ok(link) => {
                        client.say("230 Logged in: control and data connections travel inside SSH.").await?;
                        return Ok(Some(link));
                    }
                    Err(e) if kind(&e) == Some(Kind::FtpRefused) => client.fail(&e, 530).await?,
                    Err(e) => {
                        client.fail(&e, 421).await?;
                        return Err(e);
                    }
                }
            }
            Verb::Auth => auth(client).await?,
            Verb::Quit => {
                client.say("221 Goodbye.").await?;
                return Ok(None);
            }
            _ => client.say("530 Please login with USER and PASS.").await?,
        }
    }
    Ok(None)
}

/// AUTH TLS or SSL: refused, so that the client goes on in plain FTP, which travels inside SSH.
async fn auth(client: &mut ClientControl) -> Result<()> {
    client.fact(Fact::AuthRefused);
    client.say("534 AUTH refused: this FTP connection travels inside SSH already.").await
}

/// After login: the conversation, until QUIT or the client's end; `stop` ends it with a 421.
pub async fn converse(
    client: &mut ClientControl,
    link: &mut Link<'_>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut end = LocalEnd::DefaultPort(client.peer);
    let mut transfer = Transfer::default();
    loop {
        let line = tokio::select! {
            line = client.next() => line?,
            _ = stop.changed() => {
                client.say("421 The tunnel is closing.").await?;
                return Ok(());
            }
        };
        let Some(line) = line else { return Ok(()) };
        match verbs::parse(&line) {
            Verb::Pasv | Verb::Epsv => {
                let listener = TcpListener::bind(SocketAddr::new(client.ours.ip(), 0)).await?;
                let at = listener.local_addr()?;
                let reply = if verbs::parse(&line) == Verb::Pasv && at.is_ipv4() {
                    verbs::pasv_reply(at)
                } else {
                    verbs::epsv_reply(at.port())
                };
                let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                client.fact(Fact::PassiveListener { verb, listen: at });
                client.say(&reply).await?;
                end = LocalEnd::Listening(listener);
            }
            Verb::Active(Ok(at)) if at.ip().is_loopback() => {
                client.fact(Fact::ClientListens { listen: at });
                // Now, before our 200: the client listens already, and another local user who
                // saw its listener must find our connection first in its queue.
                end = match local::connect(LocalEnd::Port(at), client.local(), EARLY_CONNECT).await {
                    Ok(stream) => LocalEnd::Connected(stream),
                    Err(e) => {
                        tracing::debug!("tunnel: {e:#}: connecting again at the transfer");
                        LocalEnd::Port(at)
                    }
                };
                client.say("200 PORT command successful (the tunnel connects; nothing leaves this host).").await?;
            }
            Verb::Active(Ok(at)) => {
                client.fact(Fact::PortRefused { to: at });
                client.say("500 PORT refused: only a loopback address of this host.").await?;
            }
            Verb::Active(Err(why)) => client.say(&format!("501 {why}")).await?,
            Verb::Transfer(cmd, direction) => {
                let local = std::mem::replace(&mut end, LocalEnd::DefaultPort(client.peer));
                transfer.run(client, link, local, &cmd, direction).await?;
            }
            Verb::Auth => auth(client).await?,
            Verb::User(_) | Verb::Pass(_) => client.say("503 Already logged in through the tunnel.").await?,
            Verb::Unsupported(verb) => client.say(&format!("502 {verb} is not carried by the tunnel.")).await?,
            Verb::Quit => {
                client.say("221 Goodbye.").await?;
                return Ok(());
            }
            Verb::Abor => client.say("226 No transfer to abort.").await?,
            Verb::Rest(at) => {
                let reply = link.rest(at).await?;
                client.relay(&reply).await?;
            }
            Verb::Other(line) => {
                let reply = link.control.command(&Command::Verbatim(line)).await?;
                client.relay(&reply).await?;
            }
        }
    }
}
