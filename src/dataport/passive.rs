//! The passive fallback: EPSV (or PASV), then sshd connects to the announced
//! port for us (direct-tcpip), so the data still travels inside SSH. Used
//! for servers that refuse the default port, and by `--data-mode passive`.

use anyhow::{Context, Result};
use russh::client::Msg;
use russh::Channel;

use crate::events::Event;
use crate::ftp::control::Control;
use crate::ftp::passive::{parse_epsv, parse_pasv};
use crate::ftp::Command;
use crate::ssh::Session;

/// EPSV (or PASV) on `control`, and sshd's connection to the announced port
/// on `host`: the control connection's host, whatever a 227 says.
pub async fn open(session: &Session, control: &mut Control, host: &str) -> Result<Channel<Msg>> {
    let reply = control.command(&Command::Epsv).await?;
    let port = if reply.code == 229 {
        parse_epsv(&reply).with_context(|| format!("bad EPSV reply {reply}"))?
    } else {
        let reply = control.expect(&Command::Pasv, |r| r.code == 227).await?;
        // The address in a 227 reply is ignored: the data goes where the control goes.
        parse_pasv(&reply).with_context(|| format!("bad PASV reply {reply}"))?.1
    };
    let channel = session.direct_tcpip(host, port).await?;
    session.events().emit(Event::PassiveData { to: format!("{host}:{port}") });
    Ok(channel)
}
