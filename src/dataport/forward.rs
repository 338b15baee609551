//! The reverse forward (`-R` of the book): sshd listens on the port the FTP
//! server will connect to, and hands each connection to us through the
//! session's gate ([`crate::dataport::gate`]).

use anyhow::{Context, Result};

use crate::dataport::gate::Gate;
use crate::ssh::Session;

/// How long sshd may take to confirm that a forward is cancelled.
const CANCEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The reverse forwards held for one control connection.
#[derive(Debug, Default, Clone)]
pub struct ReverseForward {
    /// Address sshd listens on: where the FTP server will connect.
    pub address: String,
    /// The forwarded ports.
    pub ports: Vec<u16>,
}

impl ReverseForward {
    /// Where the FTP server connects: the address and the first port.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        Some(std::net::SocketAddr::new(self.address.parse().ok()?, *self.ports.first()?))
    }

    /// Ask for the same ports again after [`ReverseForward::cancel`] (quietly: the trace said it once).
    pub async fn renew(&self, session: &Session) -> Result<ReverseForward> {
        let port = *self.ports.first().context("no port was forwarded")?;
        Self::request(session, &self.address, port, self.ports.get(1).copied()).await
    }

    /// Forward `address:port` (required) and `address:extra` (best effort).
    pub async fn request(session: &Session, address: &str, port: u16, extra: Option<u16>) -> Result<ReverseForward> {
        Gate::of(session); // judges whatever comes to the ports from their first moment
        session.tcpip_forward(address, port).await.map_err(|e| {
            e.context(format!(
                "the FTP server will connect to {address}:{port}; sshd must listen there \
                 (needs AllowTcpForwarding yes/remote, GatewayPorts clientspecified for a non-loopback address, and the port free)"
            ))
        })?;
        let mut ports = vec![port];
        if let Some(extra) = extra {
            match session.tcpip_forward(address, extra).await {
                Ok(()) => ports.push(extra),
                Err(e) => tracing::debug!("optional forward {address}:{extra} not set up: {e:#}"),
            }
        }
        Ok(ReverseForward { address: address.to_string(), ports })
    }

    /// Cancel every forward (best effort: the session may already be gone, or
    /// its server no longer answering).
    /// Both requests go out at once, in order: a reclaim's SYN may follow right behind.
    pub async fn cancel(&self, session: &Session) {
        let cancel = |port: u16| async move {
            let cancelled = tokio::time::timeout(CANCEL_TIMEOUT, session.cancel_tcpip_forward(&self.address, port));
            match cancelled.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("cancel forward {}:{port}: {e:#}", self.address),
                Err(_) => {
                    tracing::debug!("cancel forward {}:{port}: no answer within {CANCEL_TIMEOUT:?}", self.address)
                }
            }
        };
        match self.ports[..] {
            [] => {}
            [a] => cancel(a).await,
            [a, b, ..] => _ = tokio::join!(cancel(a), cancel(b)),
        }
    }
}
