//! The module graph, read from the source and checked: no cycles between
//! modules, [`crate::domain`] imports nothing from the crate, and the pure
//! modules import only pure modules (so no IO module, however indirectly).
//!
//! The graph is built from every path in the files under `src/` that names
//! a module (`crate::…`, `super::…`, `self::…`, or a child module such as
//! `runner::start` in `agent/mod.rs`), leaving out comments, string literals
//! and `#[cfg(test)]` items and files (tests may use anything). A node is a
//! top-level module, or one of the submodules in [`NODES`].
//! `cargo test --lib module_graph -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Submodules that are nodes of their own, because their parent holds both
/// pure modules and modules that do IO. (A parent and its other children are
/// one node: a `mod.rs` that dispatches to children which use its types is
/// how Rust modules are built, not a cycle worth breaking.)
const NODES: &[&str] = &[
    "app::policy",
    "agent::command",
    "agent::llm",
    "agent::protocol",
    "agent::runner",
    "commands::parse",
    "session::controls",
    "session::driver",
    "session::machine",
    "session::prompt",
    "session::sink",
];

/// Modules that do no IO: each imports only modules of this list.
const PURE: &[&str] = &[
    "domain",
    "recognize",
    "app::policy",
    "session::machine",
    "session::prompt",
    "commands::parse",
    "agent::protocol",
];

/// Modules that do IO (or start what does), which no pure module may import.
const IO: &[&str] = &[
    "app",
    "store",
    "slack",
    "dbt",
    "workspace",
    "forge",
    "runlog",
    "agent::command",
    "agent::llm",
    "agent::runner",
    "session::driver",
    "session::sink",
];

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_module_graph_has_no_cycles_and_the_core_stays_pure() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    println!("module graph (node -> what it imports):\n{}", show(&graph));

    for node in PURE.iter().chain(IO) {
        assert!(
            graph.contains_key(*node),
            "{node} is not a module any more: update PURE or IO in this test"
        );
    }
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "the module graph has cycles:\n{}",
        cycles.join("\n")
    );
    assert_eq!(
        graph["domain"],
        BTreeSet::new(),
        "domain must import nothing from the crate"
    );
    let mut impure = vec![];
    for node in PURE {
        for to in &graph[*node] {
            if !PURE.contains(&to.as_str()) {
                let what = if IO.contains(&to.as_str()) {
                    "an IO module"
                } else {
                    "not a pure module"
                };
                impure.push(format!("{node} imports {to} ({what})"));
            }
        }
    }
    assert!(
        impure.is_empty(),
        "pure modules import only pure modules:\n{}",
        impure.join("\n")
    );
}

#[test]
fn paths_are_read_from_code_only() {
    let source = r##"
        //! Docs naming crate::docs are not code.
        use crate::{alpha::Thing, beta};
        use super::gamma::{self, X};
        pub use child::Y;
        use std::fmt;
        /* crate::block /* nested crate::inner */ */
        fn f<'a>(x: &'a str) -> char {
            let _ = "crate::in_a_string";
            let _ = r#"crate::in_a_raw "string""#;
            let _ = crate::delta::call();
            '}'
        }
        #[cfg(test)]
        #[allow(dead_code)]
        mod tests {
            use crate::epsilon;
            fn g() { let _ = '{'; }
        }
        #[cfg(test)]
        mod more_tests;
        const Z: [u8; 2] = [1, 2];
        use crate::zeta::Last;
        use crate::{eta::*, beta::B};
        fn h() { child::call(); Plan::Ci; std::fmt::Write; }
    "##;
    let modules: BTreeSet<Vec<String>> = [
        &["alpha"][..],
        &["beta"],
        &["delta"],
        &["zeta"],
        &["eta"],
        &["here"],
        &["here", "gamma"],
        &["here", "there"],
        &["here", "there", "child"],
    ]
    .iter()
    .map(|m| m.iter().map(|s| s.to_string()).collect())
    .collect();
    let (paths, test_only) = read(source, &path(&["here", "there"]));
    let resolved: BTreeSet<Vec<String>> = paths
        .iter()
        .filter_map(|p| absolute(p, &path(&["here", "there"]), &modules))
        .filter_map(|p| module_of(&p, &modules))
        .collect();
    assert_eq!(
        resolved,
        [
            path(&["alpha"]),
            path(&["beta"]),
            path(&["delta"]),
            path(&["zeta"]),
            path(&["eta"]),
            path(&["here", "gamma"]),
            path(&["here", "there", "child"]),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(test_only, [path(&["here", "there", "more_tests"])]);
}

#[test]
fn a_cycle_is_found_and_shown() {
    let graph: Graph = [
        ("a", &["b"][..]),
        ("b", &["c"]),
        ("c", &["a"]),
        ("d", &["a"]),
    ]
    .iter()
    .map(|(n, to)| (n.to_string(), to.iter().map(|t| t.to_string()).collect()))
    .collect();
    assert_eq!(cycles(&graph), ["a -> b -> c -> a"]);
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| s.to_string()).collect()
}

