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

    /// The relay's proof for connection `n` on the tuple of the link whose forwarded port is
    /// `to_port`, judged (the connection came from port `from_port`); pending until it is posted
    /// (forever where none will be).
    pub(super) async fn relay_proof(&self, n: u64, to_port: u16, from_port: u16) -> (Proof, u32) {
        loop {
            let notified = self.proved.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let uids = self.uids.lock().unwrap().clone();
            let uid = account_for(&mut self.accounts.lock().unwrap(), to_port).and_then(|a| a.watch.proof_for(n));
            if let (Some(uids), Some(uid)) = (uids, uid) {
                return (uids.judge(Seen::Held { uid }, from_port), uid);
            }
            notified.await;
        }
    }

    /// Whether a later connection than number `n` on the watched tuple of `to_port`'s link was
    /// proven by the relay.
    pub(super) fn later_proven(&self, n: u64, to_port: u16) -> bool {
        account_for(&mut self.accounts.lock().unwrap(), to_port).is_some_and(|a| a.watch.later_than(n))
    }

    /// Where `data` came from: the relay's proof where its tuple is watched and the proof comes
    /// first, else the helper's lookup. What it brings meanwhile waits in memory.
    pub(super) async fn origin_of(self: &Arc<Gate>, data: &mut DataChannel) -> Proof {
        let (who, ends, n, came) = (data.from(), data.ends(), data.watched, data.came);
        let (to_port, from_port) = (data.connected.1 as u16, data.originator.1 as u16);
        let (gate, asking) = (self.clone(), who.clone());
        let helper = async move {
            if n == 0 {
                return gate.prove(&asking, ends).await;
            }
            tokio::time::sleep(RELAY_GRACE).await;
            // Its own task: a lookup the relay's proof overtakes must still read its answer.
            let asked = tokio::spawn(async move { gate.prove(&asking, ends).await });
            asked.await.unwrap_or_else(|e| Proof::Unprovable(format!("its origin could not be checked ({e})")))
        };
        tokio::pin!(helper);
        let relayed = self.relay_proof(n, to_port, from_port);
        tokio::pin!(relayed);
        loop {
            tokio::select! {
                biased;
                (proof, uid) = &mut relayed, if n > 0 => {
                    tracing::debug!("origin of {who} read by the relay, {:.2?} after it came: uid {uid}", came.elapsed());
                    return proof;
                }
                proof = &mut helper => {
                    tracing::debug!("origin of {who} read by the helper, {:.2?} after it came", came.elapsed());
                    return match proof {
                        Proof::Proven(_) if self.later_proven(n, to_port) => Proof::Unproven(
                            "a later connection on its 4-tuple is the one the relay proved: the socket read may \
                             have been that one's"
                                .into(),
                        ),
                        proof => proof,
                    };
                }
                kept = data.keep_one() => if kept.is_err() {
                    return Proof::Unprovable(format!("it brought over {KEPT_MAX} bytes before its origin was known"));
                },
            }
        }
    }
}
