//! `ftp::passive_reply::parse_pasv` and `parse_epsv` on any reply: the one parsed from the bytes, and
//! the raw lines under each of the two codes, so that the text is exercised whatever the code.
#![no_main]

use ftpssh::ftp::passive_reply::{parse_epsv, parse_pasv};
use ftpssh::ftp::{parse_reply, Reply};
use libfuzzer_sys::fuzz_target;

fn reparse(line: &str) -> Reply {
    parse_reply(format!("{line}\r\n").as_bytes()).unwrap().unwrap().0
}

fn check(reply: &Reply) {
    if let Ok((ip, port)) = parse_pasv(reply) {
        assert!(reply.code == 227 && port != 0);
        let [a, b, c, d] = ip.octets();
        let [p1, p2] = port.to_be_bytes();
        let line = format!("227 Entering Passive Mode ({a},{b},{c},{d},{p1},{p2}).");
        assert_eq!(parse_pasv(&reparse(&line)), Ok((ip, port)));
    }
    if let Ok(port) = parse_epsv(reply) {
        assert!(reply.code == 229 && port != 0);
        let line = format!("229 Entering Extended Passive Mode (|||{port}|)");
        assert_eq!(parse_epsv(&reparse(&line)), Ok(port));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((reply, _))) = parse_reply(data) {
        check(&reply);
    }
    let lines: Vec<String> = String::from_utf8_lossy(data).lines().map(str::to_owned).collect();
    for code in [227, 229] {
        check(&Reply { code, lines: lines.clone() });
    }
});