/// The graph between nodes, from the files under `src`.
fn module_graph(src: &Path) -> Graph {
    let mut files = vec![];
    collect_files(src, &mut files);
    let mut sources = vec![];
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let mut segments: Vec<String> = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if segments.last().map(String::as_str) == Some("mod") {
            segments.pop();
        }
        // The binary only calls the library. The crate root only declares
        // modules: it is read for its test-only ones and is no node.
        match segments.as_slice() {
            [f] if f == "main" => continue,
            [f] if f == "lib" => segments.clear(),
            _ => {}
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        sources.push((segments, text));
    }
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|(m, _)| m.clone()).collect();
    let read_all: Vec<_> = sources
        .iter()
        .map(|(module, text)| (module, read(text, module)))
        .collect();
    let test_only: BTreeSet<&Vec<String>> =
        read_all.iter().flat_map(|(_, (_, tests))| tests).collect();
    let mut graph = Graph::new();
    for (module, (paths, _)) in &read_all {
        if module.is_empty() || test_only.iter().any(|t| module.starts_with(t)) {
            continue;
        }
        let from = node(module);
        let edges = graph.entry(from.clone()).or_default();
        let targets = paths
            .iter()
            .filter_map(|p| absolute(p, module, &modules))
            .filter_map(|p| module_of(&p, &modules));
        for target in targets {
            let to = node(&target);
            if to != from {
                edges.insert(to);
            }
        }
    }
    graph
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The node a module belongs to.
fn node(module: &[String]) -> String {
    match module {
        [top, child, ..] if NODES.contains(&format!("{top}::{child}").as_str()) => {
            format!("{top}::{child}")
        }
        [top, ..] => top.clone(),
        [] => "crate".into(),
    }
}

/// The longest prefix of an absolute path that is a module.
fn module_of(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

/// The paths (`a::b`, and each leaf of a `use` tree) a file of module
/// `module` names, as written; and the modules it declares as test-only
/// (`#[cfg(test)] mod x;`).
fn read(text: &str, module: &[String]) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let (tokens, test_only) = without_tests(&tokens(text), module);
    let mut paths = vec![];
    for i in 0..tokens.len() {
        let previous = i.checked_sub(1).map(|p| tokens[p].as_str());
        // `$crate::` is a macro's, and `a::b::c` starts at `a` only.
        let starts_path = !matches!(previous, Some("::" | "$"));
        if starts_path
            && is_ident(&tokens[i])
            && tokens.get(i + 1).map(String::as_str) == Some("::")
        {
            paths.extend(use_tree(&tokens, i));
        }
    }
    (paths, test_only)
}

/// A path (or a `use` tree) from `tokens[start]`, as the paths it names.
fn use_tree(tokens: &[String], start: usize) -> Vec<Vec<String>> {
    fn walk(
        tokens: &[String],
        mut i: usize,
        prefix: Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) -> usize {
        let mut path = prefix;
        loop {
            match tokens.get(i).map(String::as_str) {
                Some("{") => {
                    i += 1;
                    while let Some(t) = tokens.get(i) {
                        match t.as_str() {
                            "}" => return i + 1,
                            "," => i += 1,
                            _ => i = walk(tokens, i, path.clone(), out),
                        }
                    }
                    return i;
                }
                Some(t) if is_ident(t) => {
                    if t != "self" || path.is_empty() {
                        path.push(t.to_string());
                    }
                    i += 1;
                    if tokens.get(i).map(String::as_str) == Some("::") {
                        i += 1;
                        continue;
                    }
                    out.push(path);
                    return i;
                }
                // A glob (`a::{b::*, c}`) ends its path.
                Some("*") => {
                    out.push(path);
                    return i + 1;
                }
                _ => {
                    out.push(path);
                    return i;
                }
            }
        }
    }
    let mut out = vec![];
    walk(tokens, start, vec![], &mut out);
    out
}

