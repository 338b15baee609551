//! The questions of SSH authentication on a terminal, as a person answers them: driven
//! through tmux. A password and a passphrase are not echoed; a keyboard-interactive prompt
//! that asks for echo is; the server's text is shown before its prompt. The answers reach
//! tmux through a buffer file, never a command line.
//!
//! Needs root, tmux and `scripts/lab up`; run with `--test-threads=1`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::sshauth::{at, cmd};
use common::tool::{assert_same, Tool};

/// How long the tool may take to show a question, or to finish once answered.
const WAIT: Duration = Duration::from_secs(30);

struct Tmux {
    name: String,
    dir: std::path::PathBuf,
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.name]).status();
    }
}

impl Tmux {
    /// `command` (its environment included) run by a shell in a new tmux pane.
    fn start(tool: &Tool, command: &Command, tag: &str) -> Tmux {
        let mut line = format!("cd {:?} &&", tool.work.path());
        for (k, v) in command.get_envs() {
            match v {
                Some(v) => line.push_str(&format!(" {}={:?}", k.to_string_lossy(), v)),
                None => line.insert_str(0, &format!("unset {}; ", k.to_string_lossy())),
            }
        }
        // No `setsid`: the pane is the tool's terminal.
        let args: Vec<_> = command.get_args().skip(1).collect();
        for arg in args {
            line.push_str(&format!(" {:?}", arg));
        }
        line.push_str("; echo EXIT=$?; sleep 60\n");
        // In a file only we read: the environment holds the FTP password.
        let script = tool.home.path().join(format!("{tag}.sh"));
        std::fs::write(&script, &line).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let name = format!("ftpssh-sshauth-{tag}-{}", std::process::id());
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "160", "-y", "20", &format!("sh {script:?}")])
            .status()
            .unwrap();
        assert!(ok.success(), "tmux could not start");
        Tmux { name, dir: tool.home.path().to_path_buf() }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.name]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text` `times` times; returns the screen.
    fn wait_for(&self, text: &str, times: usize) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= times || screen.contains("EXIT=") {
                return screen;
            }
            assert!(started.elapsed() < WAIT, "{text:?} never showed:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `answer` and Enter, through a tmux buffer loaded from a file.
    fn answer(&self, answer: &str) {
        let file = self.dir.join("answer");
        std::fs::write(&file, answer).unwrap();
        let buffer = format!("{}-answer", self.name);
        let load = Command::new("tmux").args(["load-buffer", "-b", &buffer]).arg(&file).status().unwrap();
        assert!(load.success());
        std::fs::remove_file(&file).unwrap();
        let paste =
            Command::new("tmux").args(["paste-buffer", "-d", "-b", &buffer, "-t", &self.name]).status().unwrap();
        let enter = Command::new("tmux").args(["send-keys", "-t", &self.name, "Enter"]).status().unwrap();
        assert!(paste.success() && enter.success());
    }
}

#[test]
fn password_and_code_typed_on_the_terminal() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let ssh = at(&tool, "SERVER_ADDR", lab.port("KBDINT_SSH_PORT"));
    let mut c = cmd(&tool, &ssh, &format!("127.0.0.1:{}", lab.port("PROFTPD_PORT")), None);
    c.args(["get", "small.bin"]);
    let tmux = Tmux::start(&tool, &c, "kbdint");
    let screen = tmux.wait_for("Password:", 1); // capture-pane drops trailing blanks
    assert!(screen.contains("Two questions: your password, then the lab token."), "{screen}");
    tmux.answer(lab.var("FTP_PASSWORD"));
    tmux.wait_for("Verification code:", 1);
    tmux.answer(lab.var("KBDINT_TOKEN"));
    let screen = tmux.wait_for("EXIT=", 1);
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(!screen.contains(lab.var("FTP_PASSWORD")), "the password was echoed:\n{screen}");
    assert!(
        screen.contains(&format!("Verification code: {}", lab.var("KBDINT_TOKEN"))),
        "echo asked, not shown:\n{screen}"
    );
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    assert_same(&std::fs::read(tool.work.path().join("small.bin")).unwrap(), &want, "small.bin");
}

#[test]
fn passphrase_typed_on_the_terminal_wrong_then_right() {
    let tool = Tool::new();
    let lab = &tool.lab;
    let ssh = at(&tool, "SERVER_ADDR", lab.port("SSH_PORT"));
    let mut c = cmd(&tool, &ssh, &format!("127.0.0.1:{}", lab.port("PROFTPD_PORT")), None);
    c.arg("-i").arg(lab.path("ENCRYPTED_KEY")).args(["get", "small.bin"]);
    let tmux = Tmux::start(&tool, &c, "passphrase");
    tmux.wait_for("Enter passphrase for key '", 1);
    tmux.answer("not the passphrase");
    tmux.wait_for("Bad passphrase, try again", 1);
    tmux.answer(lab.var("KEY_PASSPHRASE"));
    let screen = tmux.wait_for("EXIT=", 1);
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(!screen.contains(lab.var("KEY_PASSPHRASE")) && !screen.contains("not the passphrase"), "echoed:\n{screen}");
    let want = std::fs::read(tool.remote_path("small.bin")).unwrap();
    assert_same(&std::fs::read(tool.work.path().join("small.bin")).unwrap(), &want, "small.bin");
}
