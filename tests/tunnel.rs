//! `tunnel`: Debian's own FTP clients (curl, lftp, tnftp, inetutils ftp, and the book's
//! `sendport`-off client as a script) through the tool, against the lab's servers, under the
//! veth capture: nothing but SSH on the wire, no byte of a file or the password in clear, every
//! file byte-identical. Each client logs in from `~/.netrc`.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use common::tool::{assert_same, RemoveOnDrop, Tool};
use common::tunnel::{captured, captured_with, client, client_script, ok, read};

/// The ways a data connection reaches each kind of lab server, by its `lab.env` port key.
const SERVERS: [&str; 4] = ["PROFTPD_PORT", "PROFTPD_FIXED_PORT", "INETUTILS_PORT", "VSFTPD_PORT"];

/// curl: a passive download (EPSV, and PASV), an active one (`-P -`: EPRT, and PORT), an upload
/// (`-T`) and a listing, against every kind of server.
#[test]
fn curl_downloads_uploads_and_lists() {
    for key in SERVERS {
        let tool = Tool::new();
        let (small, big) = (read(&tool.remote_path("small.bin")), read(&tool.remote_path("big.bin")));
        let remote = format!("upload/tunnel-curl-{}-{key}.bin", std::process::id());
        let _cleanup = RemoveOnDrop(tool.remote_path(&remote));
        let dir = tool.work.path();
        let trace = captured(&tool, "127.0.0.1", tool.lab.port(key), &[&small, &big, &small], |port| {
            let url = |p: &str| format!("ftp://127.0.0.1:{port}/{p}");
            ok(&client(&tool, dir, "curl", &["-sSn", &url("big.bin"), "-o", "pasv.bin"]), "curl (EPSV)");
            ok(
                &client(&tool, dir, "curl", &["-sSn", "--disable-epsv", &url("small.bin"), "-o", "pasv2.bin"]),
                "curl (PASV)",
            );
            ok(
                &client(&tool, dir, "curl", &["-sSn", "-P", "-", &url("small.bin"), "-o", "port.bin"]),
                "curl -P - (EPRT)",
            );
            ok(
                &client(
                    &tool,
                    dir,
                    "curl",
                    &["-sSn", "-P", "-", "--disable-eprt", &url("small.bin"), "-o", "port2.bin"],
                ),
                "curl (PORT)",
            );
            let source = tool.remote_path("small.bin");
            ok(&client(&tool, dir, "curl", &["-sSn", "-T", source.to_str().unwrap(), &url(&remote)]), "curl -T");
            let listing = client(&tool, dir, "curl", &["-sSn", &url("many/")]);
            ok(&listing, "curl listing");
            assert_eq!(String::from_utf8_lossy(&listing.stdout).lines().filter(|l| l.contains(".txt")).count(), 200);
        });
        assert_same(&read(&dir.join("pasv.bin")), &big, &format!("{key}: big.bin (EPSV)"));
        for name in ["pasv2.bin", "port.bin", "port2.bin"] {
            assert_same(&read(&dir.join(name)), &small, &format!("{key}: {name}"));
        }
        assert_same(&read(&tool.remote_path(&remote)), &small, &format!("{key}: the upload"));
        assert!(trace.contains("answered by the tunnel's own listener"), "{trace}");
        assert!(trace.contains("the tunnel connects there"), "{trace}");
    }
}

