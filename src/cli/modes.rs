//! `--ascii` and `--continue`: which commands take them, and what they
//! exclude. Both are refused where they cannot do what they say, rather
//! than ignored: an ASCII file's sizes and offsets are not the server's,
//! so it neither resumes nor compares a hash, and downloads resume on their
//! own (their part file) without `--continue`.

use anyhow::Result;

use super::args::{is_bulk, Cli, Cmd};
use crate::error::{classified, Kind};
use crate::ftp::command::TransferType;

/// The TYPE of the session, once the options are checked against each other and the command.
pub fn representation(cli: &Cli) -> Result<TransferType> {
    let uploads = match &cli.command {
        Cmd::Put { .. } | Cmd::Mput { .. } | Cmd::Batch { .. } => true,
        Cmd::Mirror { reverse, .. } => *reverse,
        _ => false,
    };
    if cli.continue_uploads && !uploads {
        return Err(classified(
            Kind::Usage,
            "--continue is for uploads (put, mput, batch, mirror --reverse); \
             a download resumes from its part file without it",
        ));
    }
    if !cli.ascii {
        return Ok(TransferType::Binary);
    }
    if matches!(cli.command, Cmd::Demo(_)) {
        return Err(classified(Kind::Usage, "--ascii is for get, put, ls, mget, mput, batch and mirror"));
    }
    if cli.verify {
        return Err(classified(
            Kind::Usage,
            "--ascii and --verify exclude each other: the server hashes its own file, \
             whose line endings are not those of the copy",
        ));
    }
    if cli.continue_uploads {
        return Err(classified(
            Kind::Usage,
            "--ascii and --continue exclude each other: the server's size counts its own line endings, \
             not the local file's, so it says nothing about where to go on",
        ));
    }
    Ok(TransferType::Ascii)
}

/// `--verify`, on by default for the bulk commands (not in ASCII, where no hash can match).
pub fn verify(cli: &Cli) -> bool {
    cli.verify || (is_bulk(&cli.command) && !cli.no_verify && !cli.ascii)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn checked(args: &[&str]) -> Result<(TransferType, bool)> {
        let cli = Cli::parse_from([&["x"], args].concat());
        Ok((representation(&cli)?, verify(&cli)))
    }

    #[test]
    fn ascii_goes_with_the_transfer_commands_and_turns_the_bulk_verify_off() {
        assert_eq!(checked(&["get", "f"]).unwrap(), (TransferType::Binary, false));
        assert_eq!(checked(&["mget", "f"]).unwrap(), (TransferType::Binary, true));
        assert_eq!(checked(&["--ascii", "get", "f"]).unwrap(), (TransferType::Ascii, false));
        assert_eq!(checked(&["mput", "--ascii", "f"]).unwrap(), (TransferType::Ascii, false));
        assert_eq!(checked(&["mirror", "d", "--ascii", "--no-verify"]).unwrap(), (TransferType::Ascii, false));
    }

    #[test]
    fn what_cannot_work_in_ascii_is_a_usage_error() {
        for args in [&["--ascii", "--verify", "get", "f"][..], &["--ascii", "--continue", "put", "f"]] {
            let e = checked(args).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2, "{args:?}: {e:#}");
            assert!(format!("{e:#}").contains("exclude each other"), "{e:#}");
        }
    }

    #[test]
    fn continue_is_for_uploads() {
        assert!(!checked(&["put", "f", "--continue"]).unwrap().1);
        for ok in [
            &["mput", "f", "--continue"][..],
            &["batch", "b", "--continue"],
            &["mirror", "d", "--reverse", "--continue"],
        ] {
            assert_eq!(checked(ok).unwrap().0, TransferType::Binary, "{ok:?}");
        }
        for bad in [&["get", "f", "--continue"][..], &["mget", "f", "--continue"], &["mirror", "d", "--continue"]] {
            let e = checked(bad).unwrap_err();
            assert!(format!("{e:#}").contains("--continue is for uploads"), "{bad:?}: {e:#}");
        }
    }
}
