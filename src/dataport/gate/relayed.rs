//! The gate's side of the relay's proofs ([`super::watch`]): which link watches which tuple,
//! the proofs as the relay's stderr brings them, and each watched connection's origin taken from
//! the relay's proof or the helper's lookup, whichever comes first.

use std::sync::Arc;
use std::time::Duration;

use super::proof::Proof;
use super::watch::{parse, Ends};
use super::{account_for, DataChannel, Gate, KEPT_MAX};
use crate::dataport::origin::Seen;

/// How long a watched connection waits for the relay's proof before the helper is asked too:
/// the proof normally comes with the connection, or within a millisecond of it.
const RELAY_GRACE: Duration = Duration::from_millis(3);
/// How long the helper's "the server's" for a watched connection waits for the relay's word:
/// the relay looks for sshd's accept for 50 ms. A later connection proven there means the
/// helper read that one's socket; no word at all, and the helper's answer stands.
const RELAY_CONFIRM: Duration = Duration::from_millis(60);

/// What the relay says of one connection on its watched tuple.
pub(super) enum Word {
    /// Its own proof (judged), and the uid it named.
    Own(Proof, u32),
    /// A later connection on the tuple was proven: none will come for this one.
    Later,
}

impl Gate {
    /// The link on `ports` has its relay watch `ends` (its data connections' 4-tuple, their
    /// source port pinned): true where that is worth a line to the relay (the origin check runs,
    /// and that port alone proves nothing).
    pub fn watch(&self, ports: &[u16], ends: Ends) -> bool {
        let worth = match &*self.uids.lock().unwrap() {
            Some(uids) => uids.by_port(ends.0.port()).is_none(),
            None => false,
        };
        worth && self.with(ports, |a| a.watch.set(ends)).is_some()
    }

    /// The link on `ports` has its relay stop watching: its data connections' source port varies.
    pub fn unwatch(&self, ports: &[u16]) {
        self.with(ports, |a| a.watch = Default::default());
    }

    /// Where the relay's stderr lines go: its proofs to the gate, anything else to the debug log.
    pub fn relay_lines(&self) -> Box<dyn Fn(&str) + Send + Sync> {
        let gate = self.me.clone();
        Box::new(move |line: &str| match gate.upgrade() {
            Some(gate) => gate.post_relay_line(line),
            None => tracing::debug!("the relay says {line:?}"),
        })
    }

    /// Take one stderr line of a relay.
    pub(super) fn post_relay_line(&self, line: &str) {
        let Some((ends, uid)) = parse(line) else {
            tracing::debug!("the relay says {line:?}");
            return;
        };
        let posted =
            account_for(&mut self.accounts.lock().unwrap(), ends.1.port()).is_some_and(|a| a.watch.post(ends, uid));
        tracing::debug!(
            "the relay proved {} -> {}: uid {uid}{}",
            ends.0,
            ends.1,
            if posted { "" } else { " (unused)" }
        );
        if posted {
            self.proved.notify_waiters();
        }
    }

    /// The relay's word on connection `n` on the tuple of the link whose forwarded port is
    /// `to_port` (it came from port `from_port`): its own proof, judged, or that a later
    /// connection on the tuple was proven (so none will come for it); pending until either.
    pub(super) async fn relay_word(&self, n: u64, to_port: u16, from_port: u16) -> Word {
        loop {
            let notified = self.proved.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let uids = self.uids.lock().unwrap().clone();
            let (own, later) = account_for(&mut self.accounts.lock().unwrap(), to_port)
                .map_or((None, false), |a| (a.watch.proof_for(n), a.watch.later_than(n)));
            match (uids, own) {
                (Some(uids), Some(uid)) => return Word::Own(uids.judge(Seen::Held { uid }, from_port), uid),
                _ if later => return Word::Later,
                _ => notified.await,
            }
        }
    }

    /// Where `data` came from: the relay's proof where its tuple is watched and the proof comes
    /// first, else the helper's lookup. What it brings meanwhile waits in memory. On a watched
    /// tuple the helper's "the server's" is taken only once the relay has not proven a later
    /// connection there: within [`RELAY_CONFIRM`], or for good where the relay says nothing.
    pub(super) async fn origin_of(self: &Arc<Gate>, data: &mut DataChannel) -> Proof {
        let (who, ends, n, came) = (data.from(), data.ends(), data.watched, data.came);
        // Nothing to look up, nothing to wait for: no task to hand over to.
        let (uids, ends) = match self.lookup(&who, ends) {
            Ok(lookup) => lookup,
            Err(known) => return known,
        };
        let (to_port, from_port) = (data.connected.1 as u16, data.originator.1 as u16);
        let (gate, asking) = (self.clone(), who.clone());
        let helper = async move {
            if n > 0 {
                tokio::time::sleep(RELAY_GRACE).await;
            }
            // Its own task: a lookup must read its answer even where this connection is decided
            // without it (the relay's proof came first, or it brought too much meanwhile); else
            // the next lookup would read this one's answer as its own.
            let asked = tokio::spawn(async move { gate.prove(&asking, uids, ends).await });
            asked.await.unwrap_or_else(|e| Proof::Unprovable(format!("its origin could not be checked ({e})")))
        };
        let relayed = self.relay_word(n, to_port, from_port);
        let confirm = tokio::time::sleep(RELAY_CONFIRM);
        tokio::pin!(helper, relayed, confirm);
        let (mut later, mut held_by_server) = (n == 0, None);
        let doubted = || {
            Proof::Unproven(
                "a later connection on its 4-tuple is the one the relay proved: the socket read may have been that one's"
                    .into(),
            )
        };
        loop {
            tokio::select! {
                biased;
                word = &mut relayed, if !later => match word {
                    Word::Own(proof, uid) => {
                        tracing::debug!("origin of {who} read by the relay, {:.2?} after it came: uid {uid}", came.elapsed());
                        return proof;
                    }
                    Word::Later if held_by_server.is_some() => return doubted(),
                    Word::Later => later = true,
                },
                proof = &mut helper, if held_by_server.is_none() => {
                    tracing::debug!("origin of {who} read by the helper, {:.2?} after it came", came.elapsed());
                    match proof {
                        Proof::Proven(_) if n > 0 && later => return doubted(),
                        Proof::Proven(_) if n > 0 => {
                            held_by_server = Some(proof);
                            confirm.as_mut().reset(tokio::time::Instant::now() + RELAY_CONFIRM);
                        }
                        proof => return proof,
                    }
                }
                () = &mut confirm, if held_by_server.is_some() => {
                    tracing::debug!("origin of {who}: the relay said nothing in {RELAY_CONFIRM:?}, the helper's answer stands");
                    return held_by_server.take().expect("waited for");
                }
                kept = data.keep_one(KEPT_MAX) => if kept.is_err() {
                    return Proof::Unprovable(format!("it brought over {KEPT_MAX} bytes before its origin was known"));
                },
            }
        }
    }
}
