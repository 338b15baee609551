//! The names of a server's listing: the first line is an `mget` pattern, each further line a
//! name as NLST returned it. `batch::split_glob`, `batch::glob_matches`, and
//! `transfer::safe_base_name` on every name; a name `mget` keeps must make a safe local name.
#![no_main]

use ftpssh::jobs::batch;
use ftpssh::transfer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let pattern = lines.next().unwrap_or_default().trim_end_matches('\r');
    let names: Vec<String> = lines.map(|l| l.trim_end_matches('\r').to_owned()).collect();
    // The base is the last component; the directory is the rest (`/` for `/x`, and for `//x`).
    let (dir, base) = batch::split_glob(pattern);
    assert!(!base.contains('/'));
    match dir {
        None => assert_eq!(base, pattern),
        Some(dir) => assert!(pattern == format!("{dir}/{base}") || (dir == "/" && pattern == format!("/{base}"))),
    }
    for name in names.iter().map(String::as_str).chain([pattern]) {
        if let Ok(base) = transfer::safe_base_name(name) {
            assert!(!base.is_empty() && base != "." && base != ".." && !base.contains('/'));
            assert!(!base.chars().any(char::is_control));
            assert!(name.trim_end_matches('/').ends_with(base));
        }
    }
    let has_glob = pattern.contains(['*', '?', '[']);
    if let Ok(found) = batch::glob_matches(pattern, &names) {
        if has_glob {
            assert!(found.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
            for path in &found {
                let base = transfer::safe_base_name(path).unwrap_or_else(|e| panic!("{path:?}: {e:#}"));
                assert!(names.iter().any(|n| n.ends_with(base)));
            }
        } else {
            assert_eq!(found, [pattern]);
        }
    }
});
