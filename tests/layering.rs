//! The layer order of the crate (written in `src/lib.rs`) holds: no module
//! imports one from a higher layer, and no two top-level modules import
//! each other, directly or round about.
//!
//! The test reads every `.rs` file under `src/`, drops comments and string
//! and character literals, and collects every path that names a top-level
//! module: `crate::x`, the items of a grouped `use crate::{x, y::z}`, and
//! `super::…` paths that climb to the crate root. Each file belongs to the
//! top-level module it sits in (`src/x.rs`, `src/x/…`). Code under
//! `#[cfg(test)]` counts like any other: a test module that needs a higher
//! layer belongs in `tests/`.
//!
//! The rule:
//! * every top-level module has a layer in [`LAYERS`] (a new module fails
//!   until someone decides where it belongs);
//! * a module may import modules of its own layer and of lower layers,
//!   never of a higher one;
//! * imports between top-level modules never form a cycle, in one layer or
//!   across layers. The one grouping, in [`UNITS`], is `bench` with `cli`:
//!   the benchmarks are a CLI subcommand kept in their own folder.
//!
//! Self-contained (no shared test helpers), so it can move into another
//! test binary unchanged.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, lowest first, and the top-level modules in each. Keep in step
/// with the crate documentation in `src/lib.rs`.
const LAYERS: &[(&str, &[&str])] = &[
    ("leaves", &["clock", "random", "fsutil", "proto"]),
    ("domain", &["domain"]),
    (
        "building blocks",
        &[
            "digest",
            "ledger",
            "pki",
            "screening",
            "licence",
            "pii",
            "metrics",
            "config",
        ],
    ),
    ("store", &["store"]),
    ("services", &["kyc", "trust", "attribution", "tls"]),
    ("auth and api", &["auth", "api"]),
    ("server", &["server"]),
    ("front end", &["cli", "bench", "fuzzing"]),
];

/// Modules that count as part of another for the cycle rule, and why.
const UNITS: &[(&str, &str, &str)] = &[(
    "bench",
    "cli",
    "`warden bench` is a CLI subcommand: the CLI dispatches to it, and it drives the CLI's dev setup and client",
)];

/// One path from a file to a top-level module.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

#[test]
fn no_module_imports_a_higher_layer_and_no_modules_import_each_other_in_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut imports = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&root).unwrap();
        let rel = rel.to_str().unwrap().replace('\\', "/");
        let text = std::fs::read_to_string(path).unwrap();
        imports.extend(imports_of(&format!("src/{rel}"), &rel, &text));
    }
    assert!(
        imports.len() > 100,
        "found only {} imports: is the parser blind?",
        imports.len()
    );
    let problems = check(&imports, LAYERS, UNITS);
    assert!(
        problems.is_empty(),
        "the layer order (src/lib.rs) is broken:\n{}",
        problems.join("\n")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

// ---------------------------------------------------------------------------
// The checker

/// Every breach of the rule, as lines naming file:line.
fn check(
    imports: &[Import],
    layers: &[(&str, &[&str])],
    units: &[(&str, &str, &str)],
) -> Vec<String> {
    let layer_of = |m: &str| layers.iter().position(|(_, ms)| ms.contains(&m));
    let unit_of = |m: &str| {
        units
            .iter()
            .find(|(part, _, _)| *part == m)
            .map_or(m, |(_, whole, _)| whole)
            .to_string()
    };
    let mut problems = Vec::new();
    let mut unplaced = BTreeSet::new();
    // Unit -> unit -> the first import that makes the edge.
    let mut edges: BTreeMap<String, BTreeMap<String, &Import>> = BTreeMap::new();
    for i in imports {
        if i.from == i.to {
            continue;
        }
        let (Some(from), Some(to)) = (layer_of(&i.from), layer_of(&i.to)) else {
            for m in [&i.from, &i.to] {
                if layer_of(m).is_none() && unplaced.insert(m.clone()) {
                    problems.push(format!(
                        "{}:{}: module `{m}` has no layer (add it to LAYERS in tests/layering.rs and to the crate docs)",
                        i.file, i.line
                    ));
                }
            }
            continue;
        };
        if to > from {
            let problem = format!(
                "{}:{}: `{}` ({}) imports `{}` ({}), a higher layer",
                i.file, i.line, i.from, layers[from].0, i.to, layers[to].0
            );
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
        let (a, b) = (unit_of(&i.from), unit_of(&i.to));
        if a != b {
            edges.entry(a).or_default().entry(b).or_insert(i);
        }
    }
    for cycle in cycles(&edges) {
        let steps: Vec<String> = cycle
            .iter()
            .zip(cycle.iter().cycle().skip(1))
            .map(|(a, b)| {
                let i = edges[a][b];
                format!("`{a}` -> `{b}` ({}:{})", i.file, i.line)
            })
            .collect();
        problems.push(format!("cycle: {}", steps.join(", ")));
    }
    problems
}

/// The cycles of a directed graph, one per strongly connected component of
/// more than one node, each as the nodes of one closed walk through it.
fn cycles(edges: &BTreeMap<String, BTreeMap<String, &Import>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a).chain(bs.keys()))
        .collect();
    let reaches = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in edges.get(&n).into_iter().flat_map(|bs| bs.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reaches(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) || !reach[n].contains(*n) {
            continue;
        }
        // The nodes on a cycle with `n`: those it reaches that reach it.
        let component: BTreeSet<&String> = reach[n]
            .iter()
            .filter(|m| reach[m].contains(*n))
            .map(|m| *nodes.get(m).unwrap())
            .collect();
        done.extend(component.iter().map(|m| (*m).clone()));
        out.push(walk(n, &component, edges));
    }
    out
}

