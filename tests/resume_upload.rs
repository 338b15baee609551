//! `put --continue` against the lab's four servers: an upload stopped by SIGINT part way
//! (held back by `--bwlimit` so the signal lands mid-file), then continued with APPE after
//! what SIZE says the server holds: the server's copy is byte-identical, and only the rest
//! was sent. Then what is not continued (a larger server file, no file at all), and the
//! bulk commands (mput, batch, mirror --reverse) going on after a failure.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` like every lab test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tool::{assert_same, run, stderr, traced, RemoveOnDrop, Tool};

/// Not compressible, not repetitive: a misplaced append shows.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Files the tests write on the server's side belong to the lab user, as the server's would.
fn own(tool: &Tool, path: &Path) {
    let user = tool.lab.var("SSH_USER");
    let ok = Command::new("chown").args(["-R", &format!("{user}:{user}")]).arg(path).status();
    assert!(ok.unwrap().success());
}

/// The bytes count of the tool's summary line ("... -> REMOTE: N bytes in ...").
fn bytes_sent(err: &str) -> u64 {
    let line = err.lines().find(|l| l.contains(" bytes in ")).unwrap_or_else(|| panic!("no summary line:\n{err}"));
    let before = line.split(" bytes in ").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

fn interrupted_then_continued(port_key: &str) {
    let tool = Tool::new();
    let port = tool.lab.port(port_key);
    let want = content(3 << 20, port as u64);
    let local = tool.work.path().join("big.bin");
    std::fs::write(&local, &want).unwrap();
    let remote = format!("upload/resume-{port_key}-{}.bin", std::process::id());
    let on_server = tool.remote_path(&remote);
    let _cleanup = RemoveOnDrop(on_server.clone());

    let log = tool.work.path().join("first.log");
    let mut first = tool.cmd(port);
    first.args(["--bwlimit", "512K", "put", local.to_str().unwrap(), &remote]);
    let mut child = first.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while size(&on_server) < 256 << 10 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload ended early: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(Instant::now() < deadline, "the upload never reached 256 KiB");
        std::thread::sleep(Duration::from_millis(20));
    }
    // `ip netns exec` execs the tool: this pid is the tool's.
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    let first_err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "SIGINT: {first_err}");
    // The server writes what reached it, then sees the connection end: wait until it settles.
    let mut partial = size(&on_server);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = size(&on_server);
        if now == partial {
            break;
        }
        partial = now;
    }
    eprintln!("{port_key}: the server holds {partial} of {} bytes after SIGINT", want.len());
    assert!(partial > 0 && partial < want.len() as u64, "{partial} bytes: not a part of the file");
    assert_same(&std::fs::read(&on_server).unwrap(), &want[..partial as usize], "the part the server holds");

    let out = traced(&tool, port, &["put", "--continue", local.to_str().unwrap(), &remote]);
    let err = stderr(&out);
    assert!(out.status.success(), "put --continue: {err}");
    assert!(err.contains(&format!("---> APPE {remote}")), "no APPE:\n{err}");
    assert!(!err.contains("---> STOR"), "continued with STOR:\n{err}");
    assert_same(&std::fs::read(&on_server).unwrap(), &want, "the server's copy after put --continue");
    assert_eq!(bytes_sent(&err), want.len() as u64 - partial, "only the rest is sent");

    // Once complete, a second --continue sends nothing and still checks the size.
    let out = traced(&tool, port, &["put", "--continue", local.to_str().unwrap(), &remote]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(bytes_sent(&err), 0);
    assert!(!err.contains("---> APPE") && !err.contains("---> STOR"), "{err}");
    assert_same(&std::fs::read(&on_server).unwrap(), &want, "the server's copy after a second put --continue");
}

#[test]
fn put_continue_after_sigint_to_proftpd() {
    interrupted_then_continued("PROFTPD_PORT");
}

#[test]
fn put_continue_after_sigint_to_inetutils_ftpd() {
    interrupted_then_continued("INETUTILS_PORT");
}

