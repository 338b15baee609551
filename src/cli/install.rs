//! What installing needs from the binary itself, generated from the clap definition in
//! `cli.rs`: shell completion scripts (`completions SHELL`) and the man page (`man`).
//! Neither reads a file, the environment or the network: a packager's build runs them.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Arg, Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

use super::args::{Cli, EXIT_CODES};
use crate::credentials::PASSWORD_ENV;

/// The installed name: the completion functions and the man page are named after it.
pub const BIN_NAME: &str = "ftpssh-fullsecure";

/// Write generated text to stdout. It is generated in memory first because clap_complete
/// panics on a write error, such as a pipe closed early.
pub fn print(text: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text).and_then(|()| out.flush()).context("could not write to stdout")
}

/// The completion script for `shell`; bash's completion function is `_ftpssh__fullsecure`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN_NAME, &mut out);
    if shell != Shell::Bash {
        return out;
    }
    // clap_complete 4.6.11's bash script, for a name with a hyphen, moves to the state
    // `ftpssh__fullsecure__subcmd__get` but labels its case arm `ftpssh__subcmd__fullsecure__subcmd__get`,
    // so nothing after a subcommand completes (clap-rs/clap#6421). Spell the arms as the loop does;
    // once clap_complete is fixed, the wrong spelling is absent and this changes nothing.
    let wrong = format!("{}__subcmd__", BIN_NAME.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", BIN_NAME.replace('-', "__"));
    String::from_utf8(out).expect("clap_complete writes UTF-8").replace(&wrong, &right).into_bytes()
}

/// The man page: clap_mangen's name, synopsis and options, then our own sections for
/// the commands (with their arguments), the exit codes and the environment.
pub fn man_page() -> Vec<u8> {
    let mut out = Vec::new();
    write_man_page(&mut out).expect("writing to memory");
    out
}

fn write_man_page(out: &mut Vec<u8>) -> std::io::Result<()> {
    let cmd = Cli::command();
    let man = Man::new(cmd.clone());
    // Our own title line: roff drops an empty argument rather than quoting it, and clap_mangen's
    // title has an empty date, so its source and manual would slide into the wrong fields.
    let version = env!("CARGO_PKG_VERSION");
    writeln!(out, ".TH FTPSSH-FULLSECURE 1 \"\" \"{BIN_NAME} {version}\" \"User Commands\"")?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_options_section(out)?;
    let mut roff = Roff::new();
    commands(&mut roff, &cmd);
    exit_status(&mut roff);
    environment(&mut roff);
    roff.to_writer(out)?;
    man.render_version_section(out)
}

/// COMMANDS: each subcommand with its own arguments (the options above apply to all).
/// `cmd` is not built yet, so a subcommand holds only its own arguments, not the global ones.
fn commands(roff: &mut Roff, cmd: &Command) {
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let args: Vec<&Arg> = sub.get_arguments().filter(|a| !a.is_hide_set()).collect();
        let mut usage = vec![bold(sub.get_name())];
        for arg in &args {
            usage.push(roman(" "));
            usage.extend(in_usage(arg));
        }
        roff.control("TP", []).text(usage);
        roff.text([roman(sub.get_about().map(|a| a.to_string()).unwrap_or_default())]);
        for arg in args {
            let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let values: Vec<String> = arg.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect();
            if !values.is_empty() {
                help.push_str(&format!(" [possible values: {}]", values.join(", ")));
            }
            roff.control("RS", []).control("TP", []).text(synopsis(arg)).text([roman(help)]).control("RE", []);
        }
    }
}

/// The argument in a command's usage line: `<GLOBS>...`, `[LOCAL]`, `[-d DIR]`.
fn in_usage(arg: &Arg) -> Vec<Inline> {
    if arg.is_positional() {
        return synopsis(arg);
    }
    let flag = match arg.get_short() {
        Some(short) => format!("-{short}"),
        None => format!("--{}", arg.get_long().unwrap_or_default()),
    };
    let (open, close) = if arg.is_required_set() { ("", "") } else { ("[", "]") };
    vec![roman(open), bold(flag), roman(" "), italic(value_name(arg)), roman(close)]
}

/// The argument in its description: `-d, --dir DIR`, `<GLOBS>...` or `[LOCAL]`.
fn synopsis(arg: &Arg) -> Vec<Inline> {
    let value = value_name(arg);
    if arg.is_positional() {
        let (open, close) = if arg.is_required_set() { ("<", ">") } else { ("[", "]") };
        let repeated = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) { "..." } else { "" };
        return vec![roman(open), italic(value), roman(format!("{close}{repeated}"))];
    }
    let mut out = Vec::new();
    if let Some(short) = arg.get_short() {
        out.extend([bold(format!("-{short}")), roman(", ")]);
    }
    if let Some(long) = arg.get_long() {
        out.push(bold(format!("--{long}")));
    }
    out.extend([roman(" "), italic(value)]);
    out
}

fn value_name(arg: &Arg) -> String {
    match arg.get_value_names() {
        Some(names) => names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" "),
        None => arg.get_id().to_string().to_uppercase(),
    }
}

/// EXIT STATUS, from the `EXIT_CODES` text that `--help` shows.
fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exit_codes() {
        roff.control("TP", []).text([bold(code)]).text([roman(meaning)]);
    }
}

/// The `code  meaning` lines of [`EXIT_CODES`], continuation lines joined to their code.
fn exit_codes() -> Vec<(String, String)> {
    let mut codes: Vec<(String, String)> = Vec::new();
    let lines = EXIT_CODES.lines().skip_while(|l| !l.starts_with("Exit codes:")).skip(1);
    for line in lines.take_while(|l| !l.trim().is_empty()).map(str::trim) {
        match line.split_once("  ") {
            Some((code, meaning)) if code.starts_with(|c: char| c.is_ascii_digit()) => {
                codes.push((code.to_owned(), meaning.trim().to_owned()))
            }
            _ => {
                if let Some((_, meaning)) = codes.last_mut() {
                    meaning.push(' ');
                    meaning.push_str(line);
                }
            }
        }
    }
    codes
}

/// ENVIRONMENT: what the tool reads besides its arguments.
fn environment(roff: &mut Roff) {
    let vars = [
        ("FTPSSH_SSH", "The SSH server, as for --ssh ([USER@]HOST[:PORT]); --ssh wins."),
        (
            PASSWORD_ENV,
            "The FTP password. Without it: the password in ~/.netrc for the FTP host, else a prompt on \
             the terminal. Never taken from the command line.",
        ),
        ("SSH_AUTH_SOCK", "The ssh-agent, tried before the -i files and the default keys."),
        ("HOME", "Where ~/.ssh/config, ~/.ssh/known_hosts and ~/.netrc are read."),
    ];
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in vars {
        roff.control("TP", []).text([bold(name)]).text([roman(meaning)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_of_the_help_text_is_read() {
        let codes = exit_codes();
        let names: Vec<&str> = codes.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["0", "1", "2", "3", "4", "5", "6", "129/130/143"]);
        assert!(codes[6].1.ends_with("some failed (when none succeeded: the code of the first failure)"));
        assert!(codes[7].1.ends_with("the same command resumes it"));
    }
}
