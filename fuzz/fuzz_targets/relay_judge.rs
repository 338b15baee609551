//! `relay::judge` on a relay's startup output. The first byte picks the interpreter (perl,
//! python3, socat), the second says whether it exited; the rest is stdout, a NUL, stderr.
#![no_main]

use ftpssh::dataport::relay::{judge, Interpreter, Startup};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [pick, exited, rest @ ..] = data else { return };
    let interpreter = Interpreter::ALL[usize::from(*pick) % 3];
    let exited = exited & 1 == 1;
    let (out, err) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let verdict = judge(interpreter, out, err, exited);
    if exited {
        assert!(verdict.is_some(), "an exited relay is always judged");
    }
    if let Some(Startup::Ready { read_ahead, .. }) = &verdict {
        // What the FTP server sent is a tail of stdout, never invented.
        assert!(out.ends_with(read_ahead));
    }
    // More output never takes back a verdict once the relay is ready.
    if matches!(verdict, Some(Startup::Ready { .. })) && !exited {
        let more = [out, b"220 more"].concat();
        assert!(matches!(judge(interpreter, &more, err, false), Some(Startup::Ready { .. })));
    }
});
