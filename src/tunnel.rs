//! `tunnel`: any FTP client, unchanged, through the tool. A loopback FTP endpoint
//! whose every client gets a control connection of its own inside SSH (a
//! [`crate::link::Link`], as the built-in client's), and whose data connections take the
//! built-in data paths: the default port through the reverse forward, else
//! passive through SSH. Nothing reaches the network but SSH.
//!
//! What the client says about its data connections is answered here and never
//! sent on: PASV and EPSV get a loopback listener of the tunnel's, PORT and EPRT
//! (loopback only: anything else is the FTP bounce attack) and the default data
//! port (the client's own control port C, the book's `sendport` off) are
//! connected to by the tunnel. Every local socket the tunnel takes from, or gives
//! to, must be owned by the uid of the client's control connection, itself the
//! tunnel's uid ([`local`]).
//!
//! - [`verbs`]: the client's command lines, sorted (pure).
//! - [`client`]: one client's conversation: login, answers, pass-through.
//! - [`client_control`]: the client's control connection, lines in and replies out.
//! - [`pool`]: the SSH sessions the clients' links run in.
//! - [`transfer`]: one transfer: the server's data connection, the client's, TIME_WAIT paced.
//! - [`local`]: the client's end of a data connection, and the owner check.
//! - [`pipe`]: the bytes between the two.
//! - [`reuse`]: SO_REUSEADDR set on the client's control socket, for `sendport` off.

pub mod client;
pub mod client_control;
pub mod local;
pub mod pipe;
pub mod pool;
pub mod reuse;
pub mod transfer;
pub mod verbs;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::{classified, Classify, Kind};
use crate::events::tunnel::Fact;
use crate::events::Events;
use crate::interrupt::{Interrupted, Watch};
use crate::link::Spec;
use crate::ssh::endpoint::SshTarget;
use client_control::ClientControl;
use pool::Tunnel;

/// The default `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2121";
/// After Ctrl-C, how long the clients' sessions have to end (421, QUIT to the servers).
const STOP_BOUND: Duration = Duration::from_secs(5);

/// Serve FTP clients on `listen` (loopback only) until a signal; the signal is the error.
pub async fn run(target: SshTarget, spec: Spec, events: Events, listen: SocketAddr, interrupt: &Watch) -> Result<()> {
    if !listen.ip().is_loopback() {
        return Err(classified(
            Kind::Usage,
            format!("--listen {listen}: only a loopback address (the FTP conversation is plaintext on this host)"),
        ));
    }
    let uid = std::fs::metadata("/proc/self").context("reading /proc/self")?.uid();
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| classified(Kind::Usage, format!("cannot listen on {listen}: {e}")))?;
    let tunnel = Rc::new(Tunnel::new(target, spec, events, uid));
    // The first session now: a refused host key or login shows at once, not at a client's.
    let first = tunnel.session().await?;
    drop(first.1);
    let listen = listener.local_addr().unwrap_or(listen); // the port itself, for `--listen 127.0.0.1:0`
    eprintln!(
        "ftpssh-fullsecure: tunnel on {listen} to FTP {}:{} through SSH {}: e.g. lftp -p {} {}",
        tunnel.spec.ftp.host,
        tunnel.spec.ftp.port,
        tunnel.target.host,
        listen.port(),
        listen.ip()
    );
    let (stop, stopping) = watch::channel(false);
    let local = tokio::task::LocalSet::new();
    let signal = local
        .run_until(async {
            let mut clients = tokio::task::JoinSet::new();
            let signal = loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let (tunnel, stopping) = (tunnel.clone(), stopping.clone());
                            clients.spawn_local(async move { serve(tunnel, stream, peer, stopping).await });
                        }
                        Err(e) => tracing::warn!("tunnel: accept failed: {e}"),
                    },
                    Some(_) = clients.join_next(), if !clients.is_empty() => {}
                    signal = interrupt.wait() => break signal,
                }
            };
            let _ = stop.send(true);
            let ending = async { while clients.join_next().await.is_some() {} };
            if tokio::time::timeout(STOP_BOUND, ending).await.is_err() {
                clients.abort_all();
            }
            signal
        })
        .await;
    tunnel.close_all().await;
    Err(Interrupted(signal).classified())
}

/// One client, from its connection to its end.
async fn serve(tunnel: Rc<Tunnel>, stream: TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
    let Ok(ours) = stream.local_addr() else { return };
    let owner = local::owner(peer, ours);
    let mut client = ClientControl::new(stream, peer, ours, tunnel.uid, tunnel.events.clone());
    if owner != Some(local::Owner { uid: tunnel.uid, held: true }) {
        client.fact(Fact::ClientRefused { client: peer, whose: local::whose(owner) });
        let _ = client.say("421 This tunnel serves its own user only.").await;
        return;
    }
    client.fact(Fact::Client { client: peer, uid: tunnel.uid });
    // Before the greeting: a classic client binds its `sendport` off listener to C only later.
    client.fact(match reuse::client_socket(peer, ours, tunnel.uid) {
        reuse::Reuse::Set { pid, fd } => Fact::ReuseSet { client: peer, pid, fd },
        reuse::Reuse::NotSet(why) => Fact::ReuseNotSet { client: peer, why },
    });
    if let Err(e) = serve_logged(&tunnel, &mut client, &mut stop).await {
        tracing::warn!("tunnel: client {peer}: {e:#}");
    }
    client.fact(Fact::ClientGone { client: peer });
}

async fn serve_logged(tunnel: &Tunnel, client: &mut ClientControl, stop: &mut watch::Receiver<bool>) -> Result<()> {
    let greeting = format!(
        "220 ftpssh-fullsecure tunnel to {}:{}, inside SSH to {}",
        tunnel.spec.ftp.host, tunnel.spec.ftp.port, tunnel.target.host
    );
    client.say(&greeting).await?;
    let (session, slot) = match tunnel.session().await {
        Ok(found) => found,
        Err(e) => {
            client.fail(&e, 421).await?;
            return Err(e);
        }
    };
    let talked = async {
        let Some(mut link) = client::login(tunnel, client, &session).await? else { return Ok(()) };
        let talked = client::converse(client, &mut link, stop).await;
        link.close().await;
        talked
    };
    let talked = talked.await;
    tunnel.release(session.clone(), slot).await;
    talked
}