/// `path`, written in `module`, made absolute; None when it names no module
/// of the crate (`std::fmt`, `Plan::CiTarget`): a path that starts neither
/// with `crate`, `super` or `self` nor with a child module is not the crate's.
fn absolute(
    path: &[String],
    module: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut rest = path;
    let mut base: Vec<String> = module.to_vec();
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) => {
            let mut child = module.to_vec();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
        }
        None => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The tokens of `tokens` without `#[cfg(test)]` items; and the test-only
/// child modules they declared.
fn without_tests(tokens: &[String], module: &[String]) -> (Vec<String>, Vec<Vec<String>>) {
    const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut kept = vec![];
    let mut test_only = vec![];
    let mut i = 0;
    while i < tokens.len() {
        let at_cfg_test = CFG_TEST
            .iter()
            .enumerate()
            .all(|(k, t)| tokens.get(i + k).map(String::as_str) == Some(*t));
        if !at_cfg_test {
            kept.push(tokens[i].clone());
            i += 1;
            continue;
        }
        i += CFG_TEST.len();
        // Further attributes of the same item.
        while tokens.get(i).map(String::as_str) == Some("#") {
            i = past_closing(tokens, i + 1);
        }
        if let (Some("mod"), Some(name), Some(";")) = (
            tokens.get(i).map(String::as_str),
            tokens.get(i + 1),
            tokens.get(i + 2).map(String::as_str),
        ) {
            let mut child = module.to_vec();
            child.push(name.clone());
            test_only.push(child);
        }
        // The item ends at a `;` or a `{…}` outside brackets.
        let mut depth = 0usize;
        while let Some(t) = tokens.get(i) {
            match t.as_str() {
                "(" | "[" => depth += 1,
                ")" | "]" => depth = depth.saturating_sub(1),
                ";" if depth == 0 => {
                    i += 1;
                    break;
                }
                "{" if depth == 0 => {
                    i = past_closing(tokens, i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    (kept, test_only)
}

/// The index after the bracket that closes the one at `open`.
fn past_closing(tokens: &[String], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// Identifiers, `::` and single punctuation, without comments, strings and
/// character literals.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let after_ident = i > 0 && ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if !after_ident
            && (c == 'r' || (c == 'b' && next == Some('r')))
            && raw_start(&chars, i).is_some()
        {
            let (hashes, body) = raw_start(&chars, i).expect("checked");
            i = body;
            while i < chars.len() {
                if chars[i] == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|h| **h == '#')
                        .count()
                        == hashes
                {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F996}'), or a lifetime.
            match (next, chars.get(i + 2)) {
                (Some('\\'), _) => {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                }
                (Some(_), Some('\'')) => i += 3,
                _ => i += 1,
            }
        } else if ident(c) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && next == Some(':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// For a raw string starting at `i` (`r"`, `r#"`, `br##"`…): its number of
/// `#` and where its body starts.
fn raw_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i + if chars[i] == 'b' { 2 } else { 1 };
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

/// Every cycle, one per strongly connected component, as `a -> b -> a`.
fn cycles(graph: &Graph) -> Vec<String> {
    let mut found = vec![];
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for start in graph.keys() {
        if seen.contains(start.as_str()) {
            continue;
        }
        if let Some(cycle) = cycle_through(graph, start) {
            seen.extend(cycle.iter().copied());
            let mut shown = cycle.clone();
            shown.push(cycle[0]);
            found.push(shown.join(" -> "));
        }
    }
    found
}

/// A shortest cycle through `start`, if any (breadth-first back to it).
fn cycle_through<'a>(graph: &'a Graph, start: &'a str) -> Option<Vec<&'a str>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                let mut cycle = vec![at];
                while let Some(p) = parent.get(cycle[cycle.len() - 1]) {
                    cycle.push(p);
                }
                cycle.reverse();
                return Some(cycle);
            }
            if next != start && !parent.contains_key(next.as_str()) {
                parent.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

/// One line per node: `node -> a, b`.
fn show(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(from, to)| {
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            format!("{from} -> {}", to.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
