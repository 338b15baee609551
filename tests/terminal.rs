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

/// `args` run by a shell inside a new tmux pane, 120 columns wide; the session's name.
fn in_tmux(tool: &Tool, args: &[&str]) -> Tmux {
    let mut cmd = tool.cmd(tool.lab.port("PROFTPD_PORT"));
    cmd.args(args);
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
    Tmux(name)
}

#[test]
fn progress_bar_on_a_terminal_only() {
    let tool = Tool::new();
    let session = in_tmux(&tool, &["get", "big.bin"]);
    let name = session.0.clone();
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

/// The rate a line of the pane shows (`19.9 MiB/s`), in MiB/s.
fn rate_in(line: &str) -> Option<f64> {
    let at = line.find(" MiB/s")?;
    line[..at].rsplit(' ').next()?.parse().ok()
}

/// A bulk run on a terminal says which file moves, at what rate, and how long is left; under
/// `--bwlimit` the rate holds the limit from the first second.
#[test]
fn bulk_progress_line_under_a_limit() {
    let tool = Tool::new();
    let session = in_tmux(&tool, &["--bwlimit", "20M", "mget", "big.bin", "small.bin", "-d", "."]);
    let started = Instant::now();
    let (mut lines, mut screen) = (Vec::new(), String::new());
    while !screen.contains("EXIT=") && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        screen = pane(&session.0);
        if let Some(line) = screen.lines().find(|l| l.contains("files  ")) {
            lines.push((started.elapsed(), line.trim().to_string()));
        }
    }
    assert!(screen.contains("EXIT=0"), "{screen}");
    let shown: Vec<&(Duration, String)> =
        lines.iter().filter(|(_, l)| l.starts_with("0/2 files  big.bin  ") && l.ends_with(" left")).collect();
    assert!(shown.len() >= 10, "the line never said file, rate and time left for long:\n{lines:#?}");
    for (at, line) in &shown {
        let rate = rate_in(line).unwrap_or_else(|| panic!("no rate in {line:?}"));
        // From the first second on: the limit, not a burst above it.
        assert!(rate <= 21.0, "{line:?} at {at:?}: more than the 20 MiB/s limit");
    }
    let late: Vec<f64> =
        shown.iter().filter(|(at, _)| *at > Duration::from_secs(2)).filter_map(|(_, l)| rate_in(l)).collect();
    assert!(late.iter().any(|r| *r > 17.0), "the rate never came near the limit: {late:?}");
    // 100 MiB at 20 MiB/s: about five seconds, counted down.
    let first_left = &shown[0].1;
    assert!(first_left.ends_with("0:05 left") || first_left.ends_with("0:04 left"), "{first_left}");
    assert!(started.elapsed() >= Duration::from_millis(4800), "100 MiB in {:?} under a 20M limit", started.elapsed());
    assert!(!screen.contains("files  "), "the line is cleared at the end:\n{screen}");
    eprintln!("{lines:#?}");
}

/// One transfer's bar under `--bwlimit`: the limit from the first second too.
#[test]
fn byte_bar_under_a_limit() {
    let tool = Tool::new();
    let session = in_tmux(&tool, &["--bwlimit", "20M", "get", "big.bin"]);
    let started = Instant::now();
    let (mut rates, mut screen) = (Vec::new(), String::new());
    while !screen.contains("EXIT=") && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        screen = pane(&session.0);
        if let Some(line) = screen.lines().find(|l| l.contains("/ 100.00 MiB")) {
            rates.push((started.elapsed(), line.trim().to_string()));
        }
    }
    assert!(screen.contains("EXIT=0"), "{screen}");
    eprintln!("{rates:#?}");
    assert!(rates.len() >= 10, "no bar seen for long: {rates:#?}");
    for (at, line) in &rates {
        let rate = rate_in(line).unwrap_or(0.0);
        assert!(rate <= 21.0, "{line:?} at {at:?}: more than the 20 MiB/s limit");
    }
}
