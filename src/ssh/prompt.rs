//! Asking the user for an SSH secret (a key's passphrase, a password, a keyboard-interactive
//! answer) as OpenSSH's `read_passphrase` does: on the terminal (`/dev/tty`, never stdin,
//! never echoed unless the server asks for echo), else through the `SSH_ASKPASS` program,
//! whose standard output is the answer (the prompt is its only argument, the answer never
//! is). `SSH_ASKPASS_REQUIRE` says when: `force` (always the program), `prefer` (the
//! program when set), `never` (the terminal only); unset, the program only where there is
//! no terminal and a display (`DISPLAY` or `WAYLAND_DISPLAY`), as OpenSSH. `BatchMode yes`
//! turns every question into an error, for cron.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

use crate::error::{classified, Kind};

/// A secret typed by the user, wiped from memory when dropped.
pub type Secret = Zeroizing<String>;

/// Where answers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asker {
    /// `BatchMode yes`: nobody is there to answer.
    Batch,
    /// The controlling terminal.
    Terminal,
    /// The `SSH_ASKPASS` program.
    Program(PathBuf),
    /// No terminal and no askpass program: why, for the error.
    Nobody(&'static str),
}

/// How to ask, from `BatchMode`, the environment, and whether a terminal can be opened.
pub fn asker(batch_mode: bool) -> Asker {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").is_ok();
    let display = env("DISPLAY").is_some() || env("WAYLAND_DISPLAY").is_some();
    let require = std::env::var("SSH_ASKPASS_REQUIRE").unwrap_or_default();
    choose(batch_mode, tty, display, env("SSH_ASKPASS").map(PathBuf::from), &require)
}

/// The choice itself (pure, for the tests).
pub fn choose(batch: bool, tty: bool, display: bool, askpass: Option<PathBuf>, require: &str) -> Asker {
    if batch {
        return Asker::Batch;
    }
    match (require, askpass) {
        ("force", Some(program)) => Asker::Program(program),
        // As OpenSSH: `prefer` still wants a display.
        ("prefer", Some(program)) if display => Asker::Program(program),
        ("never", _) | ("force" | "prefer", None) if tty => Asker::Terminal,
        ("never", _) => Asker::Nobody("there is no terminal and SSH_ASKPASS_REQUIRE is never"),
        (_, Some(program)) if !tty && display => Asker::Program(program),
        _ if tty => Asker::Terminal,
        (_, Some(_)) => Asker::Nobody(
            "there is no terminal, and SSH_ASKPASS is used only with DISPLAY set or SSH_ASKPASS_REQUIRE=force",
        ),
        (_, None) => Asker::Nobody("there is no terminal and SSH_ASKPASS is not set"),
    }
}

impl Asker {
    /// Ask `prompt` (ours, or the server's already escaped); `echo` shows what is typed.
    /// Blocking: run it off the async threads.
    pub fn ask(&self, prompt: &str, echo: bool) -> Result<Secret> {
        match self {
            Asker::Batch => Err(classified(Kind::Ssh, format!("BatchMode is on: not asking {:?}", prompt.trim()))),
            Asker::Nobody(why) => Err(classified(Kind::Ssh, format!("cannot ask {:?}: {why}", prompt.trim()))),
            Asker::Terminal if echo => read_echoed(prompt).context("could not read the answer from the terminal"),
            Asker::Terminal => rpassword::prompt_password(prompt)
                .map(Zeroizing::new)
                .context("could not read the answer from the terminal"),
            Asker::Program(program) => askpass(program, prompt),
        }
    }

    /// Show the server's text (a keyboard-interactive instruction) where the prompts go.
    pub fn tell(&self, text: &str) {
        if matches!(self, Asker::Terminal) {
            if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
                let _ = writeln!(tty, "{text}");
            }
        }
    }
}

fn read_echoed(prompt: &str) -> Result<Secret> {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    (&tty).write_all(prompt.as_bytes())?;
    let mut line = Zeroizing::new(String::new());
    std::io::BufReader::new(&tty).read_line(&mut line)?;
    let end = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(end);
    Ok(line)
}

/// Run the askpass program with the prompt as its argument; its stdout, less the newline,
/// is the answer. A failing program (the user pressed Cancel) is an error.
fn askpass(program: &PathBuf, prompt: &str) -> Result<Secret> {
    let out = Command::new(program)
        .arg(prompt)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not run SSH_ASKPASS {}", program.display()))?;
    let mut answer = Zeroizing::new(String::from_utf8(out.stdout).context("SSH_ASKPASS printed something not UTF-8")?);
    if !out.status.success() {
        bail!("SSH_ASKPASS {} gave no answer ({})", program.display(), out.status);
    }
    let end = answer.trim_end_matches(['\r', '\n']).len();
    answer.truncate(end);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_answers() {
        let p = || Some(PathBuf::from("/bin/askpass"));
        let program = Asker::Program(PathBuf::from("/bin/askpass"));
        assert_eq!(choose(true, true, true, p(), "force"), Asker::Batch);
        assert_eq!(choose(false, true, false, p(), ""), Asker::Terminal);
        assert_eq!(choose(false, false, true, p(), ""), program);
        assert!(matches!(choose(false, false, false, p(), ""), Asker::Nobody(_)));
        assert_eq!(choose(false, true, false, p(), "force"), program);
        assert_eq!(choose(false, true, true, p(), "prefer"), program);
        assert_eq!(choose(false, true, false, p(), "prefer"), Asker::Terminal);
        assert_eq!(choose(false, true, true, p(), "never"), Asker::Terminal);
        assert!(matches!(choose(false, false, true, p(), "never"), Asker::Nobody(_)));
        assert!(matches!(choose(false, false, true, None, ""), Asker::Nobody(_)));
    }

    #[test]
    fn batch_mode_never_asks() {
        let e = Asker::Batch.ask("Password: ", false).unwrap_err();
        assert!(format!("{e:#}").contains("BatchMode"));
        assert_eq!(crate::error::kind(&e), Some(Kind::Ssh));
    }

    #[test]
    fn askpass_answer_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("askpass");
        std::fs::write(&script, "#!/bin/sh\nprintf 'answer to %s\\n' \"$1\"\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let got = Asker::Program(script).ask("Q?", false).unwrap();
        assert_eq!(got.as_str(), "answer to Q?");
        // Another file (rewriting one just run can meet ETXTBSY): a cancelled question.
        let cancel = dir.path().join("cancel");
        std::fs::write(&cancel, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&cancel, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        assert!(Asker::Program(cancel).ask("Q?", false).is_err());
    }
}