/// lftp with its default settings: it tries AUTH TLS first (refused: it goes on in plain FTP
/// inside SSH), then get, put, mirror, mirror -R and mirror --parallel=4.
#[test]
fn lftp_get_put_mirror() {
    for key in SERVERS {
        let tool = Tool::new();
        let small = read(&tool.remote_path("small.bin"));
        let pid = std::process::id();
        let (up, mirrored) = (format!("upload/tunnel-lftp-{pid}-{key}.bin"), format!("upload/tunnel-lftp-{pid}-{key}"));
        let _cleanup =
            (RemoveOnDrop(tool.remote_path(&up)), RemoveOnDrop(tool.remote_path(&format!("{mirrored}/small.bin"))));
        let dir = tool.work.path();
        std::fs::create_dir(dir.join("out")).unwrap();
        std::fs::write(dir.join("out/small.bin"), &small).unwrap();
        let log = dir.join("lftp.log");
        let script = format!(
            "debug -o {} 5; get small.bin -o got.bin; put out/small.bin -o {up}; mirror many m1; \
             mirror --parallel=4 many m2; mirror -R out {mirrored}; quit",
            log.display()
        );
        let trace = captured(&tool, "127.0.0.1", tool.lab.port(key), &[&small, &small], |port| {
            ok(&client(&tool, dir, "lftp", &["-p", &port.to_string(), "-e", &script, "127.0.0.1"]), "lftp");
        });
        let conversation = String::from_utf8_lossy(&read(&log)).replace(tool.lab.var("FTP_PASSWORD"), "****");
        assert!(conversation.contains("---> AUTH TLS") && conversation.contains("<--- 534"), "{conversation}");
        assert_same(&read(&dir.join("got.bin")), &small, "get");
        assert_same(&read(&tool.remote_path(&up)), &small, "put");
        assert_same(&read(&tool.remote_path(&format!("{mirrored}/small.bin"))), &small, "mirror -R");
        for m in ["m1", "m2"] {
            for i in 1..=200 {
                let name = format!("f{i:03}.txt");
                assert_same(&read(&dir.join(m).join(&name)), &read(&tool.remote_path("many").join(&name)), &name);
            }
        }
        assert!(trace.contains("refused the client's AUTH"), "{trace}");
        let _ = std::fs::remove_dir(tool.remote_path(&mirrored));
    }
}

/// lftp's `pget -n 4`: four control connections, each reading one piece and then saying ABOR
/// while its data still flows.
#[test]
fn lftp_pget_in_four_pieces() {
    let tool = Tool::new();
    let big = read(&tool.remote_path("big.bin"));
    let dir = tool.work.path();
    captured(&tool, "127.0.0.1", tool.lab.port("PROFTPD_PORT"), &[&big], |port| {
        ok(
            &client(
                &tool,
                dir,
                "lftp",
                &["-p", &port.to_string(), "-e", "pget -n 4 big.bin -o got.bin; quit", "127.0.0.1"],
            ),
            "lftp pget",
        );
    });
    assert_same(&read(&dir.join("got.bin")), &big, "pget -n 4");
}

/// tnftp in passive mode (`-p`: EPSV) and in active mode (`-A`: EPRT).
#[test]
fn tnftp_active_and_passive() {
    for key in SERVERS {
        let tool = Tool::new();
        let small = read(&tool.remote_path("small.bin"));
        let dir = tool.work.path();
        captured(&tool, "127.0.0.1", tool.lab.port(key), &[&small, &small], |port| {
            for (flag, name) in [("-p", "passive.bin"), ("-A", "active.bin")] {
                let script = format!("binary\nls\nget small.bin {name}\nquit\n");
                ok(&client_script(&tool, dir, "tnftp", &[flag, "127.0.0.1", &port.to_string()], &script), "tnftp");
            }
        });
        assert_same(&read(&dir.join("passive.bin")), &small, &format!("{key}: tnftp -p"));
        assert_same(&read(&dir.join("active.bin")), &small, &format!("{key}: tnftp -A"));
    }
}

/// `--bwlimit` holds a client's transfers to the run's rate (100 MiB at 20 MiB/s: 5 s each way).
#[test]
fn bwlimit_paces_a_clients_transfers() {
    let tool = Tool::new();
    let big = read(&tool.remote_path("big.bin"));
    let remote = format!("upload/tunnel-bwlimit-{}.bin", std::process::id());
    let _cleanup = RemoveOnDrop(tool.remote_path(&remote));
    let dir = tool.work.path();
    let mut took = Vec::new();
    captured_with(&tool, "127.0.0.1", tool.lab.port("PROFTPD_PORT"), &["--bwlimit", "20M"], &[&big, &big], |port| {
        let url = |p: &str| format!("ftp://127.0.0.1:{port}/{p}");
        let start = std::time::Instant::now();
        ok(&client(&tool, dir, "curl", &["-sSn", &url("big.bin"), "-o", "got.bin"]), "curl");
        took.push(start.elapsed());
        let start = std::time::Instant::now();
        let source = tool.remote_path("big.bin");
        ok(&client(&tool, dir, "curl", &["-sSn", "-T", source.to_str().unwrap(), &url(&remote)]), "curl -T");
        took.push(start.elapsed());
    });
    assert_same(&read(&dir.join("got.bin")), &big, "the download");
    assert_same(&read(&tool.remote_path(&remote)), &big, "the upload");
    for t in took {
        assert!(t.as_secs_f64() >= 4.8, "100 MiB under --bwlimit 20M took {t:?}");
    }
}

