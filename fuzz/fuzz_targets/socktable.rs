//! `socktable::parse` of `/proc/net/tcp{,6}` text, `Entry::time_wait_left`, and the readings
//! made of a table: `discovery::parse_snapshot` (`id -u` then the tables), `find_proxy`,
//! `check_listener`, `time_wait_on`, `port_busy`, `held_by_another`.
#![no_main]

use ftpssh::dataport::discovery::{self, Listener, NotFound};
use ftpssh::tcp::table::{self as socktable, TcpState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let entries = socktable::parse(&text);
    // Lines are independent: one odd row never hides another.
    let one_by_one: usize = text.lines().map(|l| socktable::parse(l).len()).sum();
    assert_eq!(entries.len(), one_by_one);
    assert!(socktable::new_entries(&entries, &entries).is_empty());
    for e in &entries {
        for clk_tck in [0, 1, 100, 250, 1000, u64::MAX, e.timer_ticks, e.timer_ticks.wrapping_add(1)] {
            let left = e.time_wait_left(clk_tck);
            assert_eq!(left.is_some(), e.state == TcpState::TimeWait && clk_tck != 0);
        }
        if e.state == TcpState::Listen {
            // Listening as sshd's own uid: its own, unless another account's listener covers it.
            match discovery::check_listener(&entries, e.local, e.uid) {
                Listener::Exact => {}
                Listener::Squatted(other) => assert!(other.uid != e.uid && other.uid != 0),
                other => panic!("{other:?}"),
            }
        }
        // The FTP port too: a data source is below 1024 or the FTP port's neighbour.
        for ftp_port in [0, 21, e.local.port(), e.remote.port().wrapping_add(1)] {
            let _ = discovery::time_wait_on(&entries, e.local.port(), ftp_port);
            let _ = discovery::port_busy(&entries, e.remote.port(), ftp_port);
        }
        let _ = discovery::held_by_another(&entries, e.local, e.local, e.remote);
    }
    if let Ok(snap) = discovery::parse_snapshot(&text) {
        assert!(!snap.entries.is_empty());
        for e in snap.entries.iter().take(8) {
            let port = e.remote.port();
            // The same reading twice shows nothing new.
            assert_eq!(discovery::find_proxy(&snap, &snap, None, port), Err(NotFound::Nothing(port)));
            let empty = discovery::Snapshot { uid: snap.uid, entries: Vec::new() };
            let _ = discovery::find_proxy(&empty, &snap, Some(e.remote.ip()), port);
        }
    }
});
