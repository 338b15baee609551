//! The batch file of `ftpssh-fullsecure batch FILE`, and the name matching of `mget`.
//!
//! One transfer per line:
//!
//! ```text
//! # comments and blank lines are ignored
//! get REMOTE [LOCAL]
//! put LOCAL [REMOTE]
//! get "name with spaces.bin" local.bin
//! ```
//!
//! Arguments are separated by whitespace; one with spaces is written in double
//! quotes, inside which `\"` and `\\` are the only escapes. A `#` only starts a
//! comment at the beginning of a line, since it is legal in file names.
//!
//! `mget` trusts the server for nothing but a list of names: each one must be a
//! plain name inside the directory asked for, so a hostile listing cannot make
//! us write outside the target directory.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::error::{classified, Kind};

/// The direction of one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Download: source is remote, target is local.
    Get,
    /// Upload: source is local, target is remote.
    Put,
}

impl Op {
    /// The verb as written in the batch file.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
        }
    }
}

/// One line of a batch file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Get or put.
    pub op: Op,
    /// Remote name for a get, local path for a put.
    pub source: String,
    /// Local path for a get, remote name for a put; `None`: derived from the source.
    pub target: Option<String>,
    /// 1-based line number in the batch file, for messages.
    pub line: usize,
}

/// Parse a whole batch file. Every bad line is reported, each with its number
/// and text, as one usage error (exit code 2).
pub fn parse(text: &str) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some((op, source, target))) => jobs.push(Job { op, source, target, line: number }),
            // {:?} because the line may hold control characters.
            Err(why) => errors.push(format!("line {number}: {why}: {line:?}")),
        }
    }
    if !errors.is_empty() {
        bail!(classified(Kind::Usage, format!("bad batch file:\n{}", errors.join("\n"))));
    }
    Ok(jobs)
}

type Parsed = (Op, String, Option<String>);

fn parse_line(line: &str) -> Result<Option<Parsed>, String> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let words = split_words(line)?;
    let (verb, args) = words.split_first().ok_or("empty line")?;
    let op = match verb.as_str() {
        "get" => Op::Get,
        "put" => Op::Put,
        _ => return Err(format!("unknown verb {verb:?} (expected get or put)")),
    };
    match args {
        [source] => Ok(Some((op, source.clone(), None))),
        [source, target] => Ok(Some((op, source.clone(), Some(target.clone())))),
        [] => Err(format!("{verb} needs a file name")),
        _ => Err(format!("{verb} takes at most two file names, got {}", args.len())),
    }
}

/// Split a line into words: whitespace-separated, or double-quoted with `\"` and `\\`.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    // Tabs are separators; any other control character in a name is refused.
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err("control character".into());
    }
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(first) = chars.next() else { return Ok(words) };
        let mut word = String::new();
        if first == '"' {
            loop {
                match chars.next() {
                    None => return Err("unterminated quote".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\')) => word.push(c),
                        _ => return Err("only \\\" and \\\\ may follow a backslash in quotes".into()),
                    },
                    Some(c) => word.push(c),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err("a closing quote must end the argument".into());
            }
            if word.is_empty() {
                return Err("empty file name".into());
            }
        } else {
            word.push(first);
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '"' {
                    return Err("quote inside an unquoted argument".into());
                }
                word.push(c);
            }
        }
        words.push(word);
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Split `many/*.txt` into `(Some("many"), "*.txt")`; `*.txt` has no directory
/// part, and `/*.txt` has `Some("/")`.
pub fn split_glob(pattern: &str) -> (Option<&str>, &str) {
    match pattern.rfind('/') {
        None => (None, pattern),
        Some(0) => (Some("/"), &pattern[1..]),
        Some(i) => (Some(&pattern[..i]), &pattern[i + 1..]),
    }
}

