//! `--ascii` (TYPE A): text whose lines end in CRLF on the wire, as `ftp`'s
//! `ascii`, lftp's `get -a` and curl's `--use-ascii`.
//!
//! A download turns each CRLF it receives into LF; any other CR stays. An
//! upload sends each LF not already preceded by CR as CRLF, so a file with
//! LF lines and one with CRLF lines go out alike (as curl sends them); the
//! server then stores its own line ending. What each server does with
//! them differs (some convert nothing; see `docs/transfers.md`).
//!
//! Both sides keep one byte of state across chunks: a CR at the end of a
//! chunk belongs to the next one's LF, or not.
//!
//! Sizes and offsets in converted bytes are not the server file's, so an
//! ASCII transfer never resumes, checks no announced size and takes no
//! `--verify` (the rules are in [`crate::cli`] and [`crate::transfer`]).

/// Wire text to local text: CRLF to LF.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The last chunk ended in a CR, not written yet.
    held_cr: bool,
}

impl Decoder {
    /// Append `wire`'s bytes, converted, to `out`.
    pub fn decode(&mut self, wire: &[u8], out: &mut Vec<u8>) {
        out.reserve(wire.len() + 1);
        let mut rest = wire;
        if self.held_cr && !rest.is_empty() {
            self.held_cr = false;
            if rest.first() != Some(&b'\n') {
                out.push(b'\r'); // a CR of its own: kept
            }
        }
        while let Some(at) = rest.iter().position(|&b| b == b'\r') {
            out.extend_from_slice(&rest[..at]);
            match rest.get(at + 1) {
                None => {
                    self.held_cr = true;
                    return;
                }
                Some(b'\n') => {} // the LF that follows is written next
                Some(_) => out.push(b'\r'),
            }
            rest = &rest[at + 1..];
        }
        out.extend_from_slice(rest);
    }

    /// What is left at the end of the data: a final CR, kept.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.held_cr) {
            out.push(b'\r');
        }
    }
}

/// Local text to wire text: LF to CRLF, an existing CRLF as it is.
#[derive(Debug, Default)]
pub struct Encoder {
    /// The last byte of the previous chunk was a CR.
    after_cr: bool,
}

impl Encoder {
    /// Append `local`'s bytes, converted, to `out`.
    pub fn encode(&mut self, local: &[u8], out: &mut Vec<u8>) {
        out.reserve(local.len() + local.len() / 32);
        let mut prev_cr = self.after_cr;
        let mut start = 0;
        for (i, &b) in local.iter().enumerate() {
            if b == b'\n' && !prev_cr {
                out.extend_from_slice(&local[start..i]);
                out.push(b'\r');
                start = i;
            }
            prev_cr = b == b'\r';
        }
        out.extend_from_slice(&local[start..]);
        if !local.is_empty() {
            self.after_cr = prev_cr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(chunks: &[&[u8]]) -> Vec<u8> {
        let (mut d, mut out) = (Decoder::default(), Vec::new());
        for c in chunks {
            d.decode(c, &mut out);
        }
        d.finish(&mut out);
        out
    }

    fn encoded(chunks: &[&[u8]]) -> Vec<u8> {
        let (mut e, mut out) = (Encoder::default(), Vec::new());
        for c in chunks {
            e.encode(c, &mut out);
        }
        out
    }

    #[test]
    fn downloads_turn_crlf_into_lf_and_keep_other_crs() {
        // As ProFTPD sends an LF file, and inetutils a CRLF file (CR CR LF).
        assert_eq!(decoded(&[b"one\r\ntwo\r\n\r\nthree"]), b"one\ntwo\n\nthree");
        assert_eq!(decoded(&[b"one\r\r\ntwo\r\r\n"]), b"one\r\ntwo\r\n");
        assert_eq!(decoded(&[b"a\r\rb\rc\r\n"]), b"a\r\rb\rc\n");
        assert_eq!(decoded(&[b"no line end"]), b"no line end");
        assert_eq!(decoded(&[b"ends in CR\r"]), b"ends in CR\r");
        assert_eq!(decoded(&[]), b"");
    }

    #[test]
    fn a_cr_at_a_chunk_boundary_meets_its_lf() {
        assert_eq!(decoded(&[b"one\r", b"\ntwo\r", b"\n"]), b"one\ntwo\n");
        assert_eq!(decoded(&[b"a\r", b"b"]), b"a\rb");
        assert_eq!(decoded(&[b"a\r", b"\r", b"\n"]), b"a\r\n");
        assert_eq!(decoded(&[b"\r", b"", b"\n"]), b"\n");
        // Every split of a text gives the same bytes.
        let wire: &[u8] = b"x\r\n\r\ry\r\r\nz\r";
        for at in 0..=wire.len() {
            assert_eq!(decoded(&[&wire[..at], &wire[at..]]), decoded(&[wire]), "split at {at}");
        }
    }

    #[test]
    fn uploads_send_lf_as_crlf_once() {
        assert_eq!(encoded(&[b"one\ntwo\n\nthree"]), b"one\r\ntwo\r\n\r\nthree");
        assert_eq!(encoded(&[b"one\r\ntwo\r\n"]), b"one\r\ntwo\r\n");
        assert_eq!(encoded(&[b"a\r\rb\rc\n"]), b"a\r\rb\rc\r\n");
        assert_eq!(encoded(&[b"\n\n"]), b"\r\n\r\n");
        assert_eq!(encoded(&[b"one\r", b"", b"\ntwo", b"\n"]), b"one\r\ntwo\r\n");
        let local: &[u8] = b"\nx\r\ny\n\r\r\n";
        for at in 0..=local.len() {
            assert_eq!(encoded(&[&local[..at], &local[at..]]), encoded(&[local]), "split at {at}");
        }
    }

    #[test]
    fn what_goes_up_comes_back_down() {
        for text in [&b"one\ntwo\n"[..], b"one\r\ntwo", b"a\r\rb\rc\n", b""] {
            let lf = decoded(&[&encoded(&[text])]);
            assert_eq!(lf, decoded(&[text]), "{text:?}");
        }
    }
}
