//! The Debian package, as a system administrator meets it: `scripts/package` builds it from the
//! release binary, `dpkg -i` installs it on this machine, and the installed tool is used as
//! installed (its man page through `man`, its bash completion through bash-completion's loader,
//! the systemd examples through `systemd-analyze verify`, a download in the lab); `dpkg -r`
//! then leaves none of its files behind.
//!
//! Needs root, the lab, and the release build (`cargo build --release`; scripts/test builds it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::tool::{assert_same, run, stderr, Tool};

const NAME: &str = "ftpssh-fullsecure";
/// What the release binary may weigh (it is stripped; the profiling profile keeps debug info).
const MAX_BINARY: u64 = 15 << 20;

fn release_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = target.join("release").join(NAME);
    assert!(bin.exists(), "no release build at {}: run `cargo build --release` (scripts/test does)", bin.display());
    bin
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    out
}

fn installed() -> bool {
    let out = Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", NAME]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).starts_with("ii")
}

/// Removes the package when the test ends, whatever happened.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-r", NAME]).output();
    }
}

#[test]
fn the_package_installs_works_and_removes_cleanly() {
    let bin = release_binary();
    let size = std::fs::metadata(&bin).unwrap().len();
    assert!(size <= MAX_BINARY, "the release binary weighs {size} bytes, more than {MAX_BINARY}");

    let out = ok(Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/package")).env("FTPSSH_INSTALL_BIN", &bin));
    let said = String::from_utf8_lossy(&out.stdout);
    let deb =
        said.split_whitespace().find(|w| w.ends_with(".deb")).unwrap_or_else(|| panic!("no .deb named in {said:?}"));
    let deb = Path::new(env!("CARGO_MANIFEST_DIR")).join(deb);

    assert!(!installed(), "{NAME} is already installed with dpkg on this machine: `dpkg -r {NAME}` first");
    let guard = Installed;
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    let listed = String::from_utf8(ok(Command::new("dpkg").args(["-L", NAME])).stdout).unwrap();
    let files: Vec<&str> = listed.lines().filter(|f| Path::new(f).is_file()).collect();
    for want in [
        "/usr/bin/ftpssh-fullsecure",
        "/usr/share/man/man1/ftpssh-fullsecure.1.gz",
        "/usr/share/bash-completion/completions/ftpssh-fullsecure",
        "/usr/share/doc/ftpssh-fullsecure/copyright",
        "/usr/share/doc/ftpssh-fullsecure/examples/systemd/ftpssh-mirror.service",
        "/usr/share/doc/ftpssh-fullsecure/examples/systemd/ftpssh-mirror.timer",
    ] {
        assert!(files.contains(&want), "{want} is not in the package:\n{listed}");
    }
    assert_eq!(std::fs::read("/usr/bin/ftpssh-fullsecure").unwrap(), std::fs::read(&bin).unwrap());

    // The man page, found by name as `man ftpssh-fullsecure` finds it.
    let page = ok(Command::new("man").arg(NAME).env("MANPAGER", "cat").env("MANWIDTH", "100").env("LANG", "C.UTF-8"));
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.lines().any(|l| l == "EXIT STATUS"), "the installed page:\n{page}");

    // bash-completion's loader finds the script by the command's name, on the first Tab.
    let script = "source /usr/share/bash-completion/bash_completion || exit 9; \
        _completion_loader ftpssh-fullsecure; complete -p ftpssh-fullsecure >/dev/null || exit 8; \
        COMP_WORDS=(ftpssh-fullsecure mi); COMP_CWORD=1; \
        _ftpssh__fullsecure ftpssh-fullsecure mi ftpssh-fullsecure; printf '%s\\n' \"${COMPREPLY[@]}\"";
    let completed = ok(Command::new("bash").args(["--norc", "--noprofile", "-c", script]));
    assert_eq!(String::from_utf8_lossy(&completed.stdout).trim(), "mirror");

    // The systemd examples, as installed: their ExecStart= and man: reference must resolve.
    let examples = "/usr/share/doc/ftpssh-fullsecure/examples/systemd";
    let verified = ok(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("{examples}/ftpssh-mirror.service"))
        .arg(format!("{examples}/ftpssh-mirror.timer")));
    assert!(stderr(&verified).trim().is_empty(), "systemd-analyze verify: {}", stderr(&verified));

    // A download with the installed binary.
    let tool = Tool::new();
    let got = run(tool
        .cmd_of(Path::new("/usr/bin/ftpssh-fullsecure"), tool.lab.port("PROFTPD_PORT"))
        .args(["get", "small.bin"]));
    assert!(got.status.success(), "{}", stderr(&got));
    assert_same(
        &std::fs::read(tool.work.path().join("small.bin")).unwrap(),
        &std::fs::read(tool.remote_path("small.bin")).unwrap(),
        "small.bin, downloaded by the installed binary",
    );

    drop(guard);
    assert!(!installed(), "{NAME} is still installed after dpkg -r");
    let left: Vec<&&str> = files.iter().filter(|f| Path::new(f).exists()).collect();
    assert!(left.is_empty(), "dpkg -r left files behind: {left:?}");
    assert!(!Path::new("/usr/share/doc/ftpssh-fullsecure").exists(), "the doc directory is left behind");
}
