//! The shape of `src/`: no import cycles among its files, and no file over 500 lines (test
//! code aside). The import graph is read from the source text: every `use` declaration and
//! every `crate::`/`super::`/`self::`/child-module path in non-test code is an edge from the
//! file to the file of the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

/// A source file of the library: its module path (`["engine", "pipeline"]`) and text.
struct File {
    module: Vec<String>,
    rel: String,
    text: String,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn files() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    let mut out = Vec::new();
    for p in paths {
        let rel = p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        if rel == "main.rs" {
            continue;
        }
        let mut module: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_string).collect();
        if module.last().is_some_and(|m| m == "mod" || m == "lib") {
            module.pop();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        out.push(File { module, rel, text });
    }
    out
}

/// The file's text before its test module (a top-level `#[cfg(test)]`), comments removed.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_test_file(f: &File) -> bool {
    f.module.last().is_some_and(|m| m == "tests" || m.ends_with("_tests"))
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    // `x as y` keeps `x`: mark the rename, then drop whitespace.
    let tree = tree.split_whitespace().collect::<Vec<_>>().join(" ").replace(" as ", "@");
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    expand_into("", &tree, &mut out);
    out
}

fn expand_into(prefix: &str, tree: &str, out: &mut Vec<String>) {
    for part in split_top(tree) {
        if let Some(open) = part.find('{') {
            let head = part[..open].trim_end_matches("::");
            let inner = &part[open + 1..part.len() - 1];
            expand_into(&join(prefix, head), inner, out);
        } else {
            let part = part.split('@').next().unwrap_or(part);
            out.push(join(prefix, part));
        }
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}::{b}"),
    }
}

fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Every path the code names, as written (`crate::a::b`, `super::x`, `child::y`).
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` declarations, possibly spanning lines.
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let after = &rest[i + 4..];
        if before.is_none_or(|c| c.is_whitespace()) {
            if let Some(end) = after.find(';') {
                out.extend(expand(&after[..end]));
            }
        }
        rest = after;
    }
    // Inline paths.
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if (c.is_ascii_alphabetic() || c == b'_') && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':')) {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || (bytes[i] == b':' && bytes.get(i + 1) == Some(&b':'))) {
                i += if bytes[i] == b':' { 2 } else { 1 };
            }
            let p = &code[start..i];
            if p.contains("::") {
                out.push(p.trim_end_matches("::").to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The file a path from `from` lands in: the longest prefix of it that is a module file.
fn resolve(from: &File, path: &str, modules: &BTreeSet<Vec<String>>, children: &BTreeSet<String>) -> Option<Vec<String>> {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut abs: Vec<String> = match segs.first().copied() {
        Some("crate") => {
            segs.remove(0);
            Vec::new()
        }
        Some("super") => {
            let mut m = from.module.clone();
            while segs.first() == Some(&"super") {
                segs.remove(0);
                m.pop();
            }
            m
        }
        Some("self") => {
            segs.remove(0);
            from.module.clone()
        }
        Some(first) if children.contains(first) => from.module.clone(),
        _ => return None,
    };
    let mut best = None;
    if modules.contains(&abs) {
        best = Some(abs.clone());
    }
    for s in segs {
        abs.push(s.to_string());
        if modules.contains(&abs) {
            best = Some(abs.clone());
        }
    }
    best
}

#[test]
fn no_import_cycles_among_source_files() {
    let files = files();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let name = |m: &[String]| if m.is_empty() { "lib".to_string() } else { m.join("::") };
    for f in &files {
        if is_test_file(f) {
            continue;
        }
        let code = code(&f.text);
        let children: BTreeSet<String> = modules.iter().filter(|m| m.len() == f.module.len() + 1 && m.starts_with(&f.module)).map(|m| m.last().unwrap().clone()).collect();
        let from = name(&f.module);
        let out = edges.entry(from.clone()).or_default();
        for p in paths(&code) {
            if let Some(to) = resolve(f, &p, &modules, &children) {
                // The crate root declares every module; its `pub use`s are not dependencies.
                if !to.is_empty() && to != f.module && !f.module.is_empty() {
                    out.insert(name(&to));
                }
            }
        }
    }
    let cycles = strongly_connected(&edges);
    assert!(cycles.is_empty(), "import cycles among src/ files:\n{}", cycles.iter().map(|c| format!("  {}", c.join(" ⇄ "))).collect::<Vec<_>>().join("\n"));
}

/// Tarjan's strongly connected components of more than one node.
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let edges = t.edges;
        for w in edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), next: 0, out: Vec::new() };
    let nodes: Vec<&str> = edges.keys().map(String::as_str).collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_source_file_is_over_500_lines() {
    let mut long = Vec::new();
    for f in files() {
        if is_test_file(&f) {
            continue;
        }
        let n = f.text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count();
        if n > MAX_LINES {
            long.push(format!("  src/{}: {n} lines", f.rel));
        }
    }
    long.sort();
    assert!(long.is_empty(), "files under src/ over {MAX_LINES} lines (test modules aside):\n{}", long.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_and_expands_use_trees() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    edges.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(strongly_connected(&edges), vec![vec!["a".to_string(), "b".to_string()]]);
    assert_eq!(expand("crate::{a::{B, c}, d as e}"), vec!["crate::a::B", "crate::a::c", "crate::d"]);
}
