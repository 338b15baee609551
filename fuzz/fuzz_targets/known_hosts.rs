//! known_hosts text through `hostkeys::Known::add_text`, then `hostkeys::judge` and
//! `hostkeys::wanted` for a few hosts, with a fixed offered key and a fixed host certificate
//! (from `src/ssh/hostkeys/testdata`).
#![no_main]

use ftpssh::ssh::hostkeys::{judge, wanted, Known, Offered, Verdict};
use libfuzzer_sys::fuzz_target;
use russh::keys::ssh_key::EcdsaCurve;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};
use std::sync::LazyLock;

const HOST: &str = include_str!("../../src/ssh/hostkeys/testdata/host.pub");
const CERT: &str = include_str!("../../src/ssh/hostkeys/testdata/cert-ok-cert.pub");
/// Inside the certificate's validity, as the unit tests use.
const NOW: u64 = 1_800_000_000;
const HOSTS: [(&str, u16); 3] = [("10.250.0.2", 22), ("10.250.0.2", 2222), ("GW.example", 22)];

static KEY: LazyLock<PublicKey> = LazyLock::new(|| HOST.trim().parse().unwrap());
static CERTIFICATE: LazyLock<Certificate> = LazyLock::new(|| Certificate::from_openssh(CERT.trim()).unwrap());

fn check(text: &str) -> Known {
    let mut known = Known::default();
    known.add_text("fuzz", text);
    let lines = text.lines().count();
    let defaults = [
        Algorithm::Ed25519,
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
        Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
    ];
    for (host, port) in HOSTS {
        for offered in [Offered::Key(&KEY), Offered::Certificate(&CERTIFICATE)] {
            let origins = match judge(&known, host, port, offered, NOW).verdict {
                Verdict::Trusted { at, .. } | Verdict::Revoked { at } => vec![at],
                Verdict::Changed { at } => at,
                Verdict::Unknown => vec![],
            };
            assert!(origins.iter().all(|o| o.file == "fuzz" && (1..=lines).contains(&o.line)));
        }
        let w = wanted(&known, host, port, &defaults);
        assert_eq!(w.keys.len(), defaults.len());
        assert!(defaults.iter().all(|a| w.keys.contains(a)));
    }
    known
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check(text);
    // With a line for the host and its key added, the key is trusted, unless a line revokes it.
    let body = HOST.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let known = check(&format!("{text}\n10.250.0.2 {body}\n"));
    let verdict = judge(&known, "10.250.0.2", 22, Offered::Key(&KEY), NOW).verdict;
    assert!(matches!(verdict, Verdict::Trusted { .. } | Verdict::Revoked { .. }), "{verdict:?}");
});
