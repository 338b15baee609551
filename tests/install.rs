//! Installed like a Unix tool: the completion scripts load in their shell, the man page
//! renders with `man -l`, and `scripts/install` puts everything in place under a prefix.
//! None of this needs the lab, an SSH server, a password or HOME.

use std::path::Path;
use std::process::{Command, Output};

use assert_cmd::cargo::cargo_bin;

const BIN: &str = "ftpssh-fullsecure";
const SUBCOMMANDS: [&str; 9] = ["get", "put", "ls", "mget", "mput", "batch", "mirror", "completions", "man"];

/// The binary with an empty environment: nothing it generates may depend on HOME or FTPSSH_*.
fn bin(args: &[&str]) -> Output {
    let out = Command::new(cargo_bin(BIN)).args(args).env_clear().output().unwrap();
    assert!(out.status.success(), "{BIN} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(out: Output) -> String {
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(bin(&["completions", shell]));
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}'s script does not name `{sub}`");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(cargo_bin(BIN)).args(["completions", "tcsh"]).env_clear().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: bash"));
}

/// What bash's completion offers for `words`, the last one being completed, as a user's Tab does.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let script = stdout(bin(&["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("completion.bash");
    std::fs::write(&file, script).unwrap();
    // bash calls the function with the command name, the word being completed and the one before.
    let cword = words.len() - 1;
    let call = format!(
        "source \"$1\" || exit 9; complete -p {BIN} >/dev/null || exit 8; COMP_WORDS=({words}); COMP_CWORD={cword}; \
         _ftpssh__fullsecure {BIN} \"${{COMP_WORDS[{cword}]}}\" \"${{COMP_WORDS[{prev}]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        prev = cword - 1,
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &call, "bash"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `bash` ({e})"));
    assert!(out.status.success(), "bash could not load the script: {}", String::from_utf8_lossy(&out.stderr));
    stdout(out).lines().map(str::to_owned).collect()
}

#[test]
fn bash_loads_the_script_and_completes_subcommands() {
    assert_eq!(bash_completes(&[BIN, "m"]), ["mget", "mput", "mirror", "man"]);
    // After a subcommand: its own options and values (clap_complete needs our fix for a name with `-`).
    assert_eq!(bash_completes(&[BIN, "completions", "z"]), ["zsh"]);
    assert_eq!(bash_completes(&[BIN, "mget", "--di"]), ["--dir"]);
    assert_eq!(bash_completes(&[BIN, "get", "--pace", "ro"]), ["rotate"]);
}

/// The page as `man -l` renders it, plain text at a fixed width.
fn man_renders(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `man` ({e}): install man-db (scripts/build-env does)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "man -l {}: {stderr}", page.display());
    stdout(out)
}

#[test]
fn the_man_page_renders_with_man() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join(format!("{BIN}.1"));
    std::fs::write(&page, bin(&["man"]).stdout).unwrap();
    let text = man_renders(&page);
    for section in ["NAME", "SYNOPSIS", "OPTIONS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"] {
        assert!(text.lines().any(|l| l == section), "no {section} section in:\n{text}");
    }
    assert!(text.contains(&format!("{BIN} - FTP with the control connection")), "{text}");
    for sub in SUBCOMMANDS {
        assert!(text.lines().any(|l| l.trim_start().starts_with(&format!("{sub} "))), "`{sub}` missing:\n{text}");
    }
    for code in ["usage error", "SSH failure", "some transfers succeeded, some failed", "129/130/143"] {
        assert!(text.contains(code), "exit code text `{code}` missing:\n{text}");
    }
    for var in ["FTPSSH_SSH", "FTPSSH_PASSWORD"] {
        assert!(text.contains(var), "{var} missing:\n{text}");
    }
}

/// `scripts/install` with the test's own build (FTPSSH_INSTALL_BIN skips the release build),
/// once into a prefix and once staged under DESTDIR as a package build does.
#[test]
fn scripts_install_puts_everything_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    install_and_check(&prefix, None, &prefix);
    let stage = dir.path().join("stage");
    install_and_check(Path::new("/opt/ftpssh"), Some(&stage), &stage.join("opt/ftpssh"));
}

/// Run `scripts/install PREFIX` (with DESTDIR `stage`) and check what lands under `root`.
fn install_and_check(prefix: &Path, stage: Option<&Path>, root: &Path) {
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install"));
    cmd.arg(prefix).env("FTPSSH_INSTALL_BIN", cargo_bin(BIN)).env_remove("DESTDIR");
    if let Some(stage) = stage {
        cmd.env("DESTDIR", stage);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "scripts/install: {}", String::from_utf8_lossy(&out.stderr));
    let installed = root.join("bin").join(BIN);
    assert_eq!(std::fs::read(&installed).unwrap(), std::fs::read(cargo_bin(BIN)).unwrap());
    let generated = [
        (format!("share/man/man1/{BIN}.1"), vec!["man"]),
        (format!("share/bash-completion/completions/{BIN}"), vec!["completions", "bash"]),
        (format!("share/zsh/site-functions/_{BIN}"), vec!["completions", "zsh"]),
        (format!("share/fish/vendor_completions.d/{BIN}.fish"), vec!["completions", "fish"]),
    ];
    for (rel, args) in generated {
        let file = std::fs::read(root.join(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(file, bin(&args).stdout, "{rel} is not what `{BIN} {}` prints", args.join(" "));
    }
    // The installed binary runs, and the installed page renders.
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(stdout(version).starts_with(BIN));
    assert!(man_renders(&root.join(format!("share/man/man1/{BIN}.1"))).contains("EXIT STATUS"));
}