/// The remote paths that `mget pattern` fetches, sorted, from the names the
/// server's NLST returned for the pattern's directory (bare `f.txt` or
/// `dir/f.txt`: both are accepted). Only the last component may hold glob
/// characters; `*` does not match a leading dot, as in the shell. A pattern
/// without glob characters is returned as is.
pub fn glob_matches(pattern: &str, names: &[String]) -> Result<Vec<String>> {
    if !has_glob(pattern) {
        return Ok(vec![pattern.to_string()]);
    }
    let (dir, base) = split_glob(pattern);
    if dir.is_some_and(has_glob) {
        bail!(classified(Kind::Usage, format!("only the last component of {pattern:?} may contain glob characters")));
    }
    let glob =
        glob::Pattern::new(base).map_err(|e| classified(Kind::Usage, format!("bad glob pattern {pattern:?}: {e}")))?;
    let options = glob::MatchOptions { require_literal_leading_dot: true, ..Default::default() };
    let prefix = match dir {
        None => String::new(),
        Some(d) if d.ends_with('/') => d.to_string(),
        Some(d) => format!("{d}/"),
    };
    let mut found = Vec::new();
    for name in names {
        if name.is_empty() {
            continue;
        }
        let plain = name.strip_prefix(&prefix).filter(|_| !prefix.is_empty()).unwrap_or(name);
        if plain.is_empty()
            || plain == "."
            || plain == ".."
            || plain.contains('/')
            || plain.chars().any(char::is_control)
        {
            tracing::warn!("ignoring the name {name:?} in the server's listing of {pattern:?}");
            continue;
        }
        if glob.matches_with(plain, options) {
            found.push(format!("{prefix}{plain}"));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(op: Op, source: &str, target: Option<&str>, line: usize) -> Job {
        Job { op, source: source.into(), target: target.map(Into::into), line }
    }

    #[test]
    fn parses_verbs_quotes_and_comments() {
        let text = "# nightly\n\n  get a.bin\nput  local.txt\tremote.txt\n   # indented comment\n\
                    get \"name with spaces.bin\" local.bin\nput \"q\\\"uote\\\\d\" \"x y\"\r\nget nön#✓\n";
        let jobs = parse(text).unwrap();
        assert_eq!(
            jobs,
            [
                job(Op::Get, "a.bin", None, 3),
                job(Op::Put, "local.txt", Some("remote.txt"), 4),
                job(Op::Get, "name with spaces.bin", Some("local.bin"), 6),
                job(Op::Put, "q\"uote\\d", Some("x y"), 7),
                job(Op::Get, "nön#✓", None, 8),
            ]
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn every_bad_line_is_named() {
        let bad = [
            ("fetch a", "unknown verb"),
            ("get", "needs a file name"),
            ("put a b c", "at most two"),
            ("get \"open", "unterminated quote"),
            ("get a\u{1b}b", "control character"),
            ("get \"a\\nb\"", "backslash"),
            ("get \"a\"b", "closing quote"),
            ("get a\"b\"", "quote inside"),
            ("get \"\"", "empty file name"),
            ("GET a", "unknown verb"),
        ];
        for (line, why) in bad {
            let err = format!("{:#}", parse(&format!("get ok\n{line}\n")).unwrap_err());
            assert!(err.contains("line 2: ") && err.contains(why), "{line:?}: {err}");
            assert!(err.contains(&format!("{line:?}")), "{line:?}: {err}");
        }
        let err = parse("x\nget ok\ny\n").unwrap_err();
        assert!(err.to_string().contains("line 1") && err.to_string().contains("line 3"), "{err}");
        assert_eq!(crate::error::exit_code(&err), 2);
    }

    #[test]
    fn splits_glob() {
        assert_eq!(split_glob("*.txt"), (None, "*.txt"));
        assert_eq!(split_glob("many/*.txt"), (Some("many"), "*.txt"));
        assert_eq!(split_glob("a/b/f?.bin"), (Some("a/b"), "f?.bin"));
        assert_eq!(split_glob("/*.txt"), (Some("/"), "*.txt"));
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn globs_accept_both_listing_styles() {
        let bare = names(&["f002.txt", "f001.txt", "g.bin", ".hidden.txt"]);
        let full = names(&["many/f002.txt", "many/f001.txt", "many/g.bin"]);
        for listing in [&bare, &full] {
            assert_eq!(glob_matches("many/*.txt", listing).unwrap(), ["many/f001.txt", "many/f002.txt"]);
        }
        assert_eq!(glob_matches("*.txt", &bare).unwrap(), ["f001.txt", "f002.txt"]);
        assert_eq!(glob_matches("/f00[2]*", &names(&["/f002.txt", "f001.txt"])).unwrap(), ["/f002.txt"]);
        assert_eq!(glob_matches("many/plain.txt", &[]).unwrap(), ["many/plain.txt"]);
        assert!(glob_matches("*/x.txt", &bare).is_err());
        assert!(glob_matches("[", &bare).is_err());
    }

    #[test]
    fn hostile_names_are_never_returned() {
        let hostile =
            names(&["..", ".", "../etc.txt", "other/x.txt", "/etc/x.txt", "many/../x.txt", "a\nb.txt", "ok.txt"]);
        assert_eq!(glob_matches("many/*", &hostile).unwrap(), ["many/ok.txt"]);
        assert_eq!(glob_matches("*", &hostile).unwrap(), ["ok.txt"]);
    }
}
