//! The client host's other users are adversaries: a second, unprivileged
//! account (`nobody`) plants links and files in a shared sticky directory, as
//! fast as it can, while the tool downloads there, writes its report and its
//! events, reads `~/.netrc`, or holds the password.
//!
//! Needs root and `scripts/lab up` (all but the last test); run with `--test-threads=1`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::tool::{run, stderr, Tool};
use tempfile::TempDir;

/// The attacker: another user of the client host.
const ATTACKER: u32 = 65534;
/// A second unprivileged user who runs the tool, where root could remove what it likes.
const VICTIM: u32 = 65532;
/// What the attacker hopes to overwrite: a file of the tool's user, outside the shared directory.
const PRECIOUS: &[u8] = b"precious, and not the download\n";

/// A shared directory (mode 1777, as /tmp) in a tempdir anyone may enter, and a
/// file of ours beside it for the attacker's links to point at.
struct Shared {
    _root: TempDir,
    dir: PathBuf,
    victim: PathBuf,
}

impl Shared {
    fn new() -> Shared {
        let root = TempDir::new().unwrap();
        chmod(root.path(), 0o755);
        let dir = root.path().join("shared");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o1777);
        let victim = root.path().join("victim.txt");
        std::fs::write(&victim, PRECIOUS).unwrap();
        Shared { _root: root, dir, victim }
    }

    fn assert_victim_intact(&self) {
        let now = std::fs::read(&self.victim).unwrap();
        assert!(now == PRECIOUS, "the attacker's link was written through: the victim file holds {} bytes", now.len());
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `command` as `uid` (group the same, no supplementary groups).
fn as_user(uid: u32, program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "--".into()]);
    cmd.arg(program);
    cmd
}

/// The attacker at work until dropped: plants a link to `target` at each of
/// `names`, again the moment one is gone (`race`), else once.
struct Attacker(Child);

impl Attacker {
    fn links(target: &Path, names: &[PathBuf], race: bool) -> Attacker {
        const PLANT: &str = "import os, sys\n\
            race, target, names = sys.argv[1] == 'race', sys.argv[2], sys.argv[3:]\n\
            while True:\n\
            \x20   for n in names:\n\
            \x20       try: os.symlink(target, n)\n\
            \x20       except OSError: pass\n\
            \x20   if not race: break\n\
            print('planted', flush=True)\n\
            sys.stdin.read()\n";
        let mut cmd = as_user(ATTACKER, "/usr/bin/python3");
        cmd.args(["-c", PLANT, if race { "race" } else { "once" }]).arg(target).args(names);
        Attacker::start(cmd, names.first().map(PathBuf::as_path))
    }

    /// A plain file of the attacker's at `name`, writable by all (so the tool could write it).
    fn file(name: &Path, content: &str) -> Attacker {
        const MAKE: &str = "import os, sys\n\
            fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)\n\
            os.write(fd, sys.argv[2].encode()); os.fchmod(fd, 0o666); os.close(fd)\n\
            print('planted', flush=True)\n\
            sys.stdin.read()\n";
        let mut cmd = as_user(ATTACKER, "/usr/bin/python3");
        cmd.args(["-c", MAKE]).arg(name).arg(content);
        Attacker::start(cmd, Some(name))
    }

    fn start(mut cmd: Command, first: Option<&Path>) -> Attacker {
        let child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
        let attacker = Attacker(child);
        if let Some(first) = first {
            let planted = (0..200).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                std::fs::symlink_metadata(first).is_ok()
            });
            assert!(planted, "the attacker planted nothing at {}", first.display());
        }
        attacker
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn remote_small(tool: &Tool) -> Vec<u8> {
    std::fs::read(tool.remote_path("small.bin")).unwrap()
}