/// A closed walk from `start` through `component`, as a list of nodes (the
/// last one leads back to `start`): shortest paths chained.
fn walk(
    start: &String,
    component: &BTreeSet<&String>,
    edges: &BTreeMap<String, BTreeMap<String, &Import>>,
) -> Vec<String> {
    // Breadth-first from `start` back to `start`, inside the component.
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(n) = queue.pop_front() {
        for next in edges.get(&n).into_iter().flat_map(|bs| bs.keys()) {
            if !component.contains(next) {
                continue;
            }
            if next == start {
                let mut path = vec![n.clone()];
                let mut at = n;
                while let Some(p) = parent.get(&at) {
                    path.push(p.clone());
                    at = p.clone();
                }
                path.reverse();
                return path;
            }
            if !parent.contains_key(next) && next != start {
                parent.insert(next.clone(), n.clone());
                queue.push_back(next.clone());
            }
        }
    }
    vec![start.clone()]
}

// ---------------------------------------------------------------------------
// The parser

/// Paths to top-level modules in `text`, the file at `rel` under `src/`
/// (`api/admission.rs`), reported as `file`.
fn imports_of(file: &str, rel: &str, text: &str) -> Vec<Import> {
    let Some(module) = top_level_module(rel) else {
        return Vec::new();
    };
    let depth = file_depth(rel);
    let code = strip(text);
    let tokens = tokens(&code);
    let mut out = Vec::new();
    let mut push = |line: usize, to: &str| {
        out.push(Import {
            file: file.to_string(),
            line,
            from: module.clone(),
            to: to.to_string(),
        });
    };
    // Inline `mod x { … }` blocks open at these brace depths.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let (line, t) = (tokens[i].0, tokens[i].1.as_str());
        match t {
            "{" => braces += 1,
            "}" => {
                braces = braces.saturating_sub(1);
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
            }
            "mod" if is_ident(tok(&tokens, i + 1)) && tok(&tokens, i + 2) == "{" => {
                inline_mods.push(braces);
            }
            "crate" if tok(&tokens, i + 1) == "::" && (i == 0 || tokens[i - 1].1 != "$") => {
                i = root_path(&tokens, i + 2, line, &mut push);
                continue;
            }
            "super" if i == 0 || tokens[i - 1].1 != "::" => {
                // `super::super::…` from a module `depth` below the root.
                let mut ups = 0;
                let mut j = i;
                while tok(&tokens, j) == "super" && tok(&tokens, j + 1) == "::" {
                    ups += 1;
                    j += 2;
                }
                if ups > 0 && ups == depth + inline_mods.len() {
                    i = root_path(&tokens, j, line, &mut push);
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads what follows `crate::` at `i`: a module name or a `{…}` group of
/// paths. Returns the index after it.
fn root_path(
    tokens: &[(usize, String)],
    i: usize,
    line: usize,
    push: &mut impl FnMut(usize, &str),
) -> usize {
    let t = tok(tokens, i);
    if t != "{" {
        if is_ident(t) {
            push(line, t);
        }
        return i + 1;
    }
    // A group: the first name of every item at the group's own depth.
    let mut depth = 0;
    let mut j = i;
    let mut item_start = true;
    while j < tokens.len() {
        let (l, t) = (tokens[j].0, tokens[j].1.as_str());
        match t {
            "{" => {
                depth += 1;
                item_start = depth == 1;
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            "," => item_start = depth == 1,
            _ => {
                if item_start && is_ident(t) && t != "self" {
                    push(l, t);
                }
                item_start = false;
            }
        }
        j += 1;
    }
    j
}

fn tok(tokens: &[(usize, String)], i: usize) -> &str {
    tokens.get(i).map_or("", |t| t.1.as_str())
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The top-level module of a file under `src/`; `None` for the crate
/// roots (`lib.rs`, `main.rs`).
fn top_level_module(rel: &str) -> Option<String> {
    match rel.split_once('/') {
        Some((dir, _)) => Some(dir.to_string()),
        None if rel == "lib.rs" || rel == "main.rs" => None,
        None => Some(rel.trim_end_matches(".rs").to_string()),
    }
}

/// How many modules below the crate root a file's own module is:
/// `x.rs` and `x/mod.rs` 1, `x/y.rs` 2.
fn file_depth(rel: &str) -> usize {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.last() == Some(&"mod.rs") {
        parts.len() - 1
    } else {
        parts.len()
    }
}

/// Identifiers, `::`, and single punctuation characters, with their lines.
fn tokens(code: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((line, chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((line, "::".to_string()));
            i += 2;
        } else {
            out.push((line, c.to_string()));
            i += 1;
        }
    }
    out
}

/// `text` with comments, strings and character literals blanked out
/// (newlines kept, so line numbers stay right).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| {
        out.extend(s.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
    };
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        let ident_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        let end = if at(i) == '/' && at(i + 1) == '/' {
            let mut j = i;
            while j < c.len() && c[j] != '\n' {
                j += 1;
            }
            j
        } else if at(i) == '/' && at(i + 1) == '*' {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                if at(j) == '/' && at(j + 1) == '*' {
                    depth += 1;
                    j += 2;
                } else if at(j) == '*' && at(j + 1) == '/' {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            j
        } else if !ident_before && (at(i) == 'r' || (at(i) == 'b' && at(i + 1) == 'r')) && {
            let mut j = i + if at(i) == 'b' { 2 } else { 1 };
            while at(j) == '#' {
                j += 1;
            }
            at(j) == '"'
        } {
            // A raw string: r"…", r#"…"#, br"…".
            let mut j = i + if at(i) == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break j;
                }
                if c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    break j + 1 + hashes;
                }
                j += 1;
            }
        } else if at(i) == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if at(i) == '\'' && at(i + 1) == '\\' {
            // An escaped character literal: '\n', '\'', '\u{1F600}'.
            let mut j = i + 3;
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            j + 1
        } else if at(i) == '\'' && at(i + 2) == '\'' {
            i + 3
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        let end = end.min(c.len());
        blank(&mut out, &c[i..end]);
        i = end;
    }
    out
}

// ---------------------------------------------------------------------------
// The checker and parser on small inputs: they find what they must.

fn found(rel: &str, text: &str) -> Vec<(usize, String)> {
    imports_of(&format!("src/{rel}"), rel, text)
        .into_iter()
        .map(|i| (i.line, i.to))
        .collect()
}

#[test]
fn the_parser_finds_plain_grouped_qualified_and_root_super_paths() {
    let text = "use crate::clock::Clock;\n\
                use crate::{domain::order::{Order, Quorum}, ledger,\n    store::Store};\n\
                fn f() { crate::api::now(); let x: crate::pki::X; }\n\
                use super::kyc::Thing;\n\
                mod tests { use super::*; use super::super::trust::T; }\n";
    assert_eq!(
        found("metrics.rs", text),
        vec![
            (1, "clock".to_string()),
            (2, "domain".to_string()),
            (2, "ledger".to_string()),
            (3, "store".to_string()),
            (4, "api".to_string()),
            (4, "pki".to_string()),
            (5, "kyc".to_string()),
            (6, "trust".to_string()),
        ]
    );
    // One level down, `super` is the file's own top-level module.
    assert_eq!(
        found("api/admission.rs", "use super::{principal, App};\n"),
        vec![]
    );
    assert_eq!(
        found("api/mod.rs", "use super::store::Store;\n"),
        vec![(1, "store".to_string())]
    );
}

#[test]
fn the_parser_ignores_comments_strings_and_macro_crate_paths() {
    let text = "//! See [`crate::api`].\n\
                /* crate::server::x */ let s = \"crate::cli\";\n\
                let r = r#\"use crate::bench;\"#; let c = '\"'; let q = '\\'';\n\
                macro_rules! m { () => { $crate::server::x() } }\n\
                fn g<'a>(x: &'a str) -> &'a str { crate::clock::now(); x }\n";
    assert_eq!(found("store/mod.rs", text), vec![(5, "clock".to_string())]);
}

#[test]
fn the_checker_names_an_import_that_runs_back_up_and_a_cycle() {
    const LAYERS: &[(&str, &[&str])] = &[
        ("low", &["clock"]),
        ("middle", &["store", "ledger", "pki"]),
        ("high", &["api", "server"]),
    ];
    let files = [
        (
            "store/x.rs",
            "use crate::{clock, ledger};\nfn f() { crate::server::go(); }\n",
        ),
        ("ledger/mod.rs", "use crate::pki::Thing;\n"),
        ("pki/mod.rs", "use crate::store::Store;\n"),
        ("api/mod.rs", "use crate::store::Store;\n"),
    ];
    let imports: Vec<Import> = files
        .iter()
        .flat_map(|(rel, text)| imports_of(&format!("src/{rel}"), rel, text))
        .collect();
    let problems = check(&imports, LAYERS, &[]);
    assert_eq!(
        problems,
        vec![
            "src/store/x.rs:2: `store` (middle) imports `server` (high), a higher layer".to_string(),
            "cycle: `ledger` -> `pki` (src/ledger/mod.rs:1), `pki` -> `store` (src/pki/mod.rs:1), `store` -> `ledger` (src/store/x.rs:1)".to_string(),
        ]
    );
    // A unit's parts import each other freely; a module without a layer
    // is named.
    let imports = vec![
        Import {
            file: "src/a.rs".into(),
            line: 3,
            from: "pki".into(),
            to: "ledger".into(),
        },
        Import {
            file: "src/b.rs".into(),
            line: 4,
            from: "ledger".into(),
            to: "pki".into(),
        },
        Import {
            file: "src/c.rs".into(),
            line: 5,
            from: "nowhere".into(),
            to: "clock".into(),
        },
    ];
    assert_eq!(
        check(&imports, LAYERS, &[("pki", "ledger", "one thing")]),
        vec!["src/c.rs:5: module `nowhere` has no layer (add it to LAYERS in tests/layering.rs and to the crate docs)".to_string()]
    );
}
