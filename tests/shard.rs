//! `--shard I/N` under GNU parallel: three shards of one `mget many/*`, as three
//! machines would run them, together fetch each of the 200 files exactly once.
//!
//! Needs root, `scripts/lab up` and GNU parallel (scripts/build-env installs it);
//! run with `--test-threads=1`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::tool::{assert_same, entries, Tool};

#[test]
fn three_shards_under_gnu_parallel_fetch_every_file_exactly_once() {
    let tool = Tool::new();
    let lab = &tool.lab;
    // The tool's own command line (in the client namespace), as `run` would build it;
    // GNU parallel puts each shard's index in place of {}.
    let base = tool.cmd(lab.port("PROFTPD_PORT"));
    let mut argv: Vec<String> =
        std::iter::once(base.get_program()).chain(base.get_args()).map(|a| a.to_string_lossy().into_owned()).collect();
    argv.extend(
        ["-q", "mget", "many/*", "-d", "shard{}", "--shard", "{}/3", "--report", "json", "report{}.json"]
            .map(String::from),
    );
    let mut parallel = Command::new("parallel");
    // -q: the arguments as given, no shell word splitting or globbing; --halt: a failed shard fails the run.
    parallel.args(["-q", "--will-cite", "--halt", "now,fail=1", "-j", "3"]).args(&argv).args([":::", "0", "1", "2"]);
    for (key, value) in base.get_envs() {
        match value {
            Some(v) => parallel.env(key, v),
            None => parallel.env_remove(key),
        };
    }
    let out = parallel
        .current_dir(tool.work.path())
        .output()
        .expect("GNU parallel is not installed (scripts/build-env installs it)");
    assert!(out.status.success(), "parallel failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut fetched: BTreeMap<String, usize> = BTreeMap::new();
    for shard in 0..3 {
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tool.work.path().join(format!("report{shard}.json"))).unwrap())
                .unwrap();
        let transfers = report["transfers"].as_array().unwrap();
        assert!(transfers.len() > 40, "shard {shard} took only {} files", transfers.len());
        for t in transfers {
            assert_eq!(t["outcome"], "ok", "{t}");
            *fetched.entry(t["source"].as_str().unwrap().to_string()).or_default() += 1;
        }
        // Each shard's directory holds exactly what its report lists.
        let names: Vec<String> =
            transfers.iter().map(|t| t["source"].as_str().unwrap().trim_start_matches("many/").to_string()).collect();
        let mut names = names;
        names.sort();
        assert_eq!(entries(&tool.work.path().join(format!("shard{shard}"))), names);
        for name in names {
            let want = std::fs::read(tool.remote_path("many").join(&name)).unwrap();
            assert_same(&std::fs::read(tool.work.path().join(format!("shard{shard}/{name}"))).unwrap(), &want, &name);
        }
    }
    let all: Vec<String> = (1..=200).map(|i| format!("many/f{i:03}.txt")).collect();
    assert_eq!(fetched.keys().cloned().collect::<Vec<_>>(), all, "every file");
    assert!(fetched.values().all(|&n| n == 1), "each exactly once: {fetched:?}");
}
