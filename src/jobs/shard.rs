//! `--shard I/N`: one of N machines takes the I-th of N stable slices of a
//! run's work, so that GNU parallel, a Kubernetes Indexed Job or a Nomad
//! batch job can spread one run over many machines with no coordination.
//!
//! An item belongs to slice `fnv1a64(name) % N`: the same name always lands
//! in the same slice, on every machine and in every run, whatever else is in
//! the listing; every name lands in exactly one slice. I counts from 0, as
//! Kubernetes' `JOB_COMPLETION_INDEX` and Nomad's `NOMAD_ALLOC_INDEX` do.

use crate::transfer::part::fnv1a64;

/// Slice `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which slice, from 0.
    pub index: u64,
    /// How many slices.
    pub count: u64,
}

impl Shard {
    /// True when `name` is this slice's work.
    pub fn takes(&self, name: &str) -> bool {
        fnv1a64(name.as_bytes()) % self.count == self.index
    }
}

/// `I/N` with 0 <= I < N.
pub fn parse(s: &str) -> Result<Shard, String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("{s:?} is not I/N, such as 0/3"))?;
    let (index, count): (u64, u64) = match (i.trim().parse(), n.trim().parse()) {
        (Ok(i), Ok(n)) => (i, n),
        _ => return Err(format!("{s:?} is not I/N, such as 0/3")),
    };
    if count == 0 || index >= count {
        return Err(format!("{s:?}: I counts from 0 and must be below N (0/{count} to {}/{count})", count.max(1) - 1));
    }
    Ok(Shard { index, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_in_exactly_one_slice_and_slices_are_even_enough() {
        let shards: Vec<Shard> = (0..3).map(|i| parse(&format!("{i}/3")).unwrap()).collect();
        let mut sizes = [0; 3];
        for n in 1..=200 {
            let name = format!("many/f{n:03}.txt");
            let owners: Vec<usize> = (0..3).filter(|&i| shards[i].takes(&name)).collect();
            assert_eq!(owners.len(), 1, "{name}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&s| s > 40), "{sizes:?}");
        // Stable: a function of the name alone, the same on every machine; these must never change.
        let slices: Vec<u64> = (1..=7)
            .map(|n| (0..3).find(|&i| shards[i as usize].takes(&format!("many/f{n:03}.txt"))).unwrap())
            .collect();
        assert_eq!(slices, [2, 2, 0, 2, 0, 2, 0]);
        assert!(parse("0/1").unwrap().takes("anything"));
    }

    #[test]
    fn bad_shards() {
        for bad in ["3/3", "1/0", "x/3", "1", "-1/3", "1/3/4", ""] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(" 2 / 5 "), Ok(Shard { index: 2, count: 5 }));
    }
}
