//! On a terminal a download shows a progress bar (and clears it); off a terminal nothing
//! but the summary line. Driven through tmux, as a person at a terminal would see it.
//!
//! Needs root, tmux and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::tool::{run, stderr, Tool};

struct Tmux(String);

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
    }
}

fn pane(session: &str) -> String {
    let out = Command::new("tmux").args(["capture-pane", "-p", "-t", session]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_bar_on_a_terminal_only() {
    let tool = Tool::new();
    let mut cmd = tool.cmd(tool.lab.port("PROFTPD_PORT"));
    cmd.args(["get", "big.bin"]);
    // The same command line, run by a shell inside a tmux pane.
    let mut line = format!(
        "cd {:?} && HOME={:?} FTPSSH_PASSWORD={:?}",
        tool.work.path(),
        tool.home.path(),
        tool.lab.var("FTP_PASSWORD")
    );
    line.push_str(&format!(" {:?}", cmd.get_program()));
    for arg in cmd.get_args() {
        line.push_str(&format!(" {:?}", arg));
    }
    line.push_str("; echo EXIT=$?; sleep 30\n");
    // In a script only we can read, not on tmux's command line: it holds the password.
    let script = tool.work.path().join("run.sh");
    std::fs::write(&script, &line).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let shell_line = format!("sh {:?}", script);
    let name = format!("ftpssh-test-{}", std::process::id());
    let ok = Command::new("tmux")
        .args(["new-session", "-d", "-s", &name, "-x", "120", "-y", "10", &shell_line])
        .status()
        .unwrap();
    assert!(ok.success(), "tmux could not start");
    let _session = Tmux(name.clone());
    let (mut saw_bar, started) = (false, Instant::now());
    let screen = loop {
        let screen = pane(&name);
        saw_bar |= screen.contains("MiB / 100.00 MiB");
        if screen.contains("EXIT=") || started.elapsed() > Duration::from_secs(60) {
            break screen;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(saw_bar, "no progress bar seen on the terminal");
    assert!(!screen.contains("MiB / 100.00 MiB"), "the bar is cleared at the end:\n{screen}");
    assert!(screen.contains("big.bin -> big.bin: 104857600 bytes"), "{screen}");

    // Off a terminal: the summary line and nothing else.
    std::fs::remove_file(tool.work.path().join("big.bin")).unwrap();
    let out = run(tool.cmd(tool.lab.port("PROFTPD_PORT")).args(["get", "big.bin"]));
    let err = stderr(&out);
    assert!(out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("big.bin -> big.bin: 104857600 bytes"), "{err}");
}
