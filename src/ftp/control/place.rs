//! Where a control connection stands: the commands that moved it (CWD, CDUP and their X
//! forms) and those that set how it transfers and answers (TYPE, MODE, STRU, OPTS), as the
//! server took them.
//!
//! A link may give its control connection up and log in anew (a server that stays silent on a
//! transfer without PORT is still busy with it: [`crate::link`]'s fallback). For the built-in
//! commands that changes nothing: they name every path from the login directory. A client of the
//! `tunnel` moved and set things on the old connection, though, and names its files from there:
//! the new one is brought to the same place first (`link::fallback`'s `retrace`). Relative moves
//! replayed in order land where they landed; an absolute CWD starts the list afresh, and a
//! setting replaces the one before it.

use super::super::reply::Reply;

/// Moves kept at most. Past that the place is lost: a new connection says it cannot retrace.
const MAX_MOVES: usize = 256;

/// What brought a control connection where it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    moves: Vec<String>,
    settings: Vec<String>,
    lost: bool,
}

impl Place {
    /// Take `line` (a command as sent) into account if the server took it (`reply`).
    pub fn note(&mut self, line: &str, reply: &Reply) {
        if !(200..300).contains(&reply.code) {
            return;
        }
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "CWD" | "XCWD" => {
                if arg.starts_with('/') {
                    self.moves.clear();
                    self.lost = false;
                }
                self.moves.push(line.into());
            }
            "CDUP" | "XCUP" => self.moves.push(line.into()),
            _ => {
                let Some(key) = setting(line) else { return };
                self.settings.retain(|s| setting(s).as_ref() != Some(&key));
                self.settings.push(line.into());
            }
        }
        if self.moves.len() > MAX_MOVES {
            self.moves.clear();
            self.lost = true;
        }
    }

    /// The commands that bring a new control connection here, in order; None where too many
    /// relative moves were made to keep them all.
    pub fn commands(&self) -> Option<impl Iterator<Item = &str>> {
        (!self.lost).then(|| self.moves.iter().chain(&self.settings).map(String::as_str))
    }
}

/// Which setting `line` makes, if any: TYPE, MODE, STRU, or an OPTS by its first word (`OPTS
/// HASH SHA-256`, `OPTS UTF8 ON`: a new connection starts from the server's defaults).
fn setting(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().map(str::to_ascii_uppercase);
    match words.next()?.as_str() {
        v @ ("TYPE" | "MODE" | "STRU") => Some(v.into()),
        "OPTS" => Some(format!("OPTS {}", words.next()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> Reply {
        Reply { code, lines: vec![format!("{code} ok")] }
    }

    fn place(sent: &[(&str, u16)]) -> Place {
        let mut p = Place::default();
        for (line, code) in sent {
            p.note(line, &reply(*code));
        }
        p
    }

    fn commands(p: &Place) -> Vec<&str> {
        p.commands().expect("kept").collect()
    }

    #[test]
    fn moves_in_order_and_the_last_of_each_setting() {
        let p = place(&[
            ("TYPE I", 200),
            ("CWD many", 250),
            ("CWD nope", 550),
            ("CDUP", 200),
            ("XCWD many", 250),
            ("type A", 200),
            ("PWD", 257),
            ("RETR f001.txt", 226),
            ("MODE S", 200),
            ("OPTS HASH SHA-1", 200),
            ("OPTS UTF8 ON", 200),
            ("opts hash SHA-256", 200),
            ("OPTS MLST size;", 501),
        ]);
        assert_eq!(
            commands(&p),
            ["CWD many", "CDUP", "XCWD many", "type A", "MODE S", "OPTS UTF8 ON", "opts hash SHA-256"]
        );
    }

    #[test]
    fn an_absolute_move_starts_afresh() {
        let p = place(&[("CWD a", 250), ("CWD b", 250), ("CWD /srv/ftp", 250), ("CWD c", 250)]);
        assert_eq!(commands(&p), ["CWD /srv/ftp", "CWD c"]);
    }

    #[test]
    fn too_many_relative_moves_lose_the_place_until_an_absolute_one() {
        let many: Vec<(String, u16)> = (0..=MAX_MOVES).map(|i| (format!("CWD d{i}"), 250)).collect();
        let sent: Vec<(&str, u16)> = many.iter().map(|(l, c)| (l.as_str(), *c)).collect();
        let mut p = place(&sent);
        assert!(p.commands().is_none());
        p.note("CWD /", &reply(250));
        assert_eq!(commands(&p), ["CWD /"]);
    }

    #[test]
    fn a_fresh_connection_has_nothing_to_retrace() {
        assert_eq!(commands(&Place::default()), Vec::<&str>::new());
    }
}
