//! Server text made safe to print. A reply, a listing or a file name comes from the FTP server
//! (or whatever answers in its place) and goes to a terminal: raw, `ESC ] 0 ; title BEL` would
//! retitle the window, `ESC [ 2 J` clear the screen, and U+202E (right-to-left override) show
//! `evil\u{202e}txt.exe` as `evilexe.txt`. So C0 and C1 controls and DEL are escaped
//! (`\x1b`, `\u{9b}`), and so are the Unicode format characters that print as nothing (bidi
//! embeddings, overrides and isolates, zero-width spaces and joiners, BOM, tags), which
//! makes them visible. Everything else, non-ASCII letters included, is shown as it is.
//!
//! The escaped form is for reading, not for typing back: a backslash is left as it is.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

/// `text` with every control and invisible format character escaped, `'\n'` included.
pub fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push(&mut out, c);
    }
    Cow::Owned(out)
}

/// Like [`shown`], keeping `'\n'` (messages of ours may span lines; a server's line cannot
/// hold one).
pub fn shown_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && hidden(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.split('\n').map(shown).collect::<Vec<_>>().join("\n"))
}

/// Like [`shown`], for bytes that may not be UTF-8 (a listing): an invalid byte is shown as
/// `\xNN` rather than replaced, so that nothing of the name is lost.
pub fn shown_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&shown(chunk.valid()));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A writer that shows what passes through it line by line ([`shown_bytes`]), each line's
/// terminator (`\n` or `\r\n`) kept: `ls` output on a terminal. [`Write::flush`] shows the
/// unfinished last line too.
pub struct Lines<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> Lines<W> {
    /// Show what is written to `inner`.
    pub fn new(inner: W) -> Lines<W> {
        Lines { inner, pending: Vec::new() }
    }
}

impl<W: Write> Write for Lines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let body = &line[..nl];
            let (body, end) = match body.strip_suffix(b"\r") {
                Some(body) => (body, "\r\n"),
                None => (body, "\n"),
            };
            self.inner.write_all(shown_bytes(body).as_bytes())?;
            self.inner.write_all(end.as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        self.inner.write_all(shown_bytes(&rest).as_bytes())?;
        self.inner.flush()
    }
}

/// True for what must not reach a terminal raw.
fn hidden(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f'..='\u{9f}') || invisible(c)
}

/// Format characters (Unicode category Cf) and fillers that print as nothing: soft hyphen,
/// Arabic letter mark, Hangul fillers, Mongolian selectors, zero-width space/joiners, LRM/RLM,
/// line/paragraph separators, bidi embeddings and overrides (U+202A-U+202E), word joiner and
/// invisible operators, bidi isolates (U+2066-U+2069), BOM, interlinear annotations, tags.
fn invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0xAD | 0x34F
            | 0x61C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE007F
    )
}

fn push(out: &mut String, c: char) {
    if !hidden(c) {
        out.push(c);
    } else if c.is_ascii() {
        let _ = write!(out, "\\x{:02x}", u32::from(c));
    } else {
        let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invisibles_are_escaped() {
        // The greeting of the lab's hostile server: a window title, a clear screen, a C1 CSI, a
        // right-to-left override.
        let greeting = "220 hostile-ftpd ready \x1b]0;owned\x07\x1b[2J\u{9b}31m\u{202e}";
        assert_eq!(shown(greeting), r"220 hostile-ftpd ready \x1b]0;owned\x07\x1b[2J\u{9b}31m\u{202e}");
        assert_eq!(shown("evil\u{202e}txt.exe"), r"evil\u{202e}txt.exe");
        assert_eq!(
            shown("a\u{2066}b\u{2069}\u{200b}\u{feff}\u{7f}\0\r\t"),
            r"a\u{2066}b\u{2069}\u{200b}\u{feff}\x7f\x00\x0d\x09"
        );
        assert_eq!(shown("x\ny"), r"x\x0ay");
        assert_eq!(shown_lines("x\ny\x1b"), "x\ny\\x1b");
    }

    #[test]
    fn ordinary_text_is_untouched() {
        for text in ["226 Transfer complete", "nön-äscii ✓.bin", "name with spaces.bin", r"C:\dir", "日本語", ""]
        {
            assert!(matches!(shown(text), Cow::Borrowed(t) if t == text), "{text:?}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_not_lost() {
        assert_eq!(shown_bytes(b"caf\xe9\x1b.txt"), r"caf\xe9\x1b.txt");
        assert_eq!(shown_bytes("ok ✓".as_bytes()), "ok ✓");
    }

    #[test]
    fn lines_keep_their_terminators_whatever_the_chunks() {
        let listing = "-rw-r--r-- 1 ftp ftp 5 Jan 1 00:00 esc\x1b[2J.bin\r\nplain ✓\nlast";
        for size in [1, 2, 3, 7, 100] {
            let mut out = Lines::new(Vec::new());
            for chunk in listing.as_bytes().chunks(size) {
                out.write_all(chunk).unwrap();
            }
            out.flush().unwrap();
            let want = "-rw-r--r-- 1 ftp ftp 5 Jan 1 00:00 esc\\x1b[2J.bin\r\nplain ✓\nlast";
            assert_eq!(String::from_utf8(out.inner).unwrap(), want, "chunks of {size}");
        }
    }
}
