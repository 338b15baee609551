//! The shape of `src/`: no import cycles, between files or between the
//! top-level modules (the book's steps), and no file too long to read in one
//! sitting. Read from the source text: every `crate::`, `super::` and `self::`
//! path outside comments and tests, and every path that starts with the name of
//! one of the file's child modules. Parents and children count like any other
//! file: a parent that uses its child while the child uses the parent is a loop.
//! A re-export (`pub use`) is no edge of its own; a path through one counts as
//! a path to the module that defines the name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest file allowed, in lines (tests included).
const MAX_FILE_LINES: usize = 450;

/// Module path of a source file: `src/ssh.rs` (or `src/ssh/mod.rs`) -> `ssh`, `src/ssh/gate.rs` -> `ssh::gate`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| *p != "mod" && *p != "lib").collect();
    parts.join("::")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The use tree at the start of `text` (`a::b::{c, d::e}`, `a::b as c`, `a::*`), expanded into
/// its leaves, each as its segments (an alias as a last `as NAME` segment is dropped: the
/// path is what matters). Returns the leaves and how many bytes the tree took.
fn use_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    loop {
        while i < text.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if text[i..].starts_with('{') {
            // A group: split at top-level commas, expand each.
            let mut depth = 0;
            let mut end = i;
            for (k, c) in text[i..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            if end == i {
                end = text.len();
            }
            let inner = &text[i + 1..end];
            let mut leaves = Vec::new();
            let mut depth = 0;
            let mut from = 0;
            for (k, c) in inner.char_indices().chain([(inner.len(), ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let item = &inner[from..k];
                        if !item.trim().is_empty() {
                            for leaf in use_tree(item).0 {
                                leaves.push(segments.iter().cloned().chain(leaf).collect());
                            }
                        }
                        from = k + 1;
                    }
                    _ => {}
                }
            }
            return (leaves, (end + 1).min(text.len()));
        }
        let len = text[i..].find(|c: char| !is_ident(c) && c != '*').unwrap_or(text.len() - i);
        if len == 0 {
            return (if segments.is_empty() { vec![] } else { vec![segments] }, i);
        }
        segments.push(text[i..i + len].to_string());
        i += len;
        if text[i..].starts_with("::") {
            i += 2;
        } else {
            return (vec![segments], i);
        }
    }
}

/// Every path in `code` that starts with `crate`, `super`, `self` or one of `children`, with
/// `use` groups expanded, as segments.
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let c = rest.chars().next().unwrap();
        if !is_ident(c) {
            i += c.len_utf8();
            continue;
        }
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        let word = &rest[..len];
        let before = &code[..i];
        let continued = before.ends_with("::") || before.ends_with('.') || before.ends_with('\'');
        let starts = matches!(word, "crate" | "super" | "self") || children.contains(word);
        if starts && !continued && rest[len..].starts_with("::") {
            let (leaves, took) = use_tree(rest);
            found.extend(leaves);
            i += took.max(len);
        } else {
            i += len;
        }
    }
    found
}

/// The code of a file that imports: no comments, no tests, and (with `reexports` false) no
/// `pub use` statements; with `reexports` true, only those statements.
fn code_of(text: &str, reexports: bool) -> String {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut kept = String::new();
    let mut rest = code.as_str();
    while let Some(at) = ["pub use ", "pub(crate) use ", "pub(super) use "].iter().filter_map(|p| rest.find(p)).min() {
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e + 1);
        if reexports {
            let stmt = &rest[at..end];
            kept.push_str(&stmt[stmt.find("use ").unwrap() + 4..]);
            kept.push('\n');
        } else {
            kept.push_str(&rest[..at]);
        }
        rest = &rest[end..];
    }
    if !reexports {
        kept.push_str(rest);
    }
    kept
}

/// `path`, written in `module`, as an absolute path (segments from the crate root).
fn absolute(module: &str, path: &[String], children: &BTreeSet<String>) -> Vec<String> {
    let mut base: Vec<String> = if module.is_empty() { vec![] } else { module.split("::").map(String::from).collect() };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) if children.contains(first) => {}
        // A name of this module's own (a local item, a macro): it stays here.
        _ => rest = &rest[..rest.len().min(1)],
    }
    base.extend(rest.iter().cloned());
    base
}

/// The module an absolute path leads to: the longest known module prefix, or, where the next
/// segment is a name that module re-exports, the module the re-export leads to.
fn resolve(
    path: &[String],
    modules: &BTreeMap<String, PathBuf>,
    reexports: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
    depth: usize,
) -> Option<String> {
    let n = (0..=path.len()).rev().find(|&n| modules.contains_key(&path[..n].join("::")))?;
    let module = path[..n].join("::");
    if let (Some(name), true) = (path.get(n), depth < 8) {
        if let Some(target) = reexports.get(&module).and_then(|r| r.get(name)) {
            let mut through = target.clone();
            through.extend(path[n + 1..].iter().cloned());
            return resolve(&through, modules, reexports, depth + 1).or(Some(module));
        }
    }
    Some(module)
}

