//! The lab that `scripts/lab up` builds, as tests see it: the facts in `lab.env`, and a way
//! into its network namespaces.
//!
//! ```ignore
//! let lab = Lab::get(); // panics when the lab is not up: lab tests never skip
//! let port = lab.port("PROFTPD_PORT");
//! let peer = in_netns(lab.var("SERVER_NS"), move || connect_somewhere(port));
//! ```
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use nix::sched::CloneFlags;

/// Where `scripts/lab up` writes the lab's facts; the variable [`ENV_OVERRIDE`] names another file.
pub const DEFAULT_ENV_FILE: &str = "/run/ftpssh-lab/lab.env";
/// Environment variable that overrides [`DEFAULT_ENV_FILE`].
pub const ENV_OVERRIDE: &str = "FTPSSH_LAB_ENV";

/// The running lab: every `KEY=VALUE` of `lab.env`.
#[derive(Debug, Clone)]
pub struct Lab {
    pub env: HashMap<String, String>,
    /// The file `env` was read from.
    pub path: PathBuf,
}

impl Lab {
    /// Reads `lab.env`. Panics with the way out when the lab is not up.
    pub fn get() -> Lab {
        let path = std::env::var_os(ENV_OVERRIDE).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_ENV_FILE));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("lab is not up: run `scripts/lab up` as root ({}: {e})", path.display()));
        Lab { env: parse_env(&text), path }
    }

    /// The value of `key`; panics naming the key and the file when it is absent.
    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("{} has no {key}", self.path.display()))
    }

    /// A port number such as `lab.port("VSFTPD_PORT")`.
    pub fn port(&self, key: &str) -> u16 {
        let value = self.var(key);
        value.parse().unwrap_or_else(|e| panic!("{key}={value} is not a port: {e}"))
    }

    /// An IPv4 address such as `lab.addr("SERVER_ADDR")`.
    pub fn addr(&self, key: &str) -> Ipv4Addr {
        let value = self.var(key);
        value.parse().unwrap_or_else(|e| panic!("{key}={value} is not an IPv4 address: {e}"))
    }

    /// A path such as `lab.path("SSH_KEY")`.
    pub fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(self.var(key))
    }

    /// A TCP counter of one namespace's kernel (`TcpExt` in /proc/net/netstat, such as
    /// `TCPSynRetrans`), as `lab.tcp_ext("SERVER_NS", name)`.
    #[allow(dead_code)] // not every test binary counts
    pub fn tcp_ext(&self, ns_key: &str, name: &str) -> u64 {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.var(ns_key), "cat", "/proc/net/netstat"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut tcp_ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) = (tcp_ext.next().unwrap(), tcp_ext.next().unwrap());
        let at = names.split(' ').position(|n| n == name).unwrap_or_else(|| panic!("{name} counted"));
        values.split(' ').nth(at).unwrap().parse().unwrap()
    }
}

impl std::ops::Index<&str> for Lab {
    type Output = str;
    fn index(&self, key: &str) -> &str {
        self.var(key)
    }
}

/// Parses `KEY=VALUE` lines. Values may be quoted the way the shell's `printf %q` or a person
/// would: `'...'`, `"..."`, or backslash escapes.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), unquote(value.trim())))
        .collect()
}

fn unquote(value: &str) -> String {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('\'') || quoted('"') {
        return value[1..value.len() - 1].to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Runs `f` on a new thread that has entered the network namespace `ns`
/// (`/var/run/netns/NS`), and returns its result; a panic in `f` is the caller's panic.
/// Sockets keep the namespace they were made in, so `f` may return them for use anywhere.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    let thread = std::thread::Builder::new()
        .name(format!("netns {ns}"))
        .spawn(move || {
            let handle = File::open(&path)
                .unwrap_or_else(|e| panic!("could not open {path}: {e} (lab not up? run `scripts/lab up` as root)"));
            // Only this thread moves: setns(CLONE_NEWNET) is per thread.
            nix::sched::setns(&handle, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("could not enter {path}: {e} (not root?)"));
            drop(handle);
            f()
        })
        .expect("could not spawn a thread");
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A sysctl of the lab's server namespace, set for the life of the guard and put back when
/// it drops, also when the test fails: to `restore` if given, else to the value it had.
pub struct ServerSysctl {
    ns: String,
    name: String,
    restore: String,
}

impl ServerSysctl {
    pub fn set(lab: &Lab, name: &str, value: &str, restore: Option<&str>) -> ServerSysctl {
        let ns = lab.var("SERVER_NS").to_string();
        let restore = restore.map_or_else(|| sysctl(&ns, &["-n", name]), str::to_string);
        sysctl(&ns, &["-qw", &format!("{name}={value}")]);
        ServerSysctl { ns, name: name.to_string(), restore }
    }
}

impl Drop for ServerSysctl {
    fn drop(&mut self) {
        let set = format!("{}={}", self.name, self.restore);
        let _ = std::process::Command::new("ip").args(["netns", "exec", &self.ns, "sysctl", "-qw", &set]).status();
    }
}

/// `sysctl ARGS` in namespace `ns`; its output with runs of whitespace made one space.
fn sysctl(ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ip").args(["netns", "exec", ns, "sysctl"]).args(args).output().unwrap();
    assert!(out.status.success(), "sysctl {args:?} in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
}
