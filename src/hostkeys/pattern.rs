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
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((&p, rest)) => match text.split_first() {
            Some((&t, text)) if p == b'?' || p == t => glob(rest, text),
            _ => false,
        },
    }
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
    fn hashed_names_from_ssh_keygen() {
        // `ssh-keygen -H` (OpenSSH 9.2) of a known_hosts line for 10.250.0.2.
        let hashed = "|1|7QUU7F+9PARtE4W0gcp4deBmZxs=|EKGroXRp7Z7uaJ2RjpLAkRWZl7w=";
        assert!(m(hashed, "10.250.0.2"));
        assert!(!m(hashed, "10.250.0.3"));
        assert!(!m(hashed, "[10.250.0.2]:2222"));
    }
}