/// A root download into /tmp must never write through a link another user
/// planted at its part file's name, however fast they re-plant it.
#[test]
fn a_download_never_writes_through_a_planted_part_file_link() {
    let (tool, shared) = (Tool::new(), Shared::new());
    let target = shared.dir.join("small.bin");
    let part = shared.dir.join(".small.bin.ftpssh.part");
    let attacker = Attacker::links(&shared.victim, std::slice::from_ref(&part), true);
    let out = run(tool.cmd(tool.lab.port("PROFTPD_PORT")).arg("get").arg("small.bin").arg(&target));
    drop(attacker);
    shared.assert_victim_intact();
    if out.status.success() {
        assert_eq!(std::fs::read(&target).unwrap(), remote_small(&tool));
        assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
    } else {
        // Out-raced at every try: a clear error, and nothing written anywhere.
        assert!(stderr(&out).contains(".small.bin.ftpssh.part"), "{}", stderr(&out));
    }
}

/// A segmented download writes its ranges' record beside its part file: neither is ever
/// opened through a link another user plants there, however fast they re-plant them.
#[test]
fn a_segmented_download_never_writes_through_a_planted_record_or_part_link() {
    let (tool, shared) = (Tool::new(), Shared::new());
    let target = shared.dir.join("big.bin");
    let names = [shared.dir.join(".big.bin.ftpssh.segs"), shared.dir.join(".big.bin.ftpssh.part")];
    let attacker = Attacker::links(&shared.victim, &names, true);
    let mut cmd = tool.cmd(tool.lab.port("PROFTPD_PORT"));
    let out = run(cmd.args(["--segments", "3", "get", "big.bin"]).arg(&target));
    drop(attacker);
    shared.assert_victim_intact();
    if out.status.success() {
        assert!(std::fs::read(&target).unwrap() == std::fs::read(tool.remote_path("big.bin")).unwrap());
        assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
    } else {
        // Out-raced at every try: a clear error naming the file, and nothing written through a link.
        assert!(stderr(&out).contains(".big.bin.ftpssh."), "{}", stderr(&out));
    }
}

/// Another user's link at the download's own name is refused, not taken over;
/// the download stays in its part file, whole.
#[test]
fn the_final_name_held_by_another_user_is_refused_and_nothing_is_lost() {
    let (tool, shared) = (Tool::new(), Shared::new());
    let target = shared.dir.join("small.bin");
    let _attacker = Attacker::links(&shared.victim, std::slice::from_ref(&target), false);
    let out = run(tool.cmd(tool.lab.port("PROFTPD_PORT")).arg("get").arg("small.bin").arg(&target));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("small.bin is a symbolic link of uid {ATTACKER} in the shared directory")), "{err}");
    shared.assert_victim_intact();
    assert!(std::fs::symlink_metadata(&target).unwrap().is_symlink(), "their link is left as it was");
    let part = std::fs::read(shared.dir.join(".small.bin.ftpssh.part")).unwrap();
    assert_eq!(part, remote_small(&tool), "the download is kept in its part file");
}

/// An unprivileged user cannot remove another user's part file in a sticky
/// directory: it is neither resumed nor written, and the error names it.
#[test]
fn another_users_part_file_is_not_resumed_and_is_named() {
    let (tool, shared) = (Tool::new(), Shared::new());
    let part = shared.dir.join(".small.bin.ftpssh.part");
    let _attacker = Attacker::file(&part, "theirs");
    let home = TempDir::new().unwrap();
    let key = home.path().join("id");
    std::fs::copy(tool.lab.path("SSH_KEY"), &key).unwrap();
    chmod(home.path(), 0o700);
    Command::new("chown").arg("-R").arg(format!("{VICTIM}:{VICTIM}")).arg(home.path()).status().unwrap();
    let lab = &tool.lab;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", lab.var("CLIENT_NS")]);
    cmd.args(["setpriv", &format!("--reuid={VICTIM}"), &format!("--regid={VICTIM}"), "--clear-groups", "--"]);
    cmd.arg(env!("CARGO_BIN_EXE_ftpssh-fullsecure"))
        .arg("-s")
        .arg(format!("{}@{}:{}", lab.var("SSH_USER"), lab.var("SERVER_ADDR"), lab.port("SSH_PORT")))
        .arg("-f")
        .arg(format!("127.0.0.1:{}", lab.port("PROFTPD_PORT")))
        .arg("-i")
        .arg(&key)
        .arg("--known-hosts")
        .arg(lab.path("KNOWN_HOSTS"))
        .env("HOME", home.path())
        .env("FTPSSH_PASSWORD", lab.var("FTP_PASSWORD"))
        .env_remove("SSH_AUTH_SOCK")
        .current_dir(&shared.dir)
        .stdin(std::process::Stdio::null())
        .args(["get", "small.bin"]);
    let out = run(&mut cmd);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!(".small.bin.ftpssh.part is owned by uid {ATTACKER}")), "{err}");
    assert!(err.contains("cannot be removed"), "{err}");
    assert_eq!(std::fs::read(&part).unwrap(), b"theirs", "their file is neither resumed nor written");
    assert!(!shared.dir.join("small.bin").exists());
}

