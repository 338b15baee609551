//! The gate's rules, without an origin check, and the relay's proofs.

use super::*;
use crate::events::Recorder;
use std::sync::Arc;

/// A gate, and the refusals it reported as possible thefts.
fn watched() -> (Gate, impl Fn() -> Vec<String>) {
    let seen = Arc::new(Recorder::default());
    let gate = Gate::build(Events::none().with(seen.clone()), tokio::sync::mpsc::unbounded_channel().0);
    let refused = move || {
        let thefts = seen.take().into_iter().filter(|e| matches!(e, Event::StrayRefused { late: false, .. }));
        thefts.map(|e| e.to_string()).collect()
    };
    (gate, refused)
}

const FTP: &str = "127.0.0.1";
/// A link's forwarded port, and another link's.
const OURS: &[u16] = &[40000];
const OTHER: &[u16] = &[40010, 40011];

fn ftp() -> IpAddr {
    FTP.parse().unwrap()
}

/// Admit a connection from the FTP server's data port to `port`.
fn admit(gate: &Gate, port: u16) -> bool {
    gate.admit_from(FTP, 2020, port, &format!("127.0.0.1:{port}"))
}

#[test]
fn admits_one_connection_from_the_ftp_server_while_pending() {
    let (gate, refused) = watched();
    assert!(!admit(&gate, 40000), "nothing pending");
    gate.open(OURS, ftp());
    assert!(!gate.admit_from("10.250.0.2", 2020, 40000, "127.0.0.1:40000"), "another address");
    assert!(!gate.admit_from("not an address", 1, 40000, "127.0.0.1:40000"));
    assert!(gate.admit_from("::ffff:127.0.0.1", 2020, 40000, "127.0.0.1:40000"), "mapped IPv4 is the same host");
    assert!(!admit(&gate, 40000), "only one per transfer");
    gate.open(OURS, ftp());
    gate.open(OURS, ftp()); // the next transfer, sent ahead
    assert!(admit(&gate, 40000));
    assert!(admit(&gate, 40000));
    assert!(!admit(&gate, 40000), "one per transfer sent");
    let refused = refused();
    assert_eq!(refused.len(), 5);
    assert!(refused[0].contains("no data connection is expected"));
    assert!(refused[1].contains("does not come from the FTP server 127.0.0.1"));
}

#[test]
fn a_late_connection_of_an_abandoned_transfer_is_refused_quietly() {
    let (gate, refused) = watched();
    gate.open(OURS, ftp());
    gate.close(OURS); // given up before the server connected
    assert!(!admit(&gate, 40000));
    assert!(refused().is_empty(), "our own late connection is no theft");
    assert!(!admit(&gate, 40000));
    assert_eq!(refused().len(), 1, "only one late connection is ours; a second may be anyone's");
}

/// Each link has its own account: one giving up does not withdraw another's
/// expectation, and a connection to one link's port is not another's.
#[test]
fn links_keep_their_own_accounts() {
    let (gate, refused) = watched();
    gate.open(OURS, ftp());
    gate.open(OTHER, ftp());
    gate.close(OTHER);
    assert!(admit(&gate, 40000), "another link's close left ours pending");
    gate.open(OURS, ftp());
    assert!(!admit(&gate, 40011), "the other link expects nothing now");
    assert!(admit(&gate, 40000));
    assert!(refused().is_empty());
}

/// A transfer sent ahead behind one that failed is given up, but the
/// server connected for it (150, 226 read while getting back in step);
/// that connection, still on its way, is refused when it comes, and the
/// retried transfer's own is admitted after it.
#[test]
fn a_connection_made_for_a_transfer_given_up_is_not_the_next_ones() {
    let (gate, refused) = watched();
    gate.open(OURS, ftp()); // f1
    assert!(admit(&gate, 40000));
    gate.open(OURS, ftp()); // f2: 425
    gate.open(OURS, ftp()); // f3, sent ahead: given up
    gate.close(OURS);
    gate.settle(OURS, 2); // f1's 150 and f3's 150
    gate.open(OURS, ftp()); // f2 again
    assert!(!admit(&gate, 40000), "f3's connection, late");
    assert!(admit(&gate, 40000), "f2's own");
    assert!(refused().is_empty());
    gate.settle(OURS, 3);
    gate.open(OURS, ftp());
    assert!(admit(&gate, 40000), "all made have arrived: nothing late");
}

/// Once the server's data connections are seen to come from one port, a connection from its
/// address but another port is refused as a theft, and counts for nothing.
#[test]
fn a_pinned_source_port_refuses_the_rest_of_the_servers_host() {
    let (gate, refused) = watched();
    gate.open(OURS, ftp());
    gate.pin_source(OURS, Some(2020));
    assert!(!gate.admit_from(FTP, 40123, 40000, "127.0.0.1:40000"), "another process on the server's host");
    assert!(admit(&gate, 40000), "the server's own, still expected");
    let refused = refused();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].contains("does not come from the FTP server's data port 2020"), "{refused:?}");
    gate.pin_source(OURS, None);
    gate.open(OURS, ftp());
    assert!(gate.admit_from(FTP, 40123, 40000, "127.0.0.1:40000"), "a varying port pins nothing");
}

