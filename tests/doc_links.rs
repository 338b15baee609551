//! Every relative link in the README and `docs/` resolves: to a file or directory of the
//! repository and, with `#section`, to a heading of that Markdown file (its GitHub anchor). And
//! every `docs/NAME.md#section` that a comment in `src/`, `scripts/`, `tests/` or `fuzz/` points to
//! exists: those comments cite the docs instead of carrying the facts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README and every Markdown file under `docs/`.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text outside fenced code blocks, line by line, with inline code spans blanked out.
fn prose(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || line.starts_with("    ") {
            continue;
        }
        let mut out = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        lines.push(out);
    }
    lines
}

/// GitHub's anchor for a heading: lower case, letters, digits, `-` and `_` kept, spaces to `-`,
/// everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings; a repeated one gets `-1`, `-2`, ... as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else { continue };
        if fenced {
            continue;
        }
        let base = slug(heading.trim_start_matches('#').replace('`', "").as_str());
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of the `[text](target)` links in a Markdown text.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(text) {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
    }
    targets
}

/// What is wrong with `target`, a link in the file `from`, if anything.
fn check(from: &Path, target: &str) -> Option<String> {
    if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file = if path.is_empty() { from.to_path_buf() } else { from.parent().unwrap().join(path) };
    if !file.exists() {
        return Some(format!("{}: {target}: no such file", from.display()));
    }
    let anchor = anchor?;
    if file.extension().is_none_or(|e| e != "md") {
        return Some(format!("{}: {target}: an anchor into a file that is not Markdown", from.display()));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    if !anchors(&text).contains(anchor) {
        return Some(format!("{}: {target}: no heading with that anchor in {}", from.display(), file.display()));
    }
    None
}

#[test]
fn every_link_in_the_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in link_targets(&text) {
            checked += 1;
            broken.extend(check(&file, &target));
        }
    }
    assert!(checked > 50, "only {checked} links found: is the link reader broken?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every `docs/NAME.md` or `docs/NAME.md#section` in `text`.
fn doc_references(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("docs/") {
        rest = &rest[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '#')))
            .unwrap_or(rest.len());
        let found = rest[..end].trim_end_matches('.');
        if found.contains(".md") {
            refs.push(found.to_string());
        }
        rest = &rest[end..];
    }
    refs
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | "corpus" | "artifacts") {
                files_under(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_docs_section_the_code_points_to_exists() {
    let mut files = Vec::new();
    for dir in ["src", "scripts", "tests", "fuzz"] {
        files_under(&root().join(dir), &mut files);
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    // This file names made-up pages on purpose.
    files.retain(|f| !f.ends_with("tests/doc_links.rs"));
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for reference in doc_references(&text) {
            checked += 1;
            // Relative to the repository root, as the comments write them.
            broken.extend(check(&root().join("README.md"), &reference).map(|e| format!("{}: {e}", file.display())));
        }
    }
    assert!(checked > 5, "only {checked} references to docs/ found");
    assert!(broken.is_empty(), "references to missing docs:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_a_broken_link() {
    assert_eq!(slug("TIME_WAIT and incarnations"), "time_wait-and-incarnations");
    assert_eq!(
        slug("7. When the default port cannot work: passive inside SSH"),
        "7-when-the-default-port-cannot-work-passive-inside-ssh"
    );
    assert_eq!(slug("Threat model: the hosts' other users"), "threat-model-the-hosts-other-users");
    let a = anchors("# A\n## Use\n```\n# not a heading\n```\n## Use\n");
    assert_eq!(a, BTreeSet::from(["a".into(), "use".into(), "use-1".into()]));
    assert_eq!(
        link_targets("see [x](docs/a.md#b) and `[y](not/a/link)`, [z](https://e.org)\n```\n[w](in/code)\n```\n"),
        vec!["docs/a.md#b".to_string(), "https://e.org".into()]
    );
    let readme = root().join("README.md");
    assert!(check(&readme, "docs/no-such-page.md").is_some());
    assert!(check(&readme, "docs/benchmarks.md#no-such-section").is_some());
    assert!(check(&readme, "docs/benchmarks.md#method").is_none());
    assert!(check(&readme, "src/lib.rs").is_none());
    assert_eq!(
        doc_references("// (docs/real-systems.md#time_wait-and-incarnations). And docs/lab.md."),
        vec!["docs/real-systems.md#time_wait-and-incarnations".to_string(), "docs/lab.md".into()]
    );
}
