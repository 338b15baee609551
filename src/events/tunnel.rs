//! The tunnel's own facts about an outside client, on this host: its control connection's
//! end C, the SO_REUSEADDR set for its `sendport` off, where its data connections are made,
//! and what was refused. The server's side of its transfers is told by the built-in
//! client's events (forward, 4-tuples, collisions), emitted by the same links.

use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;

/// One fact; in JSON, `{"event": "tunnel", "fact": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    /// A client connected to the tunnel: its end is C, the default data port.
    Client {
        /// Its end of the control connection (C).
        client: SocketAddr,
        /// Its socket's owner, the tunnel's uid.
        uid: u32,
    },
    /// A connection to the tunnel from another uid's socket: `421`.
    ClientRefused {
        /// Its end.
        client: SocketAddr,
        /// Whose socket it is, in words.
        whose: String,
    },
    /// SO_REUSEADDR set on the client's control socket (`pidfd_getfd`), for its `sendport` off.
    ReuseSet {
        /// Its end (C).
        client: SocketAddr,
        /// The client's process.
        pid: u32,
        /// Its descriptor of the socket.
        fd: i32,
    },
    /// SO_REUSEADDR could not be set: a classic client's `sendport` off will fail.
    ReuseNotSet {
        /// Its end (C).
        client: SocketAddr,
        /// Why.
        why: String,
    },
    /// The client's PASV or EPSV, answered with a listener of the tunnel's.
    PassiveListener {
        /// `PASV` or `EPSV`.
        verb: String,
        /// Where the tunnel listens.
        listen: SocketAddr,
    },
    /// The client's PORT or EPRT: it listens there, the tunnel connects; the server is told nothing.
    ClientListens {
        /// Where the client listens (not `at`: the JSON lines' time).
        listen: SocketAddr,
    },
    /// A PORT or EPRT to an address that is not this host's loopback (the bounce attack): `500`.
    PortRefused {
        /// The address it named.
        to: SocketAddr,
    },
    /// The client's side of a data connection, its owner checked: its 4-tuple on this host.
    ClientData {
        /// The connecting end (the client's, to a passive port; the tunnel's, to the client's listener).
        from: SocketAddr,
        /// The listening end.
        to: SocketAddr,
    },
    /// A data connection refused on the client's side (another uid's, or another connection
    /// waiting ahead of the tunnel's at the client's listener).
    DataRefused {
        /// What happened, with the addresses.
        why: String,
    },
    /// The client's AUTH, refused (534): it goes on in plain FTP, inside SSH.
    AuthRefused,
    /// The client has gone.
    ClientGone {
        /// Its end (C).
        client: SocketAddr,
    },
}

impl Fact {
    /// A refusal, said on stderr without `-v` too.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Fact::ClientRefused { .. } | Fact::ReuseNotSet { .. } | Fact::PortRefused { .. } | Fact::DataRefused { .. }
        )
    }
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tunnel: ")?;
        match self {
            Fact::Client { client, uid } => write!(f, "client {client} (uid {uid}): C = {}", client.port()),
            Fact::ClientRefused { client, whose } => {
                write!(f, "refused a client at {client}: its socket is {whose}, not the tunnel's")
            }
            Fact::ReuseSet { client, pid, fd } => write!(
                f,
                "SO_REUSEADDR set on the client's control socket (process {pid}, descriptor {fd}), so that it can listen on C = {} with sendport off",
                client.port()
            ),
            Fact::ReuseNotSet { client, why } => write!(
                f,
                "could not set SO_REUSEADDR on the client's control socket ({why}): a classic ftp with sendport off will fail to listen on C = {} (bind: Address already in use); use passive mode there",
                client.port()
            ),
            Fact::PassiveListener { verb, listen } => {
                write!(f, "the client's {verb} is answered by the tunnel's own listener {listen}")
            }
            Fact::ClientListens { listen } => {
                write!(f, "the client listens on {listen}: the tunnel connects there, the server is told nothing")
            }
            Fact::PortRefused { to } => write!(
                f,
                "refused the client's PORT to {to}: only this host's loopback (anything else is the FTP bounce attack)"
            ),
            Fact::ClientData { from, to } => write!(f, "the client's data connection {from} -> {to}"),
            Fact::DataRefused { why } => f.write_str(why),
            Fact::AuthRefused => f.write_str(
                "refused the client's AUTH: its control and data connections are inside SSH already, so it goes on in plain FTP",
            ),
            Fact::ClientGone { client } => write!(f, "client {client} has gone"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    #[test]
    fn json_and_line() {
        let fact =
            Fact::ClientData { from: "127.0.0.1:40001".parse().unwrap(), to: "127.0.0.1:40000".parse().unwrap() };
        let json = serde_json::to_string(&Event::Tunnel(fact.clone())).unwrap();
        assert_eq!(json, r#"{"event":"tunnel","fact":"client_data","from":"127.0.0.1:40001","to":"127.0.0.1:40000"}"#);
        assert_eq!(fact.to_string(), "tunnel: the client's data connection 127.0.0.1:40001 -> 127.0.0.1:40000");
        assert_eq!(
            serde_json::to_string(&Event::Tunnel(Fact::AuthRefused)).unwrap(),
            r#"{"event":"tunnel","fact":"auth_refused"}"#
        );
    }
}
