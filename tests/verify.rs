//! `--verify`: each copy checked with the FTP server's own hash (ProFTPD's
//! mod_digest, in the lab), a lying server's copy refused and never saved,
//! and a server without hashes checked by size, said once.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use common::fakeftp::FakeFtp;
use common::tool::{captured, run, stderr, RemoveOnDrop, Tool, FILES};

fn report(tool: &Tool, name: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(tool.work.path().join(name)).unwrap()).unwrap();
    v["transfers"].as_array().unwrap().clone()
}

/// A batch (bulk: `--verify` is on by default) of every test file and one
/// upload from ProFTPD with mod_digest: each is checked with SHA-256 by HASH.
#[test]
fn every_copy_is_checked_with_the_servers_sha256() {
    let tool = Tool::new();
    let dir = tool.work.path();
    let upload = format!("upload/verify-{}.bin", std::process::id());
    let _cleanup = RemoveOnDrop(tool.remote_path(&upload));
    std::fs::write(dir.join("up.bin"), b"uploaded, then hashed by the server\n".repeat(1000)).unwrap();
    let mut batch: String = FILES.iter().map(|f| format!("get \"{f}\"\n")).collect();
    batch.push_str(&format!("put up.bin {upload}\n"));
    std::fs::write(dir.join("v.batch"), batch).unwrap();
    let small = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let args = ["batch", "v.batch", "--report", "json", "report.json"];
    let err = stderr(&captured(&tool, tool.lab.port("PROFTPD_PORT"), &args, &small));
    assert!(err.contains("---> OPTS HASH SHA-256") && err.contains("---> HASH small.bin"), "{err}");
    let transfers = report(&tool, "report.json");
    assert_eq!(transfers.len(), FILES.len() + 1);
    for t in &transfers {
        assert_eq!(t["outcome"], "ok", "{t}");
        assert_eq!(t["verified"], "sha256 = server's", "{t}");
    }
    for f in FILES {
        let want = std::fs::read(tool.remote_path(f)).unwrap();
        common::tool::assert_same(&std::fs::read(dir.join(f)).unwrap(), &want, f);
    }
    assert_eq!(std::fs::read(tool.remote_path(&upload)).unwrap(), std::fs::read(dir.join("up.bin")).unwrap());
    // --no-verify: sizes only, no HASH asked.
    let out = run(tool.cmd(tool.lab.port("PROFTPD_PORT")).args(["-v", "--no-verify", "batch", "v.batch"]));
    assert!(out.status.success() && !stderr(&out).contains("---> HASH"), "{}", stderr(&out));
}

/// ProFTPD copying the data itself (`UseSendfile off`: the lab's proftpd-max2) reads the control
/// connection during a transfer and answers what it reads there at once: the next file's SIZE,
/// HASH and RETR, sent ahead, wait in our relay for the transfer's end. It also sends its 226 without waiting for our end to close, so the next
/// file's connection comes while this one's last megabytes are still on the way: it is read
/// meanwhile, or the whole SSH session stalls. Every file of an mget arrives whole and checked.
#[test]
fn what_is_sent_ahead_waits_for_a_server_that_reads_during_transfers() {
    let tool = Tool::new();
    let dir = format!("upload/ahead-{}", std::process::id());
    let path = tool.remote_path(&dir);
    std::fs::create_dir_all(&path).unwrap();
    let names: Vec<String> = (1..=4).map(|i| format!("f{i}.bin")).collect();
    let mut cleanup = vec![];
    for (i, name) in names.iter().enumerate() {
        let bytes: Vec<u8> = (0..16u32 << 20).map(|n| (n.wrapping_mul(2654435761) >> 13) as u8 ^ i as u8).collect();
        std::fs::write(path.join(name), bytes).unwrap();
        cleanup.push(RemoveOnDrop(path.join(name)));
    }
    let globs: Vec<String> = names.iter().map(|n| format!("{dir}/{n}")).collect();
    // No retries: a session stalled by the next transfer's unread connection fails (60 s), not retried.
    let mut args = vec!["-vv", "--verify", "--retries", "0", "mget", "-d", "out", "--report", "json", "r.json"];
    args.extend(globs.iter().map(String::as_str));
    std::fs::create_dir(tool.work.path().join("out")).unwrap();
    let out = run(tool.cmd(tool.lab.port("PROFTPD_MAX2_PORT")).args(&args));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("---> HASH"), "{err}");
    for t in &report(&tool, "r.json") {
        assert_eq!(t["verified"], "sha256 = server's", "{t}");
    }
    for name in &names {
        let want = std::fs::read(path.join(name)).unwrap();
        common::tool::assert_same(&std::fs::read(tool.work.path().join("out").join(name)).unwrap(), &want, name);
    }
    drop(cleanup);
    let _ = std::fs::remove_dir(&path);
}