/// A closed link's account ends with it: a later link that gets the same port (ports are
/// reused in a long run) starts with nothing owed, pinned or counted.
#[test]
fn a_retired_account_is_not_the_next_links() {
    let (gate, refused) = watched();
    gate.open(OURS, ftp());
    gate.pin_source(OURS, Some(2020));
    gate.close(OURS);
    gate.settle(OURS, 5);
    gate.retire(OURS);
    assert!(!admit(&gate, 40000), "the old link's late connection");
    gate.open(OURS, ftp());
    assert!(gate.admit_from(FTP, 2121, 40000, "127.0.0.1:40000"), "nothing late, no port pinned");
    assert!(refused().is_empty());
}

#[test]
fn close_withdraws_the_expectation() {
    let gate = Gate::build(Events::none(), tokio::sync::mpsc::unbounded_channel().0);
    gate.open(OURS, ftp());
    gate.close(OURS);
    assert!(!admit(&gate, 40000));
}

#[test]
fn incarnations_count_per_four_tuple() {
    let a = || Some(("10.9.9.9:2020".parse().unwrap(), "10.9.9.9:40000".parse().unwrap()));
    let b = || Some(("10.9.9.9:2020".parse().unwrap(), "10.9.9.9:40002".parse().unwrap()));
    assert_eq!([next_incarnation(a()), next_incarnation(a()), next_incarnation(b())], [1, 2, 1]);
}

/// A gate whose links' connections must be made by uid 1001 (the FTP login's account there),
/// watching the tuple from the server's port 2020 to [`OURS`]: a connection's number on it.
fn watching() -> (Gate, impl Fn() -> Vec<String>) {
    let (gate, refused) = watched();
    *gate.uids.lock().unwrap() = Some(Uids::new(1000, Some(1001), 1024));
    gate.open(OURS, ftp());
    assert!(gate.watch(OURS, tuple(2020)));
    assert!(!gate.watch(OURS, tuple(20)), "port 20 proves itself: nothing to watch");
    (gate, refused)
}

fn tuple(from: u16) -> watch::Ends {
    (SocketAddr::from(([127, 0, 0, 1], from)), SocketAddr::from(([127, 0, 0, 1], 40000)))
}

/// A connection on the watched tuple arrives: its number there.
fn arrives(gate: &Gate) -> u64 {
    gate.screen(FTP, 2020, 40000, Some(tuple(2020))).unwrap()
}

/// The relay's proof for connection `n` on the tuple, if posted within a moment.
async fn relayed(gate: &Gate, n: u64) -> Option<Proof> {
    let word = tokio::time::timeout(Duration::from_millis(50), gate.relay_word(n, 40000, 2020)).await;
    match word {
        Ok(relayed::Word::Own(proof, _)) => Some(proof),
        _ => None,
    }
}

const PROOF: &str = "FTPSSH-PROOF 127.0.0.1 2020 127.0.0.1 40000 1001";

#[tokio::test]
async fn a_relay_proof_posted_after_the_connection_came_proves_it() {
    let (gate, _) = watching();
    let n = arrives(&gate);
    assert_eq!(relayed(&gate, n).await, None, "nothing posted yet");
    gate.post_relay_line(PROOF);
    assert!(matches!(relayed(&gate, n).await, Some(Proof::Proven(_))));
}

/// The relay writes its proof once sshd has accepted the connection, so its channel is here
/// first: a proof posted before a connection came is an earlier one's, never the next one's.
#[tokio::test]
async fn a_relay_proof_posted_before_the_connection_came_is_not_its() {
    let (gate, _) = watching();
    gate.post_relay_line(PROOF);
    let n = arrives(&gate);
    assert_eq!(relayed(&gate, n).await, None);
    gate.post_relay_line(PROOF); // its own
    assert!(matches!(relayed(&gate, n).await, Some(Proof::Proven(_))));
}

#[tokio::test]
async fn a_relay_proof_naming_another_uid_names_the_intruder() {
    let (gate, _) = watching();
    let n = arrives(&gate);
    gate.post_relay_line("FTPSSH-PROOF 127.0.0.1 2020 127.0.0.1 40000 65534");
    match relayed(&gate, n).await {
        Some(Proof::Foreign(why)) => assert!(why.contains("uid 65534"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_relay_proof_for_another_tuple_proves_nothing_here() {
    let (gate, _) = watching();
    let n = arrives(&gate);
    gate.post_relay_line("FTPSSH-PROOF 127.0.0.1 2021 127.0.0.1 40000 1001");
    gate.post_relay_line("FTPSSH-PROOF 127.0.0.1 2020 127.0.0.1 40002 1001");
    gate.post_relay_line("150 FTPSSH-PROOF 127.0.0.1 2020 127.0.0.1 40000 1001");
    assert_eq!(relayed(&gate, n).await, None);
    assert_eq!(gate.screen(FTP, 2020, 40000, Some(tuple(2021))), Ok(0), "another tuple is not counted");
}

/// Two connections on the tuple before the proof: the proof is the later one's (one 4-tuple has
/// one live connection at a time); for the earlier one the relay says so, and its helper answer
/// "the server's" is then doubted.
#[tokio::test]
async fn a_relay_proof_is_the_latest_connections_on_the_tuple() {
    let (gate, _) = watching();
    let (first, second) = (arrives(&gate), arrives(&gate));
    gate.post_relay_line(PROOF);
    assert_eq!(relayed(&gate, first).await, None);
    assert!(matches!(relayed(&gate, second).await, Some(Proof::Proven(_))));
    let word = tokio::time::timeout(Duration::from_millis(50), gate.relay_word(first, 40000, 2020)).await;
    assert!(matches!(word, Ok(relayed::Word::Later)), "the first one's own proof never comes");
}