#[test]
fn put_continue_after_sigint_to_vsftpd() {
    interrupted_then_continued("VSFTPD_PORT");
}

#[test]
fn put_continue_after_sigint_to_pure_ftpd() {
    interrupted_then_continued("PUREFTPD_PORT");
}

/// A server file larger than the local one is not a start of it: refused, left as it is.
/// No server file at all: the whole file, with STOR.
#[test]
fn what_is_not_continued() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    let local = tool.work.path().join("short.bin");
    std::fs::write(&local, content(1000, 7)).unwrap();
    let remote = format!("upload/resume-larger-{}.bin", std::process::id());
    let on_server = tool.remote_path(&remote);
    let _cleanup = RemoveOnDrop(on_server.clone());
    let larger = content(5000, 8);
    std::fs::write(&on_server, &larger).unwrap();
    own(&tool, &on_server);
    let out = run(tool.cmd(port).args(["put", "--continue", local.to_str().unwrap(), &remote]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("holds 5000 bytes, more than the 1000"), "{}", stderr(&out));
    assert_same(&std::fs::read(&on_server).unwrap(), &larger, "the server's file, untouched");

    std::fs::remove_file(&on_server).unwrap();
    let out = traced(&tool, port, &["put", "--continue", local.to_str().unwrap(), &remote]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("---> STOR") && err.contains("uploading all of"), "{err}");
    assert_same(&std::fs::read(&on_server).unwrap(), &std::fs::read(&local).unwrap(), "the new server file");
}

/// mput, batch and mirror --reverse, run again with --continue after a failure left part of
/// each file on the server: each goes on where the server's copy ends.
#[test]
fn bulk_uploads_continue_after_a_failure() {
    let tool = Tool::new();
    let port = tool.lab.port("PROFTPD_PORT");
    let remote_dir = format!("upload/resume-bulk-{}", std::process::id());
    let on_server = tool.remote_path(&remote_dir);
    let _ = std::fs::remove_dir_all(&on_server);
    std::fs::create_dir_all(&on_server).unwrap();
    struct Gone(PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Gone(on_server.clone());
    let src = tool.work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let names = ["a.bin", "b.bin"];
    let wants: Vec<Vec<u8>> =
        names.iter().enumerate().map(|(i, _)| content(200_000 + i * 777, 40 + i as u64)).collect();
    let broken = |tool: &Tool| {
        for (name, want) in names.iter().zip(&wants) {
            std::fs::write(src.join(name), want).unwrap();
            std::fs::write(on_server.join(name), &want[..want.len() / 3]).unwrap();
        }
        own(tool, &on_server);
    };
    let sources: Vec<String> = names.iter().map(|n| src.join(n).to_string_lossy().into_owned()).collect();
    let batch = tool.work.path().join("up.batch");
    let lines: String = names.iter().zip(&sources).map(|(n, s)| format!("put {s} {remote_dir}/{n}\n")).collect();
    std::fs::write(&batch, lines).unwrap();
    let runs: [Vec<&str>; 3] = [
        [&["mput", "--continue", "-d", &remote_dir][..], &sources.iter().map(String::as_str).collect::<Vec<_>>()]
            .concat(),
        vec!["batch", "--continue", batch.to_str().unwrap()],
        vec!["mirror", "--reverse", "--continue", &remote_dir, src.to_str().unwrap()],
    ];
    for args in &runs {
        broken(&tool);
        let out = traced(&tool, port, args);
        let err = stderr(&out);
        assert!(out.status.success(), "{args:?}: {err}");
        for (name, want) in names.iter().zip(&wants) {
            assert!(err.contains(&format!("---> APPE {remote_dir}/{name}")), "{args:?}: {name} not continued:\n{err}");
            assert_same(&std::fs::read(on_server.join(name)).unwrap(), want, &format!("{args:?}: {name}"));
        }
    }
}
