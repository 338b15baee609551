//! The known_hosts host name matcher, `hostkeys::pattern::matches`: the first line is a
//! hosts field (`a,!b,*.c`, `[h]:port`, `|1|salt|hash`), the second a host, the third a port.
#![no_main]

use ftpssh::ssh::hostkeys::pattern::{lookup_name, matches};
use libfuzzer_sys::fuzz_target;
use russh::keys::ssh_key::known_hosts::HostPatterns;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let (field, host) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
    let port = lines.next().and_then(|p| p.parse().ok()).unwrap_or(22);
    let name = lookup_name(host, port);
    let Ok(patterns) = field.parse::<HostPatterns>() else { return };
    let matched = matches(&patterns, &name);
    if let HostPatterns::Patterns(list) = patterns {
        // A name is its own pattern (`*` and `?` in it match themselves), `*` admits any name,
        // and a negation of the name refuses it whatever else the list says.
        if !name.starts_with('!') {
            assert!(matches(&HostPatterns::Patterns(vec![name.clone()]), &name), "{name:?}");
        }
        assert!(matches(&HostPatterns::Patterns(vec!["*".into()]), &name));
        let mut negated = list.clone();
        negated.push(format!("!{name}"));
        assert!(!matches(&HostPatterns::Patterns(negated), &name));
        // Adding a pattern never takes a match back, unless it is a negation.
        let mut more = list;
        more.push("x".into());
        assert!(!matched || matches(&HostPatterns::Patterns(more), &name));
    }
});
