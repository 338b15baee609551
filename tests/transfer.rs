//! `get`, `put` and `ls` against the lab's real servers, every transfer under the veth
//! capture: the files arrive byte-identical, and neither a file byte nor the password
//! crossed the network; the client spoke only to the SSH port.
//!
//! Needs root and `scripts/lab up`; run with `--test-threads=1` (shared veth).

mod common;

use common::tool::{assert_default_port, captured, get_every_file, put_and_get_back, run, stderr, Tool, FILES};

fn ls_lists(port_key: &str) {
    let tool = Tool::new();
    let port = tool.lab.port(port_key);
    let out = run(tool.cmd(port).args(["ls"]));
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in FILES.iter().chain(&["many", "upload"]) {
        assert!(listing.contains(name), "{name} missing from the listing:\n{listing}");
    }
    let out = run(tool.cmd(port).args(["ls", "many"]));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(".txt")).count(), 200);
}

#[test]
fn get_from_proftpd() {
    get_every_file("PROFTPD_PORT", &[], assert_default_port);
}

#[test]
fn get_from_proftpd_fixed_source_port() {
    get_every_file("PROFTPD_FIXED_PORT", &[], assert_default_port);
}

#[test]
fn get_from_inetutils_ftpd_through_the_relay() {
    get_every_file("INETUTILS_PORT", &[], assert_default_port);
}

#[test]
fn put_to_proftpd() {
    put_and_get_back("PROFTPD_PORT", assert_default_port);
}

#[test]
fn put_to_proftpd_fixed_source_port() {
    put_and_get_back("PROFTPD_FIXED_PORT", assert_default_port);
}

#[test]
fn put_to_inetutils_ftpd_through_the_relay() {
    put_and_get_back("INETUTILS_PORT", assert_default_port);
}

#[test]
fn ls_on_proftpd() {
    ls_lists("PROFTPD_PORT");
}

#[test]
fn ls_on_inetutils_ftpd() {
    ls_lists("INETUTILS_PORT");
}

#[test]
fn ls_is_encrypted_too() {
    let tool = Tool::new();
    // The listing names this file; its name must not cross the veth in clear.
    let err = stderr(&captured(&tool, tool.lab.port("PROFTPD_PORT"), &["ls", "many"], b"f137.txt"));
    assert_default_port(&err);
}
