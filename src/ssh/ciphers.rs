//! Which cipher the SSH session offers first, and `-c/--cipher` (as scp has it).
//!
//! russh offers chacha20-poly1305 first. With the `ring` backend on a CPU that has
//! AES instructions, AES-GCM moves the same bytes with less CPU, in OpenSSH's scp
//! as in ours (docs/benchmarks.md#measured-effects). So the default order depends on the
//! CPU; every cipher stays on offer, only the order changes.

use anyhow::{bail, Result};
use russh::cipher::{self, Name};

/// Offered where the CPU has AES (and carry-less multiply) instructions.
const HARDWARE_AES_ORDER: [Name; 6] = [
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// Offered elsewhere: chacha20-poly1305 is fast in software.
const SOFTWARE_ORDER: [Name; 6] = [
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// The ciphers to offer when `-c` does not say: the default order for this CPU.
pub fn offer() -> Vec<Name> {
    default_order(hardware_aes()).to_vec()
}

/// The default order, given whether the CPU has AES instructions.
pub fn default_order(hardware_aes: bool) -> &'static [Name] {
    if hardware_aes {
        &HARDWARE_AES_ORDER
    } else {
        &SOFTWARE_ORDER
    }
}

/// True where AES-GCM runs in hardware (AES-NI and PCLMULQDQ; ARMv8 AES and PMULL).
pub fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// A comma-separated list, as `scp -c` and `ssh -c` take it, of the ciphers above.
pub fn parse(list: &str) -> Result<Vec<Name>> {
    let mut names = Vec::new();
    for word in list.split(',').map(str::trim) {
        match HARDWARE_AES_ORDER.iter().find(|n| n.as_ref() == word) {
            Some(name) if !names.contains(name) => names.push(*name),
            Some(_) => {}
            None => bail!("unknown cipher {word:?}; known: {}", known_names()),
        }
    }
    Ok(names)
}

/// The ciphers of a `Ciphers` line from `~/.ssh/config` that russh has, in its order; names it
/// lacks are left out (OpenSSH's own list has more), but one of them must remain.
pub fn known(names: &[String]) -> Result<Vec<Name>> {
    let names: Vec<Name> = names.iter().filter_map(|n| parse(n).ok()).flatten().collect();
    if names.is_empty() {
        bail!("none of these ciphers is supported; known: {}", known_names());
    }
    Ok(names)
}

fn known_names() -> String {
    HARDWARE_AES_ORDER.iter().map(|n| n.as_ref()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_gcm_first_only_with_hardware_aes() {
        assert_eq!(default_order(true)[0], cipher::AES_256_GCM);
        assert_eq!(default_order(false)[0], cipher::CHACHA20_POLY1305);
        let mut a = default_order(true).to_vec();
        let mut b = default_order(false).to_vec();
        a.sort_by_key(|n| n.as_ref().to_string());
        b.sort_by_key(|n| n.as_ref().to_string());
        assert_eq!(a, b, "the same ciphers on offer, in another order");
    }

    #[test]
    fn a_cipher_list_as_scp_takes_it() {
        assert_eq!(parse("aes128-ctr").unwrap(), [cipher::AES_128_CTR]);
        assert_eq!(
            parse("chacha20-poly1305@openssh.com, aes256-gcm@openssh.com,aes256-gcm@openssh.com").unwrap(),
            [cipher::CHACHA20_POLY1305, cipher::AES_256_GCM]
        );
        let err = parse("aes256-gcm@openssh.com,3des-cbc").unwrap_err().to_string();
        assert!(err.contains("\"3des-cbc\"") && err.contains("aes128-ctr"), "{err}");
        assert!(parse("").is_err(), "an empty name is not a cipher");
    }

    #[test]
    fn a_config_line_keeps_what_russh_has() {
        let line = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            known(&line(&["aes128-cbc", "aes128-ctr", "aes256-gcm@openssh.com"])).unwrap(),
            [cipher::AES_128_CTR, cipher::AES_256_GCM]
        );
        assert!(known(&line(&["3des-cbc"])).is_err());
    }
}