/// The JSON report is written under a name nobody can plant in advance: links
/// at every name the old `.NAME.PID.tmp` scheme would use change nothing.
#[test]
fn the_report_never_writes_through_a_planted_link() {
    let (tool, shared) = (Tool::new(), Shared::new());
    let report = shared.dir.join("r.json");
    let mut cmd = tool.cmd(tool.lab.port("PROFTPD_PORT"));
    cmd.args(["mget", "small.bin", "-d", "out", "--report", "json"]).arg(&report);
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let names: Vec<PathBuf> = (0..4).map(|i| shared.dir.join(format!(".r.json.{}.tmp", child.id() + i))).collect();
    let attacker = Attacker::links(&shared.victim, &names, true);
    let out = child.wait_with_output().unwrap();
    drop(attacker);
    assert!(out.status.success(), "{}", stderr(&out));
    shared.assert_victim_intact();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["summary"]["ok"], 1);
}

/// `--events FILE` where another user planted a link: refused, nothing written through it.
#[test]
fn the_events_file_is_never_opened_through_another_users_link() {
    let (tool, shared) = (Tool::new(), Shared::new());
    let events = shared.dir.join("events.jsonl");
    let _attacker = Attacker::links(&shared.victim, std::slice::from_ref(&events), false);
    let out = run(tool.cmd(tool.lab.port("PROFTPD_PORT")).arg("--events").arg(&events).args(["get", "small.bin"]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("events.jsonl is a symbolic link of uid {ATTACKER}")), "{err}");
    shared.assert_victim_intact();
    assert_eq!(std::fs::metadata(&shared.victim).unwrap().uid(), 0);
}