/// A client that stops reading its data connection: the stall detector (less than 1 KiB in
/// twice `--timeout`) ends the transfer with 426, as it ends a built-in one.
#[test]
fn a_stalled_transfer_is_ended() {
    let tool = Tool::new();
    let user = tool.lab.var("FTP_USER").to_string();
    let mut said = String::new();
    let trace = captured_with(&tool, "127.0.0.1", tool.lab.port("PROFTPD_PORT"), &["--timeout", "2"], &[], |port| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/stops_reading.py");
        let out =
            client(&tool, tool.work.path(), "python3", &[script, "127.0.0.1", &port.to_string(), &user, "big.bin"]);
        ok(&out, "the client that stops reading");
        said = String::from_utf8_lossy(&out.stdout).into_owned();
    });
    assert!(said.contains("FINAL 426"), "{said}");
    assert!(trace.contains("the data connection stalled"), "{trace}");
}

/// pyftpdlib takes a transfer without PORT and then waits in silence: the tunnel gives that
/// control connection up and logs in anew to go passive. The client had moved (curl's CWD into
/// `many/`, its TYPE A for a listing) and still is, for the server too: the new connection is
/// brought to the same directory and settings before the transfer, and each file is the one
/// the client asked for.
#[test]
fn a_new_control_connection_keeps_the_clients_directory() {
    let tool = Tool::new();
    let dir = tool.work.path();
    let want = read(&tool.remote_path("many/f002.txt"));
    let trace = captured(&tool, "127.0.0.1", tool.lab.port("PYFTPDLIB_PORT"), &[&want], |port| {
        let url = format!("ftp://127.0.0.1:{port}/many/f002.txt");
        ok(&client(&tool, dir, "curl", &["-sSn", "-P", "-", &url, "-o", "f002.txt"]), "curl -P - many/f002.txt");
    });
    assert_same(&read(&dir.join("f002.txt")), &want, "many/f002.txt");
    assert!(trace.contains("---> CWD many"), "curl moved:\n{trace}");
    assert_eq!(trace.matches("---> CWD many").count(), 2, "again on the new connection:\n{trace}");
}

/// ProFTPD with RootRevoke cannot bind port 20 and stays silent on a transfer without PORT: the
/// tunnel goes passive on a new control connection. What the client selected there (lftp's
/// `quote OPTS HASH SHA-256`) is selected again, so its next HASH is answered as it asked, not
/// with the server's default (SHA-1).
#[test]
fn a_new_control_connection_keeps_the_clients_options() {
    let tool = Tool::new();
    let dir = tool.work.path();
    let small = read(&tool.remote_path("small.bin"));
    let log = dir.join("lftp.log");
    let script = format!(
        "debug -o {} 5; quote OPTS HASH SHA-256; get small.bin -o got.bin; quote HASH small.bin; quit",
        log.display()
    );
    let host = tool.lab.var("PROFTPD21_ADDR").to_string();
    let mut said = String::new();
    let trace = captured(&tool, &host, tool.lab.port("PROFTPD21_PORT"), &[&small], |port| {
        let out = client(&tool, dir, "lftp", &["-p", &port.to_string(), "-e", &script, "127.0.0.1"]);
        ok(&out, "lftp");
        said = String::from_utf8_lossy(&out.stdout).into_owned(); // quote's replies
    });
    assert_same(&read(&dir.join("got.bin")), &small, "get");
    assert!(trace.contains("switching to passive"), "{trace}");
    assert_eq!(trace.matches("---> OPTS HASH SHA-256").count(), 2, "again on the new connection:\n{trace}");
    assert!(said.contains("213 SHA-256 0-10876 "), "{said}\n{}", String::from_utf8_lossy(&read(&log)));
}
