//! The judge on known_hosts text. Keys and certificates in `testdata/` were made with
//! OpenSSH 9.2's `ssh-keygen` (`-s CA -h -n PRINCIPALS -V ...`).

use super::policy::{decide, Decision, Policy, Strict, Tokens};
use super::*;
use std::path::PathBuf;

const HOST: &str = include_str!("testdata/host.pub");
const OTHER: &str = include_str!("testdata/other.pub");
const CA: &str = include_str!("testdata/ca.pub");
const CA2: &str = include_str!("testdata/ca2.pub");
/// Inside the window of the `-V always:forever` certificates, after the expired one.
const NOW: u64 = 1_800_000_000;

/// `keytype base64` of a `.pub` file, without its comment.
fn body(public: &str) -> String {
    public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn key(public: &str) -> PublicKey {
    public.trim().parse().unwrap()
}

fn cert(name: &str) -> Certificate {
    let text =
        std::fs::read_to_string(format!("{}/src/ssh/hostkeys/testdata/{name}-cert.pub", env!("CARGO_MANIFEST_DIR")));
    Certificate::from_openssh(text.unwrap().trim()).unwrap()
}

/// `{host}`, `{other}`, `{ca}`, `{ca2}` in `text` become those keys.
fn file(text: &str) -> String {
    text.replace("{host}", &body(HOST))
        .replace("{other}", &body(OTHER))
        .replace("{ca2}", &body(CA2))
        .replace("{ca}", &body(CA))
}

fn known(files: &[&str]) -> Known {
    let mut known = Known::default();
    for (i, text) in files.iter().enumerate() {
        known.add_text(&format!("f{}", i + 1), &file(text));
    }
    known
}

fn verdict(files: &[&str]) -> Verdict {
    judge(&known(files), "10.250.0.2", 22, Offered::Key(&key(HOST)), NOW).verdict
}

fn at(file: usize, line: usize) -> Origin {
    Origin { file: format!("f{file}"), line }
}

fn trusted(file: usize, line: usize) -> Verdict {
    Verdict::Trusted { at: at(file, line), by_ca: false }
}

#[test]
fn exact_host() {
    assert_eq!(verdict(&["10.250.0.2 {host}\n"]), trusted(1, 1));
    assert_eq!(verdict(&["10.250.0.3 {host}\n"]), Verdict::Unknown);
    assert_eq!(verdict(&[""]), Verdict::Unknown);
}

#[test]
fn stale_line_before_the_right_one_is_no_change() {
    assert_eq!(verdict(&["10.250.0.2 {other}\n10.250.0.2 {host}\n"]), trusted(1, 2));
}

#[test]
fn only_another_key_is_a_change() {
    assert_eq!(
        verdict(&["10.250.0.2 {other}\n10.250.0.* {other}\n"]),
        Verdict::Changed { at: vec![at(1, 1), at(1, 2)] }
    );
}

#[test]
fn revoked_wins_over_a_trusting_line() {
    assert_eq!(verdict(&["10.250.0.2 {host}\n@revoked * {host}\n"]), Verdict::Revoked { at: at(1, 2) });
    // A revocation for another host does not apply.
    assert_eq!(verdict(&["10.250.0.2 {host}\n@revoked 10.250.0.3 {host}\n"]), trusted(1, 1));
    assert_eq!(verdict(&["10.250.0.2 {host}\n@revoked * {other}\n"]), trusted(1, 1));
}

#[test]
fn patterns() {
    assert_eq!(verdict(&["10.250.0.* {host}\n"]), trusted(1, 1));
    assert_eq!(verdict(&["10.250.0.? {host}\n"]), trusted(1, 1));
    assert_eq!(verdict(&["!10.250.0.2,10.250.0.* {host}\n"]), Verdict::Unknown);
    assert_eq!(verdict(&["gw,10.250.0.2 {host}\n"]), trusted(1, 1));
}

#[test]
fn ports() {
    let k = key(HOST);
    let on = |text: &str, port| judge(&known(&[text]), "10.250.0.2", port, Offered::Key(&k), NOW).verdict;
    assert_eq!(on("[10.250.0.2]:2222 {host}\n", 2222), trusted(1, 1));
    assert_eq!(on("[10.250.0.2]:2222 {host}\n", 22), Verdict::Unknown);
    // Nothing for [host]:port: the bare host is asked, and only a trusting answer counts.
    assert_eq!(on("10.250.0.2 {host}\n", 2222), trusted(1, 1));
    assert_eq!(on("10.250.0.2 {other}\n", 2222), Verdict::Unknown);
    assert_eq!(on("10.250.0.2 {host}\n@revoked 10.250.0.2 {host}\n", 2222), Verdict::Unknown);
    // Any line for [host]:port settles it.
    assert_eq!(on("[10.250.0.2]:2222 {other}\n10.250.0.2 {host}\n", 2222), Verdict::Changed { at: vec![at(1, 1)] });
}

#[test]
fn comments_blanks_and_garbage_are_skipped() {
    let text = "# a comment\n\n   \n\tgarbage\n10.250.0.2 ssh-ed25519 AAAAnotbase64!!\n@bogus 10.250.0.2 {other}\n\
                10.250.0.2\n  10.250.0.2 \t {host}   a comment # with a hash\n";
    assert_eq!(verdict(&[text]), trusted(1, 8));
}

#[test]
fn any_file_with_the_key_trusts_it() {
    assert_eq!(verdict(&["10.250.0.3 {host}\n", "10.250.0.2 {host}\n"]), trusted(2, 1));
    assert_eq!(verdict(&["10.250.0.2 {other}\n", "10.250.0.2 {host}\n"]), trusted(2, 1));
    assert_eq!(verdict(&["10.250.0.2 {host}\n", "@revoked 10.250.0.2 {host}\n"]), Verdict::Revoked { at: at(2, 1) });
}

#[test]
fn a_cert_authority_line_is_no_plain_key() {
    assert_eq!(verdict(&["@cert-authority 10.250.0.2 {host}\n"]), Verdict::Unknown);
}

fn judge_cert(name: &str, files: &[&str]) -> Judgement {
    judge(&known(files), "10.250.0.2", 22, Offered::Certificate(&cert(name)), NOW)
}

#[test]
fn certificates_signed_by_a_listed_ca() {
    let ok = Verdict::Trusted { at: at(1, 1), by_ca: true };
    assert_eq!(judge_cert("cert-ok", &["@cert-authority 10.250.0.* {ca}\n"]).verdict, ok);
    assert_eq!(judge_cert("cert-noprincipals", &["@cert-authority 10.250.0.* {ca}\n"]).verdict, ok);
    // The CA line must name the host.
    let j = judge_cert("cert-ok", &["@cert-authority 10.250.0.3 {ca}\n"]);
    assert_eq!(j.verdict, Verdict::Unknown);
    assert!(j.certificate.unwrap().contains("no @cert-authority line"));
}

#[test]
fn bad_certificates_fall_back_to_the_plain_key() {
    for (name, why) in [
        ("cert-wrong-principal", "principals"),
        ("cert-expired", "not valid now"),
        ("cert-user", "not a host certificate"),
        ("cert-ca2", "no @cert-authority line"),
    ] {
        let j = judge_cert(name, &["@cert-authority * {ca}\n"]);
        assert_eq!(j.verdict, Verdict::Unknown, "{name}");
        assert!(j.certificate.as_deref().unwrap().contains(why), "{name}: {:?}", j.certificate);
        let j = judge_cert(name, &["@cert-authority * {ca}\n10.250.0.2 {host}\n"]);
        assert_eq!(j.verdict, trusted(1, 2), "{name}: the plain key is still known");
    }
}

#[test]
fn revoked_ca_or_key_refuses_certificates() {
    let revoked = |line| Verdict::Revoked { at: at(1, line) };
    assert_eq!(judge_cert("cert-ok", &["@cert-authority * {ca}\n@revoked * {ca}\n"]).verdict, revoked(2));
    assert_eq!(judge_cert("cert-ok", &["@cert-authority * {ca}\n@revoked * {host}\n"]).verdict, revoked(2));
}

#[test]
fn strictness() {
    let changed = Verdict::Changed { at: vec![at(1, 1)] };
    let revoked = Verdict::Revoked { at: at(1, 1) };
    for strict in [Strict::Yes, Strict::AcceptNew, Strict::No] {
        assert_eq!(decide(&trusted(1, 1), strict), Decision::Accept);
        assert_eq!(decide(&changed, strict), Decision::Refuse, "a changed key is refused even with {strict}");
        assert_eq!(decide(&revoked, strict), Decision::Refuse);
    }
    assert_eq!(decide(&Verdict::Unknown, Strict::Yes), Decision::Refuse);
    assert_eq!(decide(&Verdict::Unknown, Strict::AcceptNew), Decision::Add);
    assert_eq!(decide(&Verdict::Unknown, Strict::No), Decision::Add);
    for (word, want) in
        [("ask", Strict::Yes), ("Yes", Strict::Yes), ("accept-new", Strict::AcceptNew), ("off", Strict::No)]
    {
        assert_eq!(word.parse::<Strict>().unwrap(), want);
    }
    assert!("maybe".parse::<Strict>().is_err());
}

fn tokens() -> Tokens {
    Tokens {
        home: Some("/home/al".into()),
        local_user: "al".into(),
        host: "10.250.0.2".into(),
        alias: "lab".into(),
        port: 22,
        user: "bob".into(),
    }
}

#[test]
fn config_values_and_defaults() {
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let p = Policy::from_config(None, None, None, &tokens()).unwrap();
    assert_eq!(p.user_files, ["/home/al/.ssh/known_hosts", "/home/al/.ssh/known_hosts2"].map(PathBuf::from));
    assert_eq!(p.global_files, ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"].map(PathBuf::from));
    assert_eq!(p.strict, Strict::Yes);
    let (user, global, strict) = (words("~/kh %d/kh-%n-%h-%p-%r-%u 100%%"), words("none"), words("accept-new"));
    let p = Policy::from_config(Some(&user), Some(&global), Some(&strict), &tokens()).unwrap();
    assert_eq!(p.user_files, ["/home/al/kh", "/home/al/kh-lab-10.250.0.2-22-bob-al", "100%"].map(PathBuf::from));
    assert!(p.global_files.is_empty());
    assert_eq!(p.strict, Strict::AcceptNew);
    assert!(Policy::from_config(Some(&words("%z")), None, None, &tokens()).is_err());
}

#[test]
fn check_adds_a_new_key_and_explains_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("new/known_hosts");
    let policy = |strict| Policy { user_files: vec![first.clone()], global_files: vec![], strict };
    let k = key(HOST);
    let err = policy(Strict::Yes).check("10.250.0.2", 2222, Offered::Key(&k), NOW).unwrap_err();
    assert!(err.contains("is not in") && err.contains("SHA256:") && err.contains("ssh-keyscan -p 2222"), "{err}");
    policy(Strict::AcceptNew).check("10.250.0.2", 2222, Offered::Key(&k), NOW).unwrap();
    assert_eq!(std::fs::read_to_string(&first).unwrap(), format!("[10.250.0.2]:2222 {}\n", body(HOST)));
    policy(Strict::Yes).check("10.250.0.2", 2222, Offered::Key(&k), NOW).unwrap();
    let other = key(OTHER);
    let err = policy(Strict::No).check("10.250.0.2", 2222, Offered::Key(&other), NOW).unwrap_err();
    assert!(err.starts_with("HOST KEY CHANGED") && err.contains("known_hosts:1"), "{err}");
    std::fs::write(&first, file("@revoked * {host}\n")).unwrap();
    let err = policy(Strict::No).check("10.250.0.2", 22, Offered::Key(&k), NOW).unwrap_err();
    assert!(err.starts_with("REVOKED HOST KEY DETECTED") && err.contains("known_hosts:1"), "{err}");
}

#[test]
fn ask_first_for_the_kinds_of_key_known() {
    use russh::keys::EcdsaCurve;
    let ecdsa = Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 };
    let rsa = |hash| Algorithm::Rsa { hash };
    let defaults = [Algorithm::Ed25519, ecdsa.clone(), rsa(Some(HashAlg::Sha512)), rsa(None)];
    let rsa_line = "10.250.0.2 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDBc0HCDT7eNmxWjbO5dlaDWtLYpSOm8dNEMWbTUORMrMb2kUQ4l6bTUbtnKqv42tuBVavxeSwxe3tf8wBKKk/5XBBSu3cEl1aaR67S2vCsZ7PNZDLSd2DBTxx+ny3T7Kg2JafXf8rRfCB6ajyLMvQyz2o6Ag4ez0mJvQbvFvNW+Q==\n";
    let w = |files: &[&str], port| wanted(&known(files), "10.250.0.2", port, &defaults);
    // Nothing known: the library's order, certificates first.
    assert_eq!(w(&[""], 22), Wanted { keys: defaults.to_vec(), certificates: defaults.to_vec() });
    // An RSA key known: every RSA algorithm first, and only RSA certificates.
    let got = w(&[rsa_line], 22);
    assert_eq!(got.keys, [rsa(Some(HashAlg::Sha512)), rsa(None), Algorithm::Ed25519, ecdsa.clone()]);
    assert_eq!(got.certificates, [rsa(Some(HashAlg::Sha512)), rsa(None)]);
    // Revoked keys are not wanted; a CA line asks for every certificate.
    let got = w(&[&format!("{rsa_line}@revoked * {}\n@cert-authority * {{ca}}\n", &rsa_line[11..])], 22);
    assert_eq!(got, Wanted { keys: defaults.to_vec(), certificates: defaults.to_vec() });
    // Only lines for the name looked up count: [host]:port here.
    assert_eq!(w(&[rsa_line], 2222).keys, defaults.to_vec());
}

