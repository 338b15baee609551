//! One transfer of an outside client: the server's data connection through the
//! built-in data paths (default port, else passive, inside SSH), the client's on
//! this host ([`super::local`]), the bytes between them, and TIME_WAIT paced behind
//! the client's back: a collision's 4-tuple is reclaimed, else its timer waited out,
//! and the command sent again, so the client never sees the 425.

use anyhow::Result;
use tokio::net::TcpStream;

use super::client_control::ClientControl;
use super::local::{self, LocalEnd};
use super::pipe;
use super::verbs::Direction;
use crate::error::{find, kind, Kind};
use crate::events::tunnel::Fact;
use crate::ftp::Command;
use crate::link::{Collision, Data, Link};
use crate::timewait::{self, Collisions, Next, Pace};

/// How many times one command is sent again after TIME_WAIT collisions.
const COLLISION_RETRIES: u32 = 3;

/// What a client's transfers have learnt about the server.
#[derive(Default)]
pub struct Transfer {
    /// The server's data connections have collided with TIME_WAIT: reclaim ahead.
    collides: bool,
}

impl Transfer {
    /// Carry `cmd` for the client: its data connection at `end`.
    pub async fn run(
        &mut self,
        client: &mut ClientControl,
        link: &mut Link<'_>,
        end: LocalEnd,
        cmd: &Command,
        direction: Direction,
    ) -> Result<()> {
        // The client's data connection is made first. To the client's own listener (PORT, EPRT,
        // its C with `sendport` off), before the server is asked: the listener accepts after our
        // 150 whichever connection waits first in its queue, so with another local user's there
        // the client gets our 425 and closes it unaccepted, and the server is told nothing (a
        // STOR begun and dropped would leave an empty file). To our passive port, while the
        // server's is made: a client uploading a small file would send it and close as soon as
        // it has our 150, and a closed socket names no owner.
        let bound = link.control.timeout;
        let what = cmd.redacted();
        let listening = matches!(end, LocalEnd::Listening(_));
        let mut connecting = Some(tokio::task::spawn_local(local::connect(end, client.local(), bound)));
        let ready = match listening {
            true => None,
            false => match joined(connecting.take()).await {
                Ok(stream) => Some(stream),
                Err(e) => {
                    client.fact(Fact::DataRefused { why: format!("{what}: {e:#}") });
                    let why = format!("{e:#}");
                    let why = crate::ftp::shown::shown_lines(&why);
                    return client.say(&format!("425 Cannot open the data connection: {why}")).await;
                }
            },
        };
        let Some(data) = self.start(client, link, cmd).await? else {
            connecting.inspect(|c| c.abort());
            return Ok(());
        };
        let announced = data.announced.map_or(String::new(), |n| format!(" ({n} bytes)"));
        client.say(&format!("150 Opening data connection for {what}{announced}.")).await?;
        let connected = match ready {
            Some(ready) => Ok(ready),
            None => joined(connecting.take()).await,
        };
        let mut stream = match connected {
            Ok(stream) => stream,
            Err(e) => return refuse(client, link, data, &what, e).await,
        };
        // As the built-in transfers: the run's `--bwlimit`, and a stall window of twice `--timeout`.
        let pace = pipe::Pace { throttle: link.spec().throttle.clone(), window: bound * 2 };
        let (moved, writer) = match direction {
            Direction::Down => (pipe::down(data, &mut stream, &pace, client.until_abort()).await, None),
            Direction::Up => {
                let (moved, writer) = pipe::up(data, &mut stream, &pace, client.until_abort()).await;
                (moved, Some(writer))
            }
        };
        drop(stream);
        tracing::debug!(
            "tunnel: {what}: the data connection ended ({})",
            if moved.is_ok() { "done" } else { "cut short" }
        );
        if let Err(e) = moved {
            if let Some(w) = &writer {
                let _ = w.close().await;
            }
            link.resync().await?;
            if std::mem::take(&mut client.aborted) {
                return client.say("426 Transfer aborted.\r\n226 ABOR command successful.").await;
            }
            tracing::warn!("tunnel: {what}: {e:#}");
            return client.say("426 The data connection broke.").await;
        }
        let finished = link.finish(cmd).await;
        if let Some(w) = writer {
            let _ = w.close().await;
        }
        match finished {
            Ok(reply) => client.relay(&reply).await?,
            Err(e) => {
                client.fail(&e, 451).await?;
                link.resync().await?;
            }
        }
        // An ABOR that came as the transfer ended: RFC 959 answers it with 226 alone.
        if std::mem::take(&mut client.aborted) {
            client.say("226 ABOR command successful.").await?;
        }
        Ok(())
    }

    /// The server's data connection for `cmd`, collisions paced; None when the server refused
    /// (its reply has gone to the client). An error ends the client's session.
    async fn start(&mut self, client: &mut ClientControl, link: &mut Link<'_>, cmd: &Command) -> Result<Option<Data>> {
        let mut so_far = Collisions::default();
        let _ = timewait::ahead(Pace::Reclaim, self.collides, link, &mut so_far).await;
        // The client's REST: the refused command consumed it, a retry sends it again.
        let rest = link.rest_ahead();
        let mut retries = 0;
        loop {
            let e = match link.start(cmd).await {
                Ok(data) => return Ok(Some(data)),
                Err(e) => e,
            };
            if let Some(collision) = find::<Collision>(&e).filter(|_| retries < COLLISION_RETRIES) {
                retries += 1;
                self.collides = true;
                let (tuple, said) = (collision.tuple, format!("{e:#}"));
                link.resync().await?;
                let mut next = timewait::after_collision(Pace::Reclaim, link, tuple, &mut so_far, &said).await;
                if !matches!(next, Next::Reuse) {
                    // The tunnel cannot rotate behind the client (a new control connection would lose
                    // its working directory and settings): it waits the measured timer out instead.
                    next = timewait::after_collision(Pace::Wait, link, tuple, &mut so_far, &said).await;
                }
                if matches!(next, Next::Reuse) {
                    match rest {
                        Some(at) => match link.expect_rest(at).await {
                            Ok(()) => continue,
                            Err(e) => {
                                client.fail(&e, 425).await?;
                                link.resync().await?;
                                return Ok(None);
                            }
                        },
                        None => continue,
                    }
                }
            }
            if matches!(kind(&e), Some(Kind::SshLost | Kind::Ssh)) {
                client.fail(&e, 421).await?;
                return Err(e);
            }
            client.fail(&e, 425).await?;
            link.resync().await?;
            return Ok(None);
        }
    }
}

/// The client's data connection, from its task.
async fn joined(task: Option<tokio::task::JoinHandle<Result<TcpStream>>>) -> Result<TcpStream> {
    let task = task.ok_or_else(|| anyhow::anyhow!("the client's data connection was taken already"))?;
    task.await.unwrap_or_else(|e| Err(anyhow::anyhow!("connecting: {e}")))
}

/// No data connection for the client: the server's is closed, and the client told 425.
async fn refuse(
    client: &mut ClientControl,
    link: &mut Link<'_>,
    data: Data,
    what: &str,
    e: anyhow::Error,
) -> Result<()> {
    let _ = data.channel.close().await;
    client.fact(Fact::DataRefused { why: format!("{what}: {e:#}") });
    link.resync().await?;
    let why = format!("{e:#}");
    client.say(&format!("425 Cannot open the data connection: {}", crate::ftp::shown::shown_lines(&why))).await
}
