//! `batch::parse` of a whole batch file: every job it returns, written back with quotes,
//! parses to the same job.
#![no_main]

use ftpssh::jobs::batch;
use libfuzzer_sys::fuzz_target;

fn quote(word: &str) -> String {
    format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(jobs) = batch::parse(text) else { return };
    let lines = text.lines().count();
    let mut last = 0;
    for job in &jobs {
        assert!(job.line > last && job.line <= lines);
        last = job.line;
        assert!(!job.source.is_empty() && job.target.as_ref().is_none_or(|t| !t.is_empty()));
        let names = [Some(&job.source), job.target.as_ref()];
        for name in names.into_iter().flatten() {
            assert!(!name.chars().any(|c| c.is_control() && c != '\t'), "{name:?}");
        }
        let mut line = format!("{} {}", job.op.as_str(), quote(&job.source));
        if let Some(target) = &job.target {
            line = format!("{line} {}", quote(target));
        }
        let again = batch::parse(&line).unwrap_or_else(|e| panic!("{line:?}: {e:#}"));
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].op, &again[0].source, &again[0].target), (job.op, &job.source, &job.target));
    }
});