#[test]
fn many_stars_in_a_hosts_field_take_no_time() {
    // Found by the fuzzer (fuzz/fuzz_targets/known_hosts.rs): line 5's hosts field timed out
    // against 10.250.0.2 (a `*` matcher that tried every split at every star).
    let found = "# q+8cTE5ment\n\n10.250.0.2 ssh-ed25519 AAA,C3NzalZD1IC1NTE5Ant\n\n\
                 10.25***************************************:\0***0.0.2 ssh-ed25519 \
                 AAAAC3NzaC1lZDI1NTE5AAAAIGkEqqE9qCNPOQGfHPIyO4IJvAq+8c3x4BJrrHBycZMl\n\
                 10.250.0.*,!10.250.0.AAIAX8zaYEXpSRMp.qxCQ2CU7tjaAWQ9BNXOgzQvGF/8Qk a cokZMl\n\
                 10.\0\0\0t0.*,!10.250.0.3 ment\n";
    assert_eq!(verdict(&[found]), Verdict::Unknown);
    let stars = format!("10.2{}0.2 {{host}}\n", "*".repeat(40));
    assert_eq!(verdict(&[&stars]), trusted(1, 1));
    assert_eq!(verdict(&[&stars.replace("0.2 ", "0.3 ")]), Verdict::Unknown);
}
