//! Host key checking with OpenSSH's semantics (`hostfile.c`, `sshconnect.c`), as a pure
//! judge over known_hosts text; reading the files, the policy and adding keys are in
//! [`policy`], host name patterns in [`pattern`].
//!
//! Every line of every file (user files, then global files) that names the host is kept,
//! in order. Then, as OpenSSH does:
//! - a `@revoked` line with the offered key, or with the CA that signed the offered
//!   certificate, refuses, whatever else the files say;
//! - a certificate signed by a CA of a `@cert-authority` line, valid now, for a host, with
//!   the host among its principals (or no principals), is trusted; any other certificate is
//!   judged as the plain key inside it;
//! - a plain line with the offered key trusts it, wherever it is; lines with other keys
//!   only make it "changed" when no line has the offered key.

pub mod pattern;
pub mod policy;

use std::fmt;
use std::str::FromStr;

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};

pub use policy::{Policy, Strict};

/// Where a known_hosts line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One parsed known_hosts line.
#[derive(Debug, Clone)]
struct Line {
    origin: Origin,
    marker: Option<Marker>,
    hosts: HostPatterns,
    key: KeyData,
}

/// The usable lines of every file read, in order.
#[derive(Debug, Clone, Default)]
pub struct Known {
    lines: Vec<Line>,
}

impl Known {
    /// Keep the lines of `text` (the content of `file`). Comments, blank lines and lines
    /// OpenSSH would not parse (bad marker, bad key) are skipped, as it skips them.
    pub fn add_text(&mut self, file: &str, text: &str) {
        for (index, raw) in text.lines().enumerate() {
            let Some(entry) = parse_line(raw) else { continue };
            self.lines.push(Line {
                origin: Origin { file: file.to_string(), line: index + 1 },
                marker: entry.marker().copied(),
                hosts: entry.host_patterns().clone(),
                key: entry.public_key().key_data().clone(),
            });
        }
    }
}

/// A line as OpenSSH splits it: `[@marker] hosts keytype base64 [comment]`, fields separated
/// by runs of blanks. ssh-key's parser wants single spaces and no comment, so it gets the
/// fields rejoined.
fn parse_line(raw: &str) -> Option<Entry> {
    let mut fields = raw.split_whitespace().peekable();
    if fields.peek()?.starts_with('#') {
        return None;
    }
    let marker = fields.next_if(|f| f.starts_with('@'));
    let (hosts, kind, base64) = (fields.next()?, fields.next()?, fields.next()?);
    let line = match marker {
        Some(m) => format!("{m} {hosts} {kind} {base64}"),
        None => format!("{hosts} {kind} {base64}"),
    };
    Entry::from_str(&line).ok()
}

/// What the SSH server proved it holds.
#[derive(Debug, Clone, Copy)]
pub enum Offered<'a> {
    /// A plain host key.
    Key(&'a PublicKey),
    /// An OpenSSH host certificate.
    Certificate(&'a Certificate),
}

impl Offered<'_> {
    /// The public key itself (inside the certificate, for a certificate).
    pub fn key_data(&self) -> &KeyData {
        match self {
            Offered::Key(k) => k.key_data(),
            Offered::Certificate(c) => c.public_key(),
        }
    }

    /// `ssh-ed25519 SHA256:...` of the key itself.
    pub fn fingerprint(&self) -> String {
        let key = self.key_data();
        format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
    }
}

/// What the known_hosts lines say about the offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This line lists the key, or (`by_ca`) the CA that signed its valid certificate.
    Trusted {
        /// The line.
        at: Origin,
        /// Trusted through `@cert-authority`.
        by_ca: bool,
    },
    /// No line names the host with any plain key.
    Unknown,
    /// Lines name the host with other keys, and none with this one.
    Changed {
        /// Those lines.
        at: Vec<Origin>,
    },
    /// A `@revoked` line lists the key, or the CA that signed it: refused whatever the policy.
    Revoked {
        /// That line.
        at: Origin,
    },
}

/// The verdict, and why a certificate (if one was offered) was not honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// What the files say.
    pub verdict: Verdict,
    /// Why the offered certificate did not make the key trusted by itself.
    pub certificate: Option<String>,
}

/// Judge `offered` by `host:port` for `known`. `now` is Unix time, for certificates.
///
/// Off port 22 the lines are looked up under `[host]:port`; when none of them names the
/// host at all, OpenSSH tries the bare `host` too, and takes only a trusting answer from it
/// ("found matching key w/out port").
pub fn judge(known: &Known, host: &str, port: u16, offered: Offered<'_>, now: u64) -> Judgement {
    let judgement = judge_name(known, &pattern::lookup_name(host, port), host, offered, now);
    if judgement.verdict == Verdict::Unknown && port != 22 {
        let bare = judge_name(known, &pattern::lookup_name(host, 22), host, offered, now);
        if matches!(bare.verdict, Verdict::Trusted { .. }) {
            return bare;
        }
    }
    judgement
}