/// While it holds the FTP password the tool is not dumpable: another process
/// of its own user cannot read its environment (nor its memory, nor ptrace
/// it). No lab needed: the tool waits on an SSH server that never answers.
#[test]
fn the_password_holder_is_not_readable_by_its_own_user() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let mut tool = as_user(VICTIM, env!("CARGO_BIN_EXE_ftpssh-fullsecure"));
    tool.args(["-s", &format!("someone@127.0.0.1:{port}"), "-f", "127.0.0.1:21", "--known-hosts", "/dev/null"])
        .args(["get", "small.bin"])
        .env("HOME", "/nonexistent")
        .env("FTPSSH_PASSWORD", "hunter2-in-the-environment")
        .current_dir("/")
        .stdin(std::process::Stdio::null());
    let mut tool = Attacker(tool.stderr(std::process::Stdio::null()).spawn().unwrap()); // killed when dropped
                                                                                        // Once it connects it has read the password, and waits for the SSH banner.
    server.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let _waiting = loop {
        if let Ok((conn, _)) = server.accept() {
            break conn;
        }
        assert!(tool.0.try_wait().unwrap().is_none(), "the tool ended before it connected");
        assert!(std::time::Instant::now() < deadline, "the tool never connected");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", tool.0.id())).unwrap();
    assert!(status.contains(&format!("Uid:\t{VICTIM}\t")), "{status}");
    let read = as_user(VICTIM, "cat").arg(format!("/proc/{}/environ", tool.0.id())).output().unwrap();
    let seen = String::from_utf8_lossy(&read.stdout);
    assert!(!seen.contains("hunter2"), "its own user read the password from /proc/PID/environ");
    assert!(!read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    assert!(tool.0.try_wait().unwrap().is_none(), "the tool was still running");
}

/// A remote tree of the lab user's, removed after the test.
struct RemoteTree(PathBuf);

impl Drop for RemoteTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `mirror --delete` deletes nothing below a remote directory the server would
/// not list (its files may well still be there), says so in one line, and
/// names it in the report; the rest of the mirror goes on.
#[test]
fn mirror_delete_spares_what_is_below_an_unlisted_directory() {
    let tool = Tool::new();
    let name = format!("upload/unlisted-{}", std::process::id());
    let remote = RemoteTree(tool.remote_path(&name));
    std::fs::create_dir_all(remote.0.join("sub")).unwrap();
    std::fs::write(remote.0.join("top.txt"), b"top\n").unwrap();
    std::fs::write(remote.0.join("sub/inner.txt"), b"inner\n").unwrap();
    let user = tool.lab.var("SSH_USER");
    assert!(Command::new("chown").arg("-R").arg(format!("{user}:{user}")).arg(&remote.0).status().unwrap().success());
    chmod(&remote.0.join("sub"), 0o000); // the server's user may not list it
    let local = tool.work.path().join("copy");
    std::fs::create_dir_all(local.join("sub")).unwrap();
    std::fs::write(local.join("sub/keep.txt"), b"mine").unwrap();
    std::fs::write(local.join("extra.txt"), b"not on the server").unwrap();
    let mut cmd = tool.cmd(tool.lab.port("PROFTPD_PORT"));
    let out = run(cmd.args(["mirror", "--report", "json", "r.json", &name, "copy", "--delete"]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(std::fs::read(local.join("sub/keep.txt")).unwrap(), b"mine", "deleted below an unlisted directory");
    assert!(!local.join("extra.txt").exists(), "--delete still works elsewhere");
    assert_eq!(std::fs::read(local.join("top.txt")).unwrap(), b"top\n");
    let said: Vec<&str> = err.lines().filter(|l| l.contains(&format!("{name}/sub"))).collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains("could not list") && said[0].contains("nothing below it is deleted"), "{err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tool.work.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["summary"]["unlisted"], serde_json::json!([format!("{name}/sub")]));
}

/// `~/.netrc`'s passwords are used only from a file no one else may read or
/// write, and a loopback FTP server's only under the SSH host it is behind.
#[test]
fn netrc_passwords_only_from_a_private_file_and_for_their_ssh_host() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let netrc = tool.home.path().join(".netrc");
    let get = |machine: &str, mode: u32| {
        let line = format!("machine {machine} login {} password {}\n", lab.var("FTP_USER"), lab.var("FTP_PASSWORD"));
        std::fs::write(&netrc, line).unwrap();
        chmod(&netrc, mode);
        let mut cmd = tool.cmd(lab.port("PROFTPD_PORT"));
        run(cmd.env_remove("FTPSSH_PASSWORD").args(["get", "small.bin"]))
    };
    let ssh_host = lab.var("SERVER_ADDR"); // as typed in -s USER@HOST:PORT
    let out = get(ssh_host, 0o644);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(".netrc is readable or writable by others (mode 644)"), "{}", stderr(&out));
    let out = get("127.0.0.1", 0o600);
    assert_eq!(out.status.code(), Some(2), "a loopback entry went to this SSH host's server: {}", stderr(&out));
    assert!(stderr(&out).contains("no FTP password"), "{}", stderr(&out));
    let out = get(ssh_host, 0o600);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(tool.work.path().join("small.bin")).unwrap(), remote_small(&tool));
}
