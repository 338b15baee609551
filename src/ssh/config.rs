//! ssh_config as scp and sftp read it: the file (`-F FILE`, else `~/.ssh/config`; `-F none`
//! for none) and `-o Option=value`, which comes before the file and so wins (the first value
//! of an option is the one kept). Only the options the tool honours may be given with `-o`
//! ([`HONOURED`]): one silently ignored would look obeyed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ssh2_config::{HostParams, ParseRule, SshConfig};

/// The ssh_config options the tool reads, as the README lists them.
pub const HONOURED: [&str; 18] = [
    "AddKeysToAgent",
    "BatchMode",
    "CertificateFile",
    "Ciphers",
    "GlobalKnownHostsFile",
    "HostName",
    "IdentityFile",
    "KbdInteractiveAuthentication",
    "NumberOfPasswordPrompts",
    "PasswordAuthentication",
    "Port",
    "ProxyCommand",
    "ProxyJump",
    "PubkeyAuthentication",
    "StrictHostKeyChecking",
    "User",
    "UserKnownHostsFile",
    "ChallengeResponseAuthentication",
];

/// Where ssh_config comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The file; None: no file at all.
    pub file: Option<PathBuf>,
    /// `-o` options, each as a config line (`Name value`).
    pub options: Vec<String>,
}

impl Settings {
    /// From `-F` (None: `~/.ssh/config` under `home`; `none`: no file) and the `-o` options.
    pub fn new(file: Option<&Path>, home: Option<&Path>, options: &[String]) -> Result<Settings> {
        let file = match file {
            Some(f) if f == Path::new("none") => None,
            Some(f) => {
                if !f.exists() {
                    bail!("-F {}: no such file", f.display());
                }
                Some(f.to_path_buf())
            }
            None => home.map(|h| h.join(".ssh/config")).filter(|p| p.exists()),
        };
        let options = options.iter().map(|o| option_line(o)).collect::<Result<_>>()?;
        Ok(Settings { file, options })
    }

    /// What applies to `alias`: the `-o` options first, then the file's blocks in order.
    pub fn query(&self, alias: &str) -> Result<HostParams> {
        let mut text = String::new();
        if !self.options.is_empty() {
            text.push_str("Host *\n");
            for line in &self.options {
                text.push_str(line);
                text.push('\n');
            }
            // The file's own leading lines go into a block of their own, after ours.
            text.push_str("Host *\n");
        }
        if let Some(path) = &self.file {
            let file = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
            text.push_str(&file);
        }
        let parsed = SshConfig::default()
            // ssh2-config keeps the options it does not interpret as "unsupported".
            .parse(
                &mut std::io::Cursor::new(text),
                ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
            )
            .with_context(|| match &self.file {
                Some(path) => format!("could not parse {} (with the -o options)", path.display()),
                None => "could not parse the -o options".to_string(),
            })?;
        Ok(parsed.query(alias))
    }
}

/// `-o Name=value` or `-o "Name value"` as a config line; the name must be one the tool reads.
pub fn option_line(option: &str) -> Result<String> {
    let option = option.trim();
    let at =
        option.find(|c: char| c == '=' || c.is_whitespace()).with_context(|| format!("-o {option:?}: no value"))?;
    let (name, value) = option.split_at(at);
    let value = value.trim_start_matches(|c: char| c == '=' || c.is_whitespace());
    if value.is_empty() {
        bail!("-o {option:?}: no value");
    }
    let Some(known) = HONOURED.iter().find(|h| h.eq_ignore_ascii_case(name)) else {
        bail!("-o {name}: not an option this tool reads (it reads {})", HONOURED.join(", "));
    };
    Ok(format!("{known} {value}"))
}

/// A yes/no option that ssh2-config leaves uninterpreted; `default` when absent.
pub fn yes_no(params: &HostParams, name: &str, default: bool) -> Result<bool> {
    match params.unsupported_fields.get(&name.to_ascii_lowercase()).and_then(|v| v.first()) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("yes") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("no") => Ok(false),
        Some(v) => bail!("{name} {v}: expected yes or no"),
    }
}

/// An option's words, as ssh2-config split them, joined again (ProxyCommand).
pub fn words(params: &HostParams, name: &str) -> Option<String> {
    params.unsupported_fields.get(&name.to_ascii_lowercase()).map(|w| w.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_spelled_as_ssh_does() {
        assert_eq!(option_line("batchmode=yes").unwrap(), "BatchMode yes");
        assert_eq!(option_line("ProxyJump a,b").unwrap(), "ProxyJump a,b");
        assert_eq!(option_line("ProxyCommand=nc %h %p").unwrap(), "ProxyCommand nc %h %p");
        assert!(format!("{:#}", option_line("Compression=yes").unwrap_err()).contains("not an option this tool reads"));
        assert!(option_line("BatchMode").is_err());
        assert!(option_line("BatchMode=").is_err());
    }

    #[test]
    fn command_line_options_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(&cfg, "User early\nHost far\n  BatchMode no\n  ProxyJump jump\n  ProxyCommand nc %h %p\n")
            .unwrap();
        let opts = ["BatchMode=yes".to_string(), "ProxyJump none".to_string()];
        let s = Settings::new(Some(&cfg), None, &opts).unwrap();
        let p = s.query("far").unwrap();
        assert!(yes_no(&p, "BatchMode", false).unwrap());
        assert_eq!(p.proxy_jump, Some(vec!["none".to_string()]));
        assert_eq!(p.user.as_deref(), Some("early"));
        assert_eq!(words(&p, "ProxyCommand").as_deref(), Some("nc %h %p"));
        let plain = Settings::new(Some(&cfg), None, &[]).unwrap().query("far").unwrap();
        assert!(!yes_no(&plain, "BatchMode", true).unwrap());
        assert!(Settings::new(Some(&dir.path().join("missing")), None, &[]).is_err());
        assert_eq!(Settings::new(Some(Path::new("none")), Some(dir.path()), &[]).unwrap().file, None);
    }
}
