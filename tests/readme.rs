//! The README tells the truth: its help block is the binary's `-h` output.

#[test]
fn readme_shows_the_real_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ftpssh-fullsecure")).arg("-h").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&format!("```\n{help}```")),
        "README.md's help block differs from `ftpssh-fullsecure -h`:\n{help}"
    );
}