/// OpenSSH's `check_key_in_hostkeys` over the lines that name `name`; `host` is the name
/// certificates must list as a principal.
fn judge_name(known: &Known, name: &str, host: &str, offered: Offered<'_>, now: u64) -> Judgement {
    let key = offered.key_data();
    let signer = match offered {
        Offered::Certificate(c) => Some(c.signature_key()),
        Offered::Key(_) => None,
    };
    let naming = known.lines.iter().filter(|l| pattern::matches(&l.hosts, name));
    let with_marker = |m: Option<Marker>| naming.clone().filter(move |l| l.marker == m);
    let revoked = with_marker(Some(Marker::Revoked)).find(|l| &l.key == key || Some(&l.key) == signer);
    let mut certificate = None;
    if let Some(line) = revoked {
        return Judgement { verdict: Verdict::Revoked { at: line.origin.clone() }, certificate };
    }
    if let Offered::Certificate(cert) = offered {
        let ca = with_marker(Some(Marker::CertAuthority)).find(|l| &l.key == cert.signature_key());
        match ca.map(|line| (line, check_certificate(cert, host, now))) {
            Some((line, Ok(()))) => {
                let verdict = Verdict::Trusted { at: line.origin.clone(), by_ca: true };
                return Judgement { verdict, certificate };
            }
            Some((line, Err(why))) => {
                certificate = Some(format!("certificate signed by the CA of {}: {why}", line.origin))
            }
            None => {
                let ca = cert.signature_key().fingerprint(HashAlg::Sha256);
                certificate = Some(format!("no @cert-authority line for {name} lists its CA {ca}"));
            }
        }
    }
    // OpenSSH falls back from a certificate to the plain key inside it.
    let mut others = Vec::new();
    for line in with_marker(None) {
        if &line.key == key {
            return Judgement { verdict: Verdict::Trusted { at: line.origin.clone(), by_ca: false }, certificate };
        }
        others.push(line.origin.clone());
    }
    let verdict = if others.is_empty() { Verdict::Unknown } else { Verdict::Changed { at: others } };
    Judgement { verdict, certificate }
}

/// Host key algorithms to ask the server for, most wanted first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Plain key algorithms.
    pub keys: Vec<Algorithm>,
    /// Algorithms whose certificate form to ask for, ahead of every plain one.
    pub certificates: Vec<Algorithm>,
}

/// OpenSSH's `order_hostkeyalgs`: ask first for the kinds of key the files already hold for
/// `host:port`, so that a server with several host keys shows the one we know, not "a changed
/// key". Certificates come first when a `@cert-authority` line names the host, or when nothing
/// is known (OpenSSH's default order); else only those of the known kinds. `defaults` is the
/// library's order.
pub fn wanted(known: &Known, host: &str, port: u16, defaults: &[Algorithm]) -> Wanted {
    let name = pattern::lookup_name(host, port);
    let naming: Vec<&Line> = known.lines.iter().filter(|l| pattern::matches(&l.hosts, &name)).collect();
    let revoked = |key: &KeyData| naming.iter().any(|l| l.marker == Some(Marker::Revoked) && &l.key == key);
    let kinds: Vec<Algorithm> =
        naming.iter().filter(|l| l.marker.is_none() && !revoked(&l.key)).map(|l| l.key.algorithm()).collect();
    let has_ca = naming.iter().any(|l| l.marker == Some(Marker::CertAuthority));
    // Every RSA signature algorithm uses the same RSA key.
    let rsa = |a: &Algorithm| matches!(a, Algorithm::Rsa { .. });
    let is_known = |a: &Algorithm| kinds.iter().any(|k| k == a || (rsa(k) && rsa(a)));
    let (first, last): (Vec<Algorithm>, Vec<Algorithm>) = defaults.iter().cloned().partition(|a| is_known(a));
    let certificates = if has_ca || kinds.is_empty() { defaults.to_vec() } else { first.clone() };
    Wanted { keys: first.into_iter().chain(last).collect(), certificates }
}

/// OpenSSH's `sshkey_cert_check_host`: a host certificate, signature by its CA, valid at
/// `now`, and `host` among its principals when it lists any.
fn check_certificate(cert: &Certificate, host: &str, now: u64) -> Result<(), String> {
    if cert.cert_type() != CertType::Host {
        return Err("it is not a host certificate".into());
    }
    let ca = cert.signature_key().fingerprint(HashAlg::Sha256);
    if cert.validate_at(now, [&ca]).is_err() {
        let (after, before) = (cert.valid_after(), cert.valid_before());
        return Err(format!("bad signature, or not valid now ({now}; valid from {after} to {before}, Unix time)"));
    }
    let host = host.to_ascii_lowercase();
    if !cert.valid_principals().is_empty() && !cert.valid_principals().contains(&host) {
        return Err(format!("{host} is not among its principals {:?}", cert.valid_principals()));
    }
    // No critical option is defined for host certificates; one we do not know must refuse.
    if let Some(option) = cert.critical_options().keys().next() {
        return Err(format!("unknown critical option {option:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
