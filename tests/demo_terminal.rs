//! `demo --step` at a terminal (tmux): it stops after each step until Enter
//! is pressed, and paints the labels; the same run without a terminal goes
//! straight through (tests/demo.rs).
//!
//! Needs root, tmux and `scripts/lab up`; run under the lab's lock with `--test-threads=1`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::tool::Tool;

struct Tmux(String);

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
    }
}

impl Tmux {
    fn screen(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-S", "-200", "-t", &self.0];
        if escapes {
            args.push("-e");
        }
        String::from_utf8_lossy(&Command::new("tmux").args(&args).output().unwrap().stdout).into_owned()
    }

    fn enter(&self) {
        assert!(Command::new("tmux").args(["send-keys", "-t", &self.0, "Enter"]).status().unwrap().success());
    }

    /// The screen once `done` holds for it, within `limit`.
    fn until(&self, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen(false);
            if done(&screen) || started.elapsed() > limit {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn step_waits_for_enter_and_advances() {
    let tool = Tool::new();
    let mut cmd = tool.cmd(tool.lab.port("PROFTPD_FIXED_PORT"));
    let svg = tool.work.path().join("t.svg");
    cmd.args(["demo", "small.bin", "--transfers", "1", "--watch", "1", "--step", "--timeline", svg.to_str().unwrap()]);
    let mut line = format!(
        "cd {:?} && HOME={:?} FTPSSH_PASSWORD={:?} {:?}",
        tool.work.path(),
        tool.home.path(),
        tool.lab.var("FTP_PASSWORD"),
        cmd.get_program()
    );
    for arg in cmd.get_args() {
        line.push_str(&format!(" {arg:?}"));
    }
    line.push_str("; echo EXIT=$?; sleep 60\n");
    // In a script only we can read, not on tmux's command line: it holds the password.
    let script = tool.work.path().join("run.sh");
    std::fs::write(&script, &line).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let tmux = Tmux(format!("ftpssh-demo-test-{}", std::process::id()));
    let started = Command::new("tmux")
        .args(["new-session", "-d", "-s", &tmux.0, "-x", "160", "-y", "50", &format!("sh {script:?}")])
        .status()
        .unwrap();
    assert!(started.success(), "tmux could not start");
    let waiting = |s: &str| s.contains("press Enter for the next step");
    let screen = tmux.until(Duration::from_secs(30), |s| s.contains("Step 1:") && waiting(s));
    assert!(screen.contains("Step 1:") && waiting(&screen), "no pause after step 1:\n{screen}");
    // It stays there.
    std::thread::sleep(Duration::from_secs(2));
    let screen = tmux.screen(false);
    assert!(!screen.contains("Step 2:"), "went on without Enter:\n{screen}");
    assert!(tmux.screen(true).contains('\x1b'), "no colours on a terminal");
    tmux.enter();
    let screen = tmux.until(Duration::from_secs(30), |s| s.contains("Step 2:"));
    assert!(screen.contains("Step 2:"), "Enter did not advance:\n{screen}");
    // Enter through the remaining steps.
    let started = Instant::now();
    let screen = loop {
        let screen = tmux.screen(false);
        if screen.contains("EXIT=") || started.elapsed() > Duration::from_secs(60) {
            break screen;
        }
        if waiting(screen.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")) {
            tmux.enter();
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(screen.contains("Step 3: transfer 1: small.bin"), "{screen}");
}
