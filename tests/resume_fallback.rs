//! A resumed download whose default-port try is refused: the refused transfer command has
//! consumed the REST, so the passive retry must send it again, or the data would start at byte 0
//! behind the part file's head. Against vsftpd (425) and pyftpdlib (150 and silence: a new
//! control connection) in `--data-mode auto`; `get`, `mget`, `batch`, `--ascii` (never resumed),
//! and the tunnel carrying a client's own REST.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` like every lab test.

mod common;

use std::path::Path;

use common::tool::{assert_same, run, stderr, traced, Tool};
use common::tunnel::{client, netrc, ok, read, Tunnel};

/// `dir`'s part file for `name`, holding the first `held` bytes of `content`.
fn part(dir: &Path, name: &str, content: &[u8], held: usize) {
    std::fs::write(dir.join(format!(".{name}.ftpssh.part")), &content[..held]).unwrap();
}

/// The trace sent `REST at` twice, the second after the fallback and before the passive RETR.
fn assert_rest_again(err: &str, at: usize) {
    let rest = format!("---> REST {at}");
    assert_eq!(err.matches(&rest).count(), 2, "REST {at} not sent again after the fallback:\n{err}");
    let switched = err.find("switching to passive").unwrap_or_else(|| panic!("no switch to passive:\n{err}"));
    let again = err.rfind(&rest).unwrap();
    let epsv = err.rfind("---> EPSV").or_else(|| err.rfind("---> PASV")).unwrap();
    assert!(again < epsv, "REST {at} must come before EPSV:\n{err}");
    let retr = err.rfind("---> RETR").unwrap();
    assert!(again < retr && switched < retr, "{err}");
    assert!(!err.contains("nothing saved") && !err.contains("the server announced"), "{err}");
}

/// Resume `name` (its first `held` bytes in the part file) from the server at `port_key`.
fn get_resumed(port_key: &str, name: &str, held: usize) -> String {
    let tool = Tool::new();
    let dir = tool.work.path();
    let want = read(&tool.remote_path(name));
    part(dir, name, &want, held);
    let out = traced(&tool, tool.lab.port(port_key), &["get", name]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_same(&read(&dir.join(name)), &want, name);
    assert_eq!(tool.work_entries(), [name], "no part file left");
    assert_rest_again(&err, held);
    // Without -v, the one line that says why passive is used, and no other word.
    std::fs::remove_file(dir.join(name)).unwrap();
    part(dir, name, &want, held);
    let out = run(tool.cmd(tool.lab.port(port_key)).args(["get", name]));
    let quiet = stderr(&out);
    assert!(out.status.success(), "{quiet}");
    assert_same(&read(&dir.join(name)), &want, name);
    assert!(quiet.contains("switching to passive"), "{quiet}");
    assert!(!quiet.contains("starting over") && !quiet.contains("nothing saved"), "{quiet}");
    err
}

#[test]
fn get_resumed_from_vsftpd_sends_rest_again_on_the_passive_retry() {
    let err = get_resumed("VSFTPD_PORT", "small.bin", 5000);
    assert!(err.contains("\n425 "), "not the 425 case:\n{err}");
}

#[test]
fn get_resumed_from_pyftpdlib_sends_rest_on_the_new_control_connection() {
    let err = get_resumed("PYFTPDLIB_PORT", "small.bin", 7000);
    assert!(err.contains("did not connect back"), "not the 150-and-silence case:\n{err}");
}

/// `mget` falls back on its listing (NLST): its resumed files then go passive from the start, one
/// REST each. `batch` lists nothing: the fallback comes on its first file, a resumed one. The
/// others, resumed or fresh, follow on passive.
#[test]
fn mget_and_batch_resume_after_a_fallback() {
    let tool = Tool::new();
    let dir = tool.work.path();
    let names: Vec<String> = (130..136).map(|i| format!("f{i}.txt")).collect();
    let wants: Vec<Vec<u8>> = names.iter().map(|n| read(&tool.remote_path(&format!("many/{n}")))).collect();
    // Every other file resumed: the first (where the fallback comes) among them.
    for (i, (name, want)) in names.iter().zip(&wants).enumerate().filter(|(i, _)| i % 2 == 0) {
        part(dir, name, want, 5 + i);
    }
    let out = traced(&tool, tool.lab.port("VSFTPD_PORT"), &["mget", "many/f13[0-5].txt"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for (name, want) in names.iter().zip(&wants) {
        assert_same(&read(&dir.join(name)), want, name);
    }
    assert_eq!(tool.work_entries(), names, "no part file left");
    assert!(err.find("switching to passive").unwrap() < err.find("---> RETR").unwrap(), "{err}");
    for at in [5, 7, 9] {
        assert_eq!(err.matches(&format!("---> REST {at}\n")).count(), 1, "{err}");
    }

    let batch_dir = tempfile::tempdir().unwrap();
    let list =
        names.iter().map(|n| format!("get many/{n} {}\n", batch_dir.path().join(n).display())).collect::<String>();
    let batch = dir.join("transfers.txt");
    std::fs::write(&batch, list).unwrap();
    for (i, (name, want)) in names.iter().zip(&wants).enumerate().filter(|(i, _)| i % 2 == 0) {
        part(batch_dir.path(), name, want, 9 + i);
    }
    let out = traced(&tool, tool.lab.port("VSFTPD_PORT"), &["batch", batch.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for (name, want) in names.iter().zip(&wants) {
        assert_same(&read(&batch_dir.path().join(name)), want, name);
    }
    assert_eq!(common::tool::entries(batch_dir.path()), names, "no part file left");
    assert_rest_again(&err, 9);
}

/// `--ascii` never resumes: after the fallback the file starts over, with no REST at all.
#[test]
fn ascii_starts_over_after_a_fallback() {
    let tool = Tool::new();
    let dir = tool.work.path();
    let want = read(&tool.remote_path("many/f007.txt")); // LF only: vsftpd sends it as it is
    part(dir, "f007.txt", &want, 5);
    let out = traced(&tool, tool.lab.port("VSFTPD_PORT"), &["--ascii", "get", "many/f007.txt"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("an ASCII download starts over") && !err.contains("---> REST"), "{err}");
    assert!(err.contains("switching to passive"), "{err}");
    assert_same(&read(&dir.join("f007.txt")), &want, "f007.txt");
    assert_eq!(tool.work_entries(), ["f007.txt"]);
}

/// curl's own REST (`-C -`) through the tunnel, whose default-port try vsftpd refuses: the
/// tunnel sends the client's REST again on its passive retry.
#[test]
fn tunnel_sends_the_clients_rest_again_on_its_passive_retry() {
    let tool = Tool::new();
    netrc(&tool);
    let dir = tool.work.path();
    let want = read(&tool.remote_path("small.bin"));
    std::fs::write(dir.join("resumed.bin"), &want[..6000]).unwrap();
    let tunnel = Tunnel::start(&tool, "127.0.0.1", tool.lab.port("VSFTPD_PORT"), &[]);
    let url = format!("ftp://127.0.0.1:{}/small.bin", tunnel.port);
    ok(&client(&tool, dir, "curl", &["-sSn", "-C", "-", &url, "-o", "resumed.bin"]), "curl -C -");
    let trace = tunnel.stop();
    assert_same(&read(&dir.join("resumed.bin")), &want, "resumed.bin");
    assert_rest_again(&trace, 6000);
}
