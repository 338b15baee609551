//! The terminal the class watches, its pace and its looks: `--step` waits for
//! Enter between steps, but only when someone can press it (stdin is a
//! terminal); colours only on a terminal, and never when `NO_COLOR` is set
//! (<https://no-color.org>).

use std::io::{BufRead, IsTerminal, Write};

/// Colours, or plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours on.
    pub color: bool,
}

impl Style {
    /// Colours when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn detect() -> Style {
        Style::choose(std::env::var_os("NO_COLOR").as_deref(), std::io::stdout().is_terminal())
    }

    /// The rule: colours on a terminal, unless `NO_COLOR` holds anything (an empty one does not count).
    pub fn choose(no_color: Option<&std::ffi::OsStr>, terminal: bool) -> Style {
        Style { color: terminal && no_color.is_none_or(|v| v.is_empty()) }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A step's heading.
    pub fn heading(&self, text: &str) -> String {
        self.paint("1;4", text)
    }

    /// A label (C, P, U-1, U, S) in its own colour, the same in every table.
    pub fn label(&self, label: &str, text: &str) -> String {
        let code = match label {
            "C" => "1;36",
            "P" => "1;33",
            "U-1" | "U" => "1;32",
            "S" => "1;35",
            _ => "1",
        };
        self.paint(code, text)
    }

    /// Something that went wrong on purpose (a collision).
    pub fn alert(&self, text: &str) -> String {
        self.paint("1;31", text)
    }

    /// Rows that do not matter here.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// Waits between steps, or not.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    wait: bool,
}

impl Pacer {
    /// `--step`, honoured only when stdin is a terminal: a pipe or a script
    /// has nobody to press Enter, so the run goes straight through.
    pub fn new(step: bool) -> Pacer {
        Pacer { wait: step && std::io::stdin().is_terminal() }
    }

    /// True when the run waits for Enter between steps.
    pub fn waits(&self) -> bool {
        self.wait
    }

    /// After a step: wait for Enter (with `--step`), off the async threads.
    pub async fn next(&self) {
        if !self.wait {
            return;
        }
        print!("-- press Enter for the next step --");
        let _ = std::io::stdout().flush();
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_without_colour() {
        let plain = Style { color: false };
        assert_eq!(plain.label("C", "C 51000"), "C 51000");
        let color = Style { color: true };
        assert_eq!(color.label("P", "P"), "\x1b[1;33mP\x1b[0m");
        assert_eq!(color.alert("425"), "\x1b[1;31m425\x1b[0m");
    }

    #[test]
    fn no_color_and_no_terminal_mean_plain() {
        use std::ffi::OsStr;
        assert!(Style::choose(None, true).color);
        assert!(Style::choose(Some(OsStr::new("")), true).color);
        assert!(!Style::choose(Some(OsStr::new("1")), true).color);
        assert!(!Style::choose(None, false).color);
    }

    #[tokio::test]
    async fn no_terminal_no_wait() {
        // Under `cargo test` stdin is not a terminal, or the test harness owns it: never block.
        let pacer = Pacer { wait: false };
        pacer.next().await;
        assert!(!pacer.waits());
    }
}