/// A server whose HASH does not match the bytes it sent: the transfer fails
/// (exit 5), and nothing is saved, neither the file nor a part file.
#[test]
fn a_copy_whose_hash_differs_from_the_servers_fails_and_is_not_saved() {
    let tool = Tool::new();
    let fake = FakeFtp::start(&tool.lab, b"the bytes that were sent\n", b"the bytes the server says it has\n");
    let get =
        |extra: &[&str]| run(tool.cmd(fake.port).args(["-v", "--data-mode", "passive", "--retries", "0"]).args(extra));
    let out = get(&["--verify", "get", "file.txt"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("sha256 of the copy is") && err.contains("nothing saved"), "{err}");
    assert_eq!(tool.work_entries(), Vec::<String>::new(), "no file, no part file");
    // Bulk runs verify by default: the same failure, in the report.
    let out = get(&["mget", "file.txt", "-d", "out", "--report", "json", "r.json"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let t = &report(&tool, "r.json")[0];
    assert_eq!(t["outcome"], "failed");
    assert!(t["error"].as_str().unwrap().contains("but the server's is"), "{t}");
    assert_eq!(common::tool::entries(&tool.work.path().join("out")), Vec::<String>::new());
    // The bytes themselves arrive fine: only the hash check refused them.
    let out = get(&["get", "file.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(tool.work.path().join("file.txt")).unwrap(), b"the bytes that were sent\n");
}

/// An upload whose copy on the server hashes differently fails (exit 5), and the bad copy is
/// deleted, not left under the name.
#[test]
fn an_upload_whose_hash_differs_fails_and_the_bad_copy_is_deleted() {
    let tool = Tool::new();
    let fake = FakeFtp::start(&tool.lab, b"the bytes that were sent\n", b"the bytes the server says it has\n");
    std::fs::write(tool.work.path().join("up.txt"), b"the bytes that were sent\n").unwrap();
    let out = run(tool.cmd(fake.port).args(["--data-mode", "passive", "--retries", "0", "--verify", "put", "up.txt"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("the server's copy of up.txt was deleted"), "{err}");
    assert_eq!(*fake.log.lock().unwrap(), ["STOR up.txt 25", "DELE up.txt"]);
}

/// inetutils ftpd offers no hash: sizes are checked, and the run says so once
/// (two workers, each with its own session and FEAT).
#[test]
fn without_a_server_hash_the_size_is_checked_and_that_is_said_once() {
    let tool = Tool::new();
    let out = run(tool.cmd(tool.lab.port("INETUTILS_PORT")).args([
        "mget",
        "many/f00[1-6].txt",
        "-d",
        "out",
        "--jobs",
        "2",
        "--report",
        "json",
        "r.json",
    ]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("offers no SHA-256, SHA-1 or MD5 hash").count(), 1, "{err}");
    for t in report(&tool, "r.json") {
        assert_eq!(t["verified"], "size 25 = announced", "{t}");
    }
    common::tool::assert_many(&tool, "out", 1..=6);
}

/// A resumed download is hashed whole: the part file's bytes (read back once)
/// and the rest as it arrives. A part file whose bytes are not the server's
/// has the right size in the end, and only the hash can tell: it fails.
#[test]
fn a_resumed_download_is_checked_whole_and_a_corrupt_part_is_caught() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    let part = tool.work.path().join(".small.bin.ftpssh.part");
    std::fs::write(&part, &want[..5000]).unwrap();
    let out = run(tool.cmd(port).args(["-v", "--verify", "get", "small.bin"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming small.bin at byte 5000") && err.contains("= the server's"), "{err}");
    common::tool::assert_same(&std::fs::read(tool.work.path().join("small.bin")).unwrap(), &want, "small.bin");
    // Now a part file of the right length whose bytes differ from the server's.
    std::fs::remove_file(tool.work.path().join("small.bin")).unwrap();
    let mut corrupt = want[..5000].to_vec();
    corrupt[1234] ^= 0xff;
    std::fs::write(&part, &corrupt).unwrap();
    let out = run(tool.cmd(port).args(["--verify", "get", "small.bin"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("but the server's is") && err.contains("nothing saved"), "{err}");
    assert_eq!(tool.work_entries(), Vec::<String>::new(), "no file, and the emptied part file is gone");
}

/// A server silent on a transfer without PORT (ProFTPD with RootRevoke, which cannot bind port
/// 20) is left for a new control connection, in passive: there HASH is back at the server's
/// default (ProFTPD: SHA-1), so the SHA-256 chosen on the first one is selected again. Every later
/// file, download and upload, is still checked with SHA-256, not by its size only.
#[test]
fn a_new_control_connection_selects_the_hash_again() {
    let tool = Tool::new();
    let dir = tool.work.path();
    let upload = format!("upload/verify-again-{}.bin", std::process::id());
    let _cleanup = RemoveOnDrop(tool.remote_path(&upload));
    std::fs::write(dir.join("up.bin"), b"uploaded after the fallback\n".repeat(100)).unwrap();
    let batch = format!("get small.bin\nget many/f001.txt f1.txt\nput up.bin {upload}\n");
    std::fs::write(dir.join("v.batch"), batch).unwrap();
    let (ssh, host) = (tool.lab.port("SSH_PORT"), tool.lab.var("PROFTPD21_ADDR").to_string());
    let mut cmd = tool.cmd_to(ssh, &host, tool.lab.port("PROFTPD21_PORT"));
    let out = run(cmd.args(["-v", "batch", "v.batch", "--report", "json", "report.json"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("switching to passive") && err.contains("neither answered RETR small.bin"), "{err}");
    assert_eq!(err.matches("---> OPTS HASH SHA-256").count(), 2, "once on each control connection:\n{err}");
    for t in &report(&tool, "report.json") {
        assert_eq!(t["outcome"], "ok", "{t}");
        assert_eq!(t["verified"], "sha256 = server's", "{t}\n{err}");
    }
    assert_eq!(std::fs::read(tool.remote_path(&upload)).unwrap(), std::fs::read(dir.join("up.bin")).unwrap());
}
