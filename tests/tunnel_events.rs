//! `tunnel --events FILE`: the tunnel's own facts about outside clients (their C, the
//! SO_REUSEADDR set for `sendport` off, the listeners, each data connection's ends on this
//! host) in the same JSON lines as the server side's (the reverse forward's data connections),
//! from a real run: curl passive and active, the classic ftp with `sendport` off.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use serde_json::Value;

use common::tool::{assert_same, Tool};
use common::tunnel::{captured_with, client, client_script, ok, read};

#[test]
fn the_tunnels_facts_are_events() {
    let tool = Tool::new();
    let small = read(&tool.remote_path("small.bin"));
    let dir = tool.work.path();
    let file = dir.join("events.jsonl");
    let extra = ["--events", file.to_str().unwrap()];
    let trace = captured_with(&tool, "127.0.0.1", tool.lab.port("PROFTPD_PORT"), &extra, &[&small], |port| {
        let url = format!("ftp://127.0.0.1:{port}/small.bin");
        ok(&client(&tool, dir, "curl", &["-sSn", &url, "-o", "pasv.bin"]), "curl (EPSV)");
        ok(&client(&tool, dir, "curl", &["-sSn", "-P", "-", &url, "-o", "port.bin"]), "curl -P -");
        let script = "sendport\nbinary\nget small.bin off.bin\nquit\n";
        ok(&client_script(&tool, dir, "inetutils-ftp", &["-v", "127.0.0.1", &port.to_string()], script), "ftp");
    });
    for name in ["pasv.bin", "port.bin", "off.bin"] {
        assert_same(&read(&dir.join(name)), &small, name);
    }
    let text = String::from_utf8(read(&file)).unwrap();
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let facts =
        |fact: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == "tunnel" && e["fact"] == fact).collect() };
    let clients: Vec<&str> = facts("client").iter().map(|e| e["client"].as_str().unwrap()).collect();
    assert_eq!(clients.len(), 3, "{text}");
    assert_eq!(facts("client_gone").len(), 3, "{text}");
    // Each client's C had SO_REUSEADDR set, its holder named.
    for set in facts("reuse_set") {
        assert!(clients.contains(&set["client"].as_str().unwrap()), "{set}");
        assert!(set["pid"].as_u64().unwrap() > 1, "{set}");
    }
    assert_eq!(facts("reuse_set").len(), 3, "{text}");
    let passive = facts("passive_listener");
    assert_eq!(passive.len(), 1, "{text}");
    assert_eq!(passive[0]["verb"], "EPSV");
    let listens = facts("client_listens");
    assert_eq!(listens.len(), 1, "{text}");
    // Three data connections on this host: to our passive listener, to curl's, and to the
    // classic ftp's C.
    let data: Vec<(&str, &str)> =
        facts("client_data").iter().map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap())).collect();
    assert_eq!(data.len(), 3, "{text}");
    assert!(data.iter().all(|(f, t)| f.starts_with("127.0.0.1:") && t.starts_with("127.0.0.1:")), "{data:?}");
    assert!(data.iter().any(|(_, t)| *t == passive[0]["listen"].as_str().unwrap()), "{data:?}");
    assert!(data.iter().any(|(_, t)| *t == listens[0]["listen"].as_str().unwrap()), "{data:?}");
    assert!(data.iter().any(|(_, t)| *t == clients[2]), "the data connection to the classic ftp's C: {data:?}");
    // The server's side of the same transfers, in the same stream.
    assert!(events.iter().filter(|e| e["event"] == "data_accepted").count() >= 3, "{text}");
    // -v says the same facts.
    assert!(trace.contains("tunnel: the client's data connection"), "{trace}");
    assert!(trace.contains("tunnel: SO_REUSEADDR set on the client's control socket"), "{trace}");
}
