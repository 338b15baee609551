//! The tunnel's SSH sessions, shared by its clients: where to, and who may use it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use anyhow::Result;

use crate::credentials::Login;
use crate::events::Events;
use crate::link::Spec;
use crate::ssh::endpoint::SshTarget;
use crate::ssh::Session;

/// Control connections per SSH session: one. russh hands each channel's messages over on a
/// bounded queue, and a full one stalls the whole session (docs/real-systems.md#ssh-in-rust-russh). The
/// built-in client always reads on (into a file); a client of the tunnel may stop reading its
/// data connection (lftp's `pget` stops each piece so before its ABOR), and with its channel
/// unread every other client of the same session would stall too. So each client's control
/// connection has an SSH session of its own, and a stalled client stalls only itself.
const LINKS_PER_SESSION: usize = 1;
/// The tunnel's shared state: where to, and the SSH sessions its clients' links run in.
pub struct Tunnel {
    pub(super) target: SshTarget,
    pub(super) spec: Spec,
    pub(super) events: Events,
    /// Only this uid's sockets are served (the tunnel's own).
    pub(super) uid: u32,
    sessions: RefCell<Vec<Pooled>>,
}

/// A session of the pool, and how many control connections run in it.
type Pooled = (Rc<Session>, Rc<Cell<usize>>);

/// A control connection's place in a session; given back when dropped.
pub(super) struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Tunnel {
    /// A tunnel to `target`'s FTP server (`spec`) for the clients of `uid`, no session open yet.
    pub(super) fn new(target: SshTarget, spec: Spec, events: Events, uid: u32) -> Tunnel {
        Tunnel { target, spec, events, uid, sessions: RefCell::new(Vec::new()) }
    }

    /// The link spec for a client's login.
    pub fn spec_for(&self, login: Login) -> Spec {
        // `--ftp-uid` names the account every client's session runs as.
        let login = Login { runs_as: self.spec.login.runs_as.clone(), ..login };
        Spec { login, ..self.spec.clone() }
    }

    /// A session with room for one more control connection: an open one, else a new one.
    pub(super) async fn session(&self) -> Result<(Rc<Session>, Slot)> {
        let room = self.sessions.borrow().iter().find(|(s, n)| n.get() < LINKS_PER_SESSION && !s.is_closed()).cloned();
        let (session, links) = match room {
            Some(found) => found,
            None => {
                tracing::info!("tunnel: a new SSH session to {}:{}", self.target.host, self.target.port);
                let session = Rc::new(Session::connect(&self.target, self.events.clone()).await?);
                let pooled = (session, Rc::new(Cell::new(0)));
                self.sessions.borrow_mut().push(pooled.clone());
                pooled
            }
        };
        links.set(links.get() + 1);
        Ok((session, Slot(links)))
    }

    /// Give back a client's place in `session`; an idle session is kept for the next client,
    /// a second idle one is closed (sshd ends its helpers).
    pub(super) async fn release(&self, session: Rc<Session>, slot: Slot) {
        drop(slot);
        let idle = |(s, n): &(Rc<Session>, Rc<Cell<usize>>)| n.get() == 0 && !s.is_closed();
        let closing = {
            let mut sessions = self.sessions.borrow_mut();
            sessions.retain(|(s, _)| !s.is_closed());
            match sessions.iter().filter(|p| idle(p)).count() > 1 {
                true => sessions
                    .iter()
                    .position(|(s, _)| Rc::ptr_eq(s, &session))
                    .filter(|&i| idle(&sessions[i]))
                    .map(|i| sessions.remove(i)),
                false => None,
            }
        };
        if let Some((session, _)) = closing {
            session.close().await;
        }
    }

    /// Close every session (after Ctrl-C, once the clients ended or ran out of time).
    pub(super) async fn close_all(&self) {
        let sessions = std::mem::take(&mut *self.sessions.borrow_mut());
        for (session, _) in sessions {
            session.close().await;
        }
    }
}
