//! The event stream of real runs (`--events FILE`), checked against what the
//! socket tables of both hosts show independently: one default-port download
//! (C, P, the dialect, the forward, the data connection's 4-tuple) and one
//! TIME_WAIT collision (the 425, the reclaims, the 4-tuple's incarnations).
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::process::Command;

use common::lab::{Lab, ServerSysctl};
use common::tool::{run, stderr, Tool};
use serde_json::Value;

/// The events of a run, one JSON object a line.
fn events(tool: &Tool, file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(tool.work.path().join(file)).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn port(addr: &Value) -> u16 {
    addr.as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap()
}

/// `ss -tan state time-wait` in namespace `ns`: (local, peer) pairs.
fn time_wait(ns: &str) -> Vec<(String, String)> {
    let out = Command::new("ip").args(["netns", "exec", ns, "ss", "-Htan", "state", "time-wait"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

#[test]
fn a_default_port_download_tells_c_p_the_dialect_the_forward_and_the_tuple() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let ftp_port = lab.port("PROFTPD_PORT");
    let out = run(tool.cmd(ftp_port).args(["-v", "--events", "events.jsonl", "get", "small.bin"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let events = events(&tool, "events.jsonl");
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    let order =
        ["ssh_connected", "control_opened", "dialect_chosen", "forward_listening", "data_accepted", "transfer_done"];
    let mut at = 0;
    for want in order {
        at += kinds[at..].iter().position(|k| *k == want).unwrap_or_else(|| panic!("no {want} after {at}: {kinds:?}"));
    }
    let c = port(&of(&events, "ssh_connected")[0]["client"]);
    let opened = of(&events, "control_opened")[0];
    assert!(opened["via"]["relay"].is_string(), "{opened}");
    let p = port(&opened["proxy"]);
    let dialect = of(&events, "dialect_chosen")[0];
    assert_eq!(
        (dialect["dialect"].as_str(), dialect["data_port"].as_u64()),
        (Some("pro_ftpd"), Some(u64::from(p - 1)))
    );
    assert_eq!(port(&of(&events, "forward_listening")[0]["listen"]), p - 1);
    let data = of(&events, "data_accepted")[0];
    assert_eq!(port(&data["to"]), p - 1, "the server connected to U-1 = P-1");
    assert!(data["incarnation"].as_u64().unwrap() >= 1);
    let size = std::fs::metadata(tool.remote_path("small.bin")).unwrap().len();
    assert_eq!(of(&events, "transfer_done")[0]["bytes"].as_u64(), Some(size));
    assert!(events.iter().any(|e| e["event"] == "sent" && e["line"] == "RETR small.bin"));
    assert!(events.iter().any(|e| e["event"] == "received" && e["line"].as_str().unwrap().starts_with("226")));
    assert!(!events.iter().any(|e| e["line"].as_str().is_some_and(|l| l.contains(lab.var("FTP_PASSWORD")))));

    // The socket tables agree, read independently: the FTP server closed the control
    // connection (after QUIT), so the server host holds (FTP port, P) in TIME_WAIT. The SSH
    // connection's end C is not checked: how it ends is a race between our DISCONNECT and
    // exit and sshd closing on the message, and one that ends with bytes unread ends with a
    // RST and leaves no TIME_WAIT at all (C is in the client's table in most runs, not all).
    let server = time_wait(lab.var("SERVER_NS"));
    let control = (format!("127.0.0.1:{ftp_port}"), format!("127.0.0.1:{p}"));
    assert!(server.contains(&control), "P {p} not in {server:?}");
    // -v is rendered from the same events.
    assert!(err.contains(&format!("relay: P = {p} on 127.0.0.1")), "{err}");
    assert!(err.contains(&format!("(C = {c})")), "{err}");
}

#[test]
fn a_collision_tells_the_425_the_reclaim_and_rising_incarnations() {
    let _ts = ServerSysctl::set(&Lab::get(), "net.ipv4.tcp_timestamps", "0", Some("1"));
    let tool = Tool::new();
    let fixed = tool.lab.port("PROFTPD_FIXED_PORT");
    let args = ["--events", "events.jsonl", "mget", "many/f00[1-4].txt", "-d", "out"];
    let out = run(tool.cmd(fixed).args(args));
    assert!(out.status.success(), "{}", stderr(&out));
    let events = events(&tool, "events.jsonl");
    let collisions = of(&events, "collision");
    assert!(!collisions.is_empty(), "no collision: {events:?}");
    assert!(collisions[0]["reply"].as_str().unwrap().starts_with("425"), "{}", collisions[0]);
    let tuple = &collisions[0]["tuple"];
    assert_eq!(tuple["server_port"].as_u64(), Some(u64::from(fixed - 1)), "the fixed data source port S");
    // After the first 425 each download's tuple is reclaimed as its data arrives, ready for the
    // next RETR (a second 425 is possible where both ends closed at once). A download whose
    // close sshd began holds its TIME_WAIT on sshd's side: nothing to reclaim there.
    assert!(collisions.len() <= 2, "{collisions:?}");
    let reclaimed = of(&events, "reclaimed");
    assert!((2..=5).contains(&reclaimed.len()), "the collided RETR's and those behind: {reclaimed:?}");
    assert!(reclaimed.iter().all(|r| &r["tuple"] == tuple), "{reclaimed:?}");
    // Every download (NLST's listing too) went over the one 4-tuple, each its next incarnation.
    let data = of(&events, "data_accepted");
    assert_eq!(data.len(), 5, "the listing and four files: {data:?}");
    let first = data[0]["incarnation"].as_u64().unwrap();
    for (i, d) in data.iter().enumerate() {
        assert_eq!((&d["from"], &d["to"]), (&data[0]["from"], &data[0]["to"]), "one 4-tuple");
        assert_eq!(d["incarnation"].as_u64(), Some(first + i as u64), "{data:?}");
    }
    assert_eq!(port(&data[0]["from"]), fixed - 1);
}
