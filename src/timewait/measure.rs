//! Pacing default-port transfers around TIME_WAIT
//! (docs/real-systems.md#time_wait-and-incarnations).
//!
//! In default-port mode every data connection of one control connection has the same 4-tuple:
//! (FTP server's data source port S, proxy port T on the SSH server host). After a download the
//! FTP server closed first, so its host keeps that tuple in TIME_WAIT for 60 s; with TCP timestamps
//! off, the next transfer fails with `425 Unable to build data connection: Cannot assign requested
//! address`. This module recognises that reply. The bulk commands then end the entry
//! ([`crate::dataport::reclaim`], the default), use another control connection, or wait. A wait lasts
//! exactly as long as the kernel says when the SSH server can see the row ([`measure`], then
//! [`wait_out`] for the figure plus [`MARGIN`]), or follows [`crate::backoff::unseen_time_wait`]
//! when it cannot (FTP server on another host, SSH server not Linux).

use std::time::Duration;

use anyhow::{Context, Result};
use backon::ExponentialBackoff;

use crate::error::{classified, Kind};
use crate::events::{Event, Events};
use crate::ssh::Session;
use crate::tcp::table::{self, Entry};
use crate::tcp::tuple::{time_wait_left, DataTuple};

/// Added to the measured time left. `tm->when` counts down to the TIME_WAIT's scheduled end, but
/// the kernel's timer wheel fires a 60 s timer late by up to one bucket (2 s at HZ=250, 4 s at
/// HZ=1000), and the row stays, showing 0 ticks, until it fires (docs/benchmarks.md#measured-effects
/// has how late). So the margin only covers the common case;
/// after a wait, measure again: `Some(0)` means "still there, any moment now".
pub const MARGIN: Duration = Duration::from_millis(500);

/// Used when `getconf CLK_TCK` says nothing usable; USER_HZ is 100 on every mainstream Linux.
const DEFAULT_CLK_TCK: u64 = 100;

/// The remote command of [`measure`]: USER_HZ, then both socket tables.
pub fn measure_command() -> String {
    format!("getconf CLK_TCK; {}", table::READ_COMMAND)
}

/// Parses the output of [`measure_command`]: USER_HZ from the first line (100 if that line is
/// not a positive number, e.g. `getconf` is missing), and every socket table row.
pub fn parse_measure_output(text: &str) -> (u64, Vec<Entry>) {
    let first = text.lines().next().unwrap_or("");
    let clk_tck = first.trim().parse().ok().filter(|&n| n > 0).unwrap_or(DEFAULT_CLK_TCK);
    // The whole text: the number line is not a row, and if getconf failed the first line is a header.
    (clk_tck, table::parse(text))
}

/// How long the tuple's TIME_WAIT has left, read on the SSH server with one exec. `Ok(None)` means
/// no such row is visible: gone already, or the FTP server's host is another machine (or not
/// Linux), in which case [`crate::backoff::unseen_time_wait`] is the fallback.
pub async fn measure(session: &Session, tuple: &DataTuple) -> Result<Option<Duration>> {
    let out = session.shell(&measure_command()).await.context("could not read the SSH server's socket table")?;
    let (clk_tck, entries) = parse_measure_output(&out);
    let left = time_wait_left(&entries, tuple, clk_tck);
    tracing::debug!("TIME_WAIT of {tuple}: {left:?} ({} rows, CLK_TCK {clk_tck})", entries.len());
    Ok(left)
}

/// Sleeps `total`, told as [`Event::Waiting`] at the start (the `-v` line, and a countdown on a
/// terminal) and [`Event::Waited`] at the end (the report's record of it). `what` should carry the
/// reason and the measured figure (`TIME_WAIT of 127.0.0.1:2020 -> 127.0.0.1:40000 has 59.2 s
/// left (measured on the server)`).
pub async fn wait_out(events: &Events, total: Duration, what: &str) {
    events.emit(Event::Waiting { total, cause: what.into() });
    tokio::time::sleep(total).await;
    events.emit(Event::Waited { total, cause: what.into() });
}

/// `--pace wait`: measure the TIME_WAIT timer on the server and wait exactly
/// that long (again while it is still there); back off blindly only when the
/// entry cannot be seen (FTP server on another host, or not Linux).
///
/// `blind` is the caller's backoff schedule for unseen entries, kept across
/// collisions of one transfer.
pub async fn wait_for(session: &Session, tuple: Option<&DataTuple>, blind: &mut ExponentialBackoff) -> Result<()> {
    let mut measured = false;
    loop {
        let left = match tuple {
            Some(t) => measure(session, t).await?.map(|left| (t, left)),
            None => None,
        };
        let (delay, cause) = match left {
            Some((t, left)) => {
                measured = true;
                session.events().emit(Event::TimeWaitLeft { tuple: *t, left });
                let cause = format!("TIME_WAIT of {t} has {:.1} s left (measured on the server)", left.as_secs_f64());
                (left + MARGIN, cause)
            }
            // Gone: the kernel has reaped it (it may linger a little past 0 ticks).
            None if measured => return Ok(()),
            None => match blind.next() {
                Some(d) => (d, "TIME_WAIT collision, its entry not visible from the SSH server: backing off".into()),
                None => anyhow::bail!(classified(Kind::Transfer, "TIME_WAIT collisions did not stop")),
            },
        };
        wait_out(session.events(), delay, &cause).await;
        if !measured {
            return Ok(()); // after a blind wait, the retry itself is the test
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tcp::tuple::tests::ROWS;

    #[test]
    fn measure_output() {
        let (tck, rows) = parse_measure_output(&format!("100\n{ROWS}"));
        assert_eq!((tck, rows.len()), (100, 4));
        assert_eq!(parse_measure_output(&format!("250\n{ROWS}")).0, 250);
        // getconf missing (its complaint goes to stderr) or nonsense: USER_HZ 100, rows kept.
        assert_eq!(parse_measure_output(ROWS).0, 100);
        assert_eq!(parse_measure_output(&format!("0\n{ROWS}")).0, 100);
        assert_eq!(parse_measure_output("undefined\n").0, 100);
        assert_eq!(parse_measure_output(""), (100, vec![]));
    }

    #[tokio::test]
    async fn wait_out_sleeps_the_total() {
        let start = std::time::Instant::now();
        wait_out(&Events::none(), Duration::from_millis(30), "test").await;
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
