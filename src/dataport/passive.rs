//! The passive fallback: EPSV (or PASV), then sshd connects to the announced
//! port for us (direct-tcpip), so the data still travels inside SSH. Used
//! for servers that refuse the default port, and by `--data-mode passive`.

use anyhow::Result;
use russh::client::Msg;
use russh::Channel;

use crate::error::{classified, Kind};
use crate::events::Event;
use crate::ftp::control::Control;
use crate::ftp::passive::{parse_epsv, parse_pasv, PassiveError};
use crate::ftp::Command;
use crate::ssh::Session;

/// EPSV (or PASV) on `control`, and sshd's connection to the announced port
/// on `host`: the control connection's host, whatever a 227 says.
pub async fn open(session: &Session, control: &mut Control, host: &str) -> Result<Channel<Msg>> {
    let reply = control.command(&Command::Epsv).await?;
    // A reply with no usable port is the server's fault (exit 4), not ours.
    let bad = |what: &str, e: PassiveError| classified(Kind::FtpRefused, format!("bad {what} reply: {e}"));
    let port = if reply.code == 229 {
        parse_epsv(&reply).map_err(|e| bad("EPSV", e))?
    } else {
        let reply = control.expect(&Command::Pasv, |r| r.code == 227).await?;
        // The address in a 227 reply is ignored: the data goes where the control goes.
        parse_pasv(&reply).map_err(|e| bad("PASV", e))?.1
    };
    let channel = session.direct_tcpip(host, port).await?;
    session.events().emit(Event::PassiveData { to: format!("{host}:{port}") });
    Ok(channel)
}