/// The file-level import graph: module -> modules it names, parents and children included.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: BTreeMap<String, PathBuf> = all.iter().map(|f| (module_of(&src, f), f.clone())).collect();
    let children = |module: &str| -> BTreeSet<String> {
        let prefix = if module.is_empty() { String::new() } else { format!("{module}::") };
        modules
            .keys()
            .filter_map(|m| m.strip_prefix(&prefix).filter(|r| !r.is_empty() && !r.contains("::")).map(String::from))
            .collect()
    };
    let texts: BTreeMap<&String, String> =
        modules.iter().map(|(m, f)| (m, std::fs::read_to_string(f).unwrap())).collect();
    // What each module re-exports: name -> the absolute path it stands for.
    let mut reexports: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (module, text) in &texts {
        let kids = children(module);
        let code = code_of(text, true);
        let mut rest = code.as_str();
        while !rest.trim().is_empty() {
            let (leaves, took) = use_tree(rest);
            for leaf in leaves {
                let Some(name) = leaf.last().filter(|n| n.as_str() != "*" && n.as_str() != "self") else { continue };
                let name = name.clone();
                reexports.entry((*module).clone()).or_default().insert(name, absolute(module, &leaf, &kids));
            }
            rest = &rest[took.max(1)..];
        }
    }
    let mut graph = BTreeMap::new();
    for (module, text) in &texts {
        let kids = children(module);
        let mut deps = BTreeSet::new();
        for path in paths(&code_of(text, false), &kids) {
            let target = resolve(&absolute(module, &path, &kids), &modules, &reexports, 0);
            if let Some(t) = target.filter(|t| t != *module) {
                deps.insert(t);
            }
        }
        graph.insert((*module).clone(), deps);
    }
    graph
}

/// A cycle in `graph`, if any, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap();
                    return Some(stack[from..].iter().cloned().chain([m.clone()]).collect());
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The loops of `graph`: its strongly connected components of more than one module.
fn loops(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |start: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.clone()];
        while let Some(n) = stack.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|k| (k, reach(k))).collect();
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for k in graph.keys() {
        if reached[k].contains(k) && !found.iter().any(|l| l.contains(k)) {
            found.push(graph.keys().filter(|m| reached[k].contains(*m) && reached[*m].contains(k)).cloned().collect());
        }
    }
    found
}

#[test]
fn no_import_cycle_between_files() {
    let graph = graph();
    assert!(graph.len() > 30, "read {} modules", graph.len());
    let found = loops(&graph);
    let describe = |l: &BTreeSet<String>| {
        l.iter()
            .map(|m| format!("  {m} -> {:?}", graph[m].intersection(l).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let described: Vec<String> = found.iter().map(describe).collect();
    assert!(found.is_empty(), "import loops between files:\n{}", described.join("\n\n"));
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let first = |m: &str| m.split("::").next().unwrap().to_string();
    for (module, deps) in graph() {
        let entry = top.entry(first(&module)).or_default();
        entry.extend(deps.iter().map(|d| first(d)).filter(|d| *d != first(&module)));
    }
    assert_eq!(find_cycle(&top), None, "{top:#?}");
}

#[test]
fn the_checker_sees_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), BTreeSet::from([v.to_string()])))
        .collect();
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4));
    assert_eq!(loops(&g), vec![BTreeSet::from(["a".to_string(), "b".into(), "c".into()])]);
    let kids = BTreeSet::from(["kid".to_string()]);
    let found: Vec<String> = paths(
        "use crate::{a::b, c::{d, e::f}}; x = crate::d::e(1); use super::g; self::h(); kid::i(); std::kid::j(); y.kid::k",
        &kids,
    )
    .iter()
    .map(|p| p.join("::"))
    .collect();
    assert_eq!(found, ["crate::a::b", "crate::c::d", "crate::c::e::f", "crate::d::e", "super::g", "self::h", "kid::i"]);
    let kids = BTreeSet::new();
    assert_eq!(absolute("a::b", &["super".into(), "super".into(), "c".into()], &kids), ["c"]);
    assert_eq!(absolute("a::b", &["self".into(), "c".into()], &kids), ["a", "b", "c"]);
    assert_eq!(code_of("pub use x::{Y,\n Z};\nuse w::V;", false).trim(), "use w::V;");
    assert_eq!(code_of("pub use x::{Y,\n Z};\nuse w::V;", true).trim(), "x::{Y,\n Z};");
}

#[test]
fn files_are_short() {
    let mut all = Vec::new();
    files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
    let long: Vec<String> = all
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > MAX_FILE_LINES)
        .map(|(f, n)| format!("{}: {n} lines", f.display()))
        .collect();
    assert!(long.is_empty(), "{long:#?}");
}

/// One module style: a module with children is `name.rs` beside `name/`, never `name/mod.rs`
/// (so no two files share the name `mod.rs`, and a module's file is found by its name).
#[test]
fn one_module_style() {
    let mut all = Vec::new();
    files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
    let mod_rs: Vec<_> = all.iter().filter(|f| f.file_name().is_some_and(|n| n == "mod.rs")).collect();
    assert!(mod_rs.is_empty(), "use name.rs beside name/ instead: {mod_rs:#?}");
}
