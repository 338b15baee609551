//! What a directory listing says of each file, for `mirror`: MLSD lines
//! (RFC 3659 7, `modify=20261125121855;size=25;type=file; f076.txt`) and
//! MDTM replies (`213 20261125121854`), times in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name as listed (no directory part for MLSD).
    pub name: String,
    /// A plain file (not a directory, link target or special entry).
    pub is_file: bool,
    /// A subdirectory (`type=dir`; not `cdir` or `pdir`, the directory itself and its parent).
    pub is_dir: bool,
    /// Its size, when listed.
    pub size: Option<u64>,
    /// Its modification time, when listed.
    pub modified: Option<SystemTime>,
}

/// The entries of an MLSD listing; lines that are not `facts; name` are skipped.
pub fn parse_mlsd(text: &str) -> Vec<Entry> {
    text.lines().filter_map(|l| parse_mlsd_line(l.trim_end_matches('\r'))).collect()
}

/// One MLSD line: facts separated by `;`, then one space, then the name (which may hold anything but CR/LF).
pub fn parse_mlsd_line(line: &str) -> Option<Entry> {
    let (facts, name) = line.split_once("; ").or_else(|| line.strip_prefix(' ').map(|n| ("", n)))?;
    if name.is_empty() {
        return None;
    }
    let mut entry = Entry { name: name.to_string(), is_file: false, is_dir: false, size: None, modified: None };
    for fact in facts.split(';') {
        let Some((key, value)) = fact.split_once('=') else { continue };
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                entry.is_file = value.eq_ignore_ascii_case("file");
                entry.is_dir = value.eq_ignore_ascii_case("dir");
            }
            "size" => entry.size = crate::ftp::reply::file_size(value),
            "modify" => entry.modified = parse_time(value),
            _ => {}
        }
    }
    Some(entry)
}

/// A `213 YYYYMMDDHHMMSS[.sss]` MDTM reply's time.
pub fn parse_mdtm(text: &str) -> Option<SystemTime> {
    parse_time(text.trim())
}

/// `YYYYMMDDHHMMSS[.sss]`, UTC (RFC 3659 2.3).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| whole[r].parse::<u32>().ok();
    let (year, month, day) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hour, minute, second) = (n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    let secs = days * 86400 + i64::from(hour * 3600 + minute * 60 + second);
    let nanos = format!("{fraction:0<9}").get(..9)?.parse::<u32>().ok()?;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn proftpd_mlsd() {
        // Captured from the lab's ProFTPD 1.3.8 (`MLSD many`), plus a directory and a name with spaces.
        let text = "modify=20261125121855;perm=adfrw;size=25;type=file;unique=FE00UC0715;UNIX.group=1001;\
            UNIX.groupname=ftpsshuser;UNIX.mode=0644;UNIX.owner=1001;UNIX.ownername=ftpsshuser; f076.txt\r\n\
            modify=20261125121855;perm=flcdmpe;type=dir;unique=FE00UC06C0;UNIX.mode=0755; sub\r\n\
            modify=20261125121855;perm=flcdmpe;type=cdir;unique=FE00UC06C0; .\r\n\
            modify=20200101000000.5;size=7;type=file; a b; c.txt\r\n\
            garbage\r\n";
        let entries = parse_mlsd(text);
        assert_eq!(entries.len(), 4);
        let first =
            Entry { name: "f076.txt".into(), is_file: true, is_dir: false, size: Some(25), modified: at(1795609135) };
        assert_eq!(entries[0], first);
        assert!(!entries[1].is_file && entries[1].is_dir && entries[1].name == "sub");
        assert!(!entries[2].is_dir, "cdir is the directory itself");
        assert!(!entries[2].is_file);
        assert_eq!(entries[3].name, "a b; c.txt");
        assert_eq!(entries[3].modified, Some(UNIX_EPOCH + Duration::new(1577836800, 500_000_000)));
    }

    #[test]
    fn an_impossible_size_is_no_size() {
        let e = parse_mlsd_line("size=18446744073709551615;type=file; huge.bin").unwrap();
        assert_eq!((e.name.as_str(), e.size), ("huge.bin", None));
    }

    #[test]
    fn mdtm_times() {
        // ProFTPD and inetutils both answer `213 20261125121854` for small.bin.
        assert_eq!(parse_mdtm("20261125121854"), at(1795609134));
        assert_eq!(parse_mdtm("19700101000000"), at(0));
        assert_eq!(parse_mdtm("20000229235959"), at(951868799));
        for bad in
            ["", "2026112512185", "2026112512185x", "20261325121854", "20261125241854", "x.5", "20261125121854.x"]
        {
            assert_eq!(parse_mdtm(bad), None, "{bad:?}");
        }
    }
}
