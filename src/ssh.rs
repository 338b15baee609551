//! The SSH session: connect, check the host key, authenticate, and open the
//! channels everything else rides on (exec, direct-tcpip, tcpip-forward, and
//! the forwarded channels handed to whoever asked for the forward), and the
//! helpers run on the SSH server.

pub mod auth;
pub mod ciphers;
pub mod config;
pub mod endpoint;
pub mod forwarded;
pub mod helper;
pub mod hostkeys;
pub mod prompt;
pub mod quickack;
pub mod session;
pub mod shell;
pub mod transport;

pub use helper::EXEC_TIMEOUT;
pub use session::Session;
pub use transport::CONNECT_TIMEOUT;
