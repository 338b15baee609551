//! The passive fallback: EPSV (or PASV), then sshd connects to the announced
//! port for us (direct-tcpip), so the data still travels inside SSH. Used
//! for servers that refuse the default port, and by `--data-mode passive`.

use anyhow::Result;
use russh::client::Msg;
use russh::Channel;

use crate::error::{classified, Kind};
use crate::events::Event;
use crate::ftp::control::Control;
use crate::ftp::passive_reply::{parse_epsv, parse_pasv, PassiveError};
use crate::ftp::{Command, Reply};
use crate::ssh::Session;

/// Why the default-port path is not used: in `auto`, the reason to go passive.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fallback {
    /// Neither perl, python3 nor socat on the SSH server, and the socket
    /// table could not stand in.
    #[error("no relay interpreter on the SSH server ({0})")]
    NoRelay(String),
    /// An interpreter exists but the relay did not start.
    #[error("the relay on the SSH server failed ({0})")]
    RelayFailed(String),
    /// The socket table did not show P.
    #[error("could not find the proxy port P in the SSH server's socket table ({0})")]
    Discovery(String),
    /// An RFC 959 server connects back to P itself, which only the relay's
    /// SO_REUSEADDR makes possible.
    #[error("the FTP server connects back to the control connection's own port, which needs the relay ({0})")]
    NeedsRelay(String),
    /// sshd said no to the tcpip-forward.
    #[error("the SSH server refused the reverse forward ({0})")]
    ForwardRefused(String),
    /// sshd said yes, but its socket table shows no listener where the FTP
    /// server will connect.
    #[error("{0}")]
    BoundElsewhere(String),
    /// The server refused a transfer with neither PORT nor PASV.
    #[error("the FTP server refuses default-port transfers: it replied {0}")]
    Refused(Reply),
    /// Neither a reply nor a data connection within the bound.
    #[error("the FTP server {0}")]
    Silent(String),
    /// A data connection came that nothing can prove is the FTP server's (why).
    #[error("a data connection's origin cannot be proven: {0}")]
    Unprovable(String),
}

impl Fallback {
    /// The exit code class when there is no passive mode to fall back to.
    pub fn kind(&self) -> Kind {
        match self {
            Fallback::Refused(_) | Fallback::Silent(_) | Fallback::Unprovable(_) => Kind::Transfer,
            _ => Kind::Ssh,
        }
    }
}

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
