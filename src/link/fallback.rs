//! The passive fallback of a link: when the default port will not do, why
//! is said once passive has worked, and the rest of the link's transfers use
//! EPSV/PASV through SSH ([`crate::dataport::passive`]).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

use super::{Data, DataMode, Early, Link};
use crate::dataport::path::DataPath;
use crate::dataport::{self, Fallback};
use crate::error::{classified, Classify, Kind};
use crate::events::Event;
use crate::ftp::control::{Control, FtpError, Place};
use crate::ftp::digest::Method;
use crate::ftp::Command;

impl Link<'_> {
    /// The default port will not do, for `why`: in `auto`, use passive from
    /// now on; otherwise that is the error.
    pub(super) fn fall_back(&mut self, why: Fallback) -> Result<()> {
        if self.spec.mode != DataMode::Auto {
            return Err(classified(why.kind(), format!("{why}; try --data-mode passive")));
        }
        self.path.fall_back(why);
        Ok(())
    }

    /// Passive works: say why it is used. Once per run on stderr; the other
    /// links of a bulk run say it with -v.
    pub(super) fn announce_fallback(&mut self) {
        static SAID: AtomicBool = AtomicBool::new(false);
        let Some(why) = self.fell_back() else { return };
        let first = !SAID.swap(true, Ordering::Relaxed);
        self.events().emit(Event::FellBack { why: why.to_string(), first });
    }

    /// Passive could not be set up either: one error that tells both.
    pub(super) fn passive_failed_too(&mut self, e: anyhow::Error) -> anyhow::Error {
        match self.fell_back() {
            Some(why) => e.context(format!("the default port did not work ({why}), and passive failed too")),
            None => e,
        }
    }

    /// Why this link went passive, once (then passive is known to work, or failed too).
    fn fell_back(&mut self) -> Option<Fallback> {
        match &mut self.path {
            DataPath::Passive(passive) => passive.fell_back.take(),
            DataPath::DefaultPort(_) => None,
        }
    }

    pub(super) async fn start_passive(&mut self, cmd: &Command) -> Result<Data> {
        let channel = match dataport::passive::open(self.session, &mut self.control, &self.spec.ftp.host).await {
            Ok(channel) => channel,
            Err(e) => return Err(self.passive_failed_too(e)),
        };
        self.announce_fallback();
        let mut channel = channel;
        let mut early = Early::default();
        self.control.send(cmd).await?;
        let reply = loop {
            tokio::select! {
                r = self.control.read_reply() => break r?,
                () = early.read_one(&mut channel) => {}
            }
        };
        if !reply.is_preliminary() {
            return Err(FtpError { command: cmd.redacted(), reply }.classified());
        }
        Ok(Data { channel, announced: reply.announced_size(), early, eof_sent: false })
    }

    /// Leave the default-port path. A server that is still busy with the last
    /// command (silent, or 150 and no connection) gets a new control connection.
    pub(super) async fn leave_default_port(&mut self, reconnect: bool) -> Result<()> {
        self.path.cancel_forward(self.session).await;
        if reconnect {
            let place = self.control.place().clone();
            self.control.quit().await;
            self.control = dataport::connect_control(self.session, &self.spec.ftp, self.spec.timeout).await?.0;
            crate::ftp::login::timed_login(&mut self.control, &self.spec.login).await?;
            // An outside client's directory and settings (a tunnel's), where it had changed them.
            retrace(&mut self.control, &place).await?;
            // HASH is back at the server's default (ProFTPD: SHA-1): select again what --verify
            // chose, before the transfer's own HASH (if unanswered) and every later file's.
            if let Some(Some(Method::Hash(a))) = self.verify_method {
                let opts = Command::Opts(format!("HASH {}", a.hash_name()));
                self.control.expect(&opts, |r| r.code == 200).await?;
            }
        }
        Ok(())
    }
}

/// Bring `control`, logged in anew, to `place`: the old connection's moves and settings, each of
/// which must succeed again.
async fn retrace(control: &mut Control, place: &Place) -> Result<()> {
    let Some(commands) = place.commands() else {
        let why = "a new control connection cannot return to the client's directory: it moved too often to retrace";
        return Err(classified(Kind::Transfer, why));
    };
    for line in commands {
        let cmd = Command::Verbatim(line.into());
        control
            .expect(&cmd, |r| (200..300).contains(&r.code))
            .await
            .context("a new control connection could not return to where the client was")?;
    }
    Ok(())
}
