//! Does a known_hosts line name this host? OpenSSH's `match_hostname`: comma-separated
//! patterns with `*` and `?`, `!` negation, case-insensitive, matched against the lookup
//! name (`host`, or `[host]:port` off port 22); or one hashed name (`|1|salt|hash`).

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::known_hosts::HostPatterns;
use sha1::Sha1;

/// The name OpenSSH looks a host up under: `host` on port 22, `[host]:port` elsewhere,
/// lowercase (known_hosts names are case-insensitive).
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// True when `patterns` admits `name` (a [`lookup_name`]).
pub fn matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::Patterns(list) => list_matches(list, name),
        HostPatterns::HashedName { salt, hash } => hashed_matches(salt, hash, name),
    }
}

/// A negated pattern that matches wins over everything (OpenSSH's `match_pattern_list`
/// returns -1 at once); otherwise one plain match is enough.
fn list_matches(list: &[String], name: &str) -> bool {
    let mut positive = false;
    for pattern in list {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => positive |= glob(pattern.as_bytes(), name.as_bytes()),
        }
    }
    positive
}

/// `*` is any run of characters, `?` any one character, anything else itself.
///
/// Only the last `*` seen is ever backtracked to: whatever an earlier one could absorb, the
/// last one can too. That keeps this O(pattern × text); trying every split at every `*`
/// (as OpenSSH's recursive `match_pattern` does) is exponential in the number of stars.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After the last `*`: where the pattern resumes, and where its text would start.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, t));
            }
            Some(&c) if c == b'?' || c == text[t] => (p, t) = (p + 1, t + 1),
            _ => match star {
                // Let that `*` absorb one more character, and try again from there.
                Some((resume, from)) => {
                    (p, t) = (resume, from + 1);
                    star = Some((resume, from + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// `|1|salt|hash` names hold HMAC-SHA1(key = salt, message = lookup name).
fn hashed_matches(salt: &[u8], hash: &[u8; 20], name: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else { return false };
    mac.update(name.as_bytes());
    mac.verify_slice(hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &str, name: &str) -> bool {
        matches(&patterns.parse().unwrap(), name)
    }

    #[test]
    fn lookup_names() {
        assert_eq!(lookup_name("Gateway.Example", 22), "gateway.example");
        assert_eq!(lookup_name("10.250.0.2", 2222), "[10.250.0.2]:2222");
    }

    #[test]
    fn exact_and_lists() {
        assert!(m("10.250.0.2", "10.250.0.2"));
        assert!(!m("10.250.0.20", "10.250.0.2"));
        assert!(m("gw,10.250.0.2", "10.250.0.2"));
        assert!(m("GW.Example", "gw.example"));
    }

    #[test]
    fn wildcards() {
        assert!(m("10.250.0.*", "10.250.0.2"));
        assert!(m("10.250.0.?", "10.250.0.2"));
        assert!(!m("10.250.0.?", "10.250.0.22"));
        assert!(m("*", "anything"));
        assert!(m("*.example", "a.b.example"));
        assert!(!m("*.example", "example"));
        assert!(m("1*2*", "10.250.0.2"));
    }

    #[test]
    fn negation_wins() {
        assert!(!m("!10.250.0.2,10.250.0.*", "10.250.0.2"));
        assert!(!m("10.250.0.*,!10.250.0.2", "10.250.0.2"));
        assert!(m("!10.250.0.3,10.250.0.*", "10.250.0.2"));
        // A negation alone never admits a host.
        assert!(!m("!10.250.0.3", "10.250.0.2"));
    }

    #[test]
    fn ports() {
        assert!(!m("10.250.0.2", "[10.250.0.2]:2222"));
        assert!(m("[10.250.0.2]:2222", "[10.250.0.2]:2222"));
        assert!(!m("[10.250.0.2]:2222", "10.250.0.2"));
        assert!(m("[10.250.0.*]:2222", "[10.250.0.2]:2222"));
        assert!(!m("[10.250.0.2]:22", "10.250.0.2"), "port 22 is looked up without brackets");
    }

    #[test]
    fn many_stars_take_no_time() {
        // Found by the fuzzer (fuzz/fuzz_targets/host_patterns.rs): the hosts field of the first
        // line against the host of the second timed out, every split tried at every `*`.
        let found = b",\0<,,z,0,,0.,~,\xcf,pK,,,,~,\0<,,,0,,1**1**2\xdc\xd3\xce\xf5\xcd\xcf5\x132\xff******\0\xf8\xd1\xe22\x84\n\
            10\0\0\0\xce\xcf0.,,,,~,\0<,,z,0,,0.,~,\xcf,pK,,,,~,\0<,,,0,,1**1**2\xdc\xd3\xce\xf5\xcd\xcf5\x132\xff******\0\xf8\xd1\xe21\x84\n\
            10\0\xf8\xd1\xe22\x84\n\
            10\0\0\0\xceKG<,\x000";
        let text = String::from_utf8_lossy(found);
        let mut lines = text.lines();
        let (field, host) = (lines.next().unwrap(), lines.next().unwrap());
        assert!(!m(field, &lookup_name(host, 22)));
        // The same kind of case, readable: 30 stars, and a name that almost matches.
        let stars = format!("{}b", "*a".repeat(30));
        assert!(!m(&stars, &"a".repeat(60)));
        assert!(m(&stars, &format!("{}b", "a".repeat(60))));
        assert!(m("a**?*c", "abc") && m("*", "") && m("**", "x") && !m("?", "") && !m("a*c", "ab"));
    }

    #[test]
    fn same_answers_as_the_recursive_glob() {
        // The definition, as OpenSSH writes it: exponential, but plainly right on short inputs.
        fn recursive(pattern: &[u8], text: &[u8]) -> bool {
            match pattern.split_first() {
                None => text.is_empty(),
                Some((b'*', rest)) => (0..=text.len()).any(|skip| recursive(rest, &text[skip..])),
                Some((&p, rest)) => {
                    text.split_first().is_some_and(|(&t, text)| (p == b'?' || p == t) && recursive(rest, text))
                }
            }
        }
        fn all(alphabet: &[u8], max: usize) -> Vec<Vec<u8>> {
            let mut out = vec![vec![]];
            for len in 1..=max {
                let shorter: Vec<Vec<u8>> = out.iter().filter(|w| w.len() == len - 1).cloned().collect();
                out.extend(shorter.iter().flat_map(|w| alphabet.iter().map(move |&c| [w.as_slice(), &[c]].concat())));
            }
            out
        }
        for pattern in all(b"ab*?", 5) {
            for text in all(b"ab", 5) {
                assert_eq!(glob(&pattern, &text), recursive(&pattern, &text), "{pattern:?} {text:?}");
            }
        }
    }

    #[test]
    fn hashed_names_from_ssh_keygen() {
        // `ssh-keygen -H` (OpenSSH 9.2) of a known_hosts line for 10.250.0.2.
        let hashed = "|1|7QUU7F+9PARtE4W0gcp4deBmZxs=|EKGroXRp7Z7uaJ2RjpLAkRWZl7w=";
        assert!(m(hashed, "10.250.0.2"));
        assert!(!m(hashed, "10.250.0.3"));
        assert!(!m(hashed, "[10.250.0.2]:2222"));
    }
}
