//! The login on a control connection: USER, PASS, TYPE, timed (the bound for
//! a data connection grows with the FTP server's round trips).

use std::time::Duration;

use anyhow::Result;

use crate::credentials::Login;
use crate::ftp::control::Control;

/// USER, PASS, TYPE; how long they took (their round trips: not the
/// time PASS was held at the login's gate).
pub async fn timed_login(control: &mut Control, login: &Login) -> Result<Duration> {
    let started = std::time::Instant::now();
    let mut held = Duration::ZERO;
    let gate = async {
        let since = std::time::Instant::now();
        let opened = match &login.gate {
            Some(gate) => gate.opened().await,
            None => Ok(()),
        };
        held = since.elapsed();
        opened
    };
    let representation = match login.ascii {
        true => crate::ftp::command::TransferType::Ascii,
        false => crate::ftp::command::TransferType::Binary,
    };
    control.login(&login.user, &login.password, representation, gate).await?;
    Ok(started.elapsed().saturating_sub(held))
}
