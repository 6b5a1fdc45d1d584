//! The import rule of ARCHITECTURE.md, checked on the source: a module imports only from its own
//! layer or the layers below, and no two files outside the emulator import each other, directly
//! or around a loop.
//!
//! Layers, top to bottom:
//!
//! | layer | modules |
//! | --- | --- |
//! | app | the crate root (`App`), `main`, `cli`, `property_tests` |
//! | http | `http` (every handler, the Graph mounts included) |
//! | drivers | `delivery` (the forwarding worker), `sandbox` (the Meta emulator) |
//! | domain | `domain` |
//! | store | `store` |
//! | leaves | `config`, `crypto`, `destination_guard`, `graph`, `telemetry`, `time`, `types`, `vault`, `background` |
//!
//! An import is any path through `crate::`/`$crate::`, `super::`, `self::`, or a child module
//! the file declares. `pub use` of a module's own children (a facade re-exporting what its
//! children define) is not an import for the cycle check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn layer(module: &str) -> Option<(u8, &'static str)> {
    let top = module.split("::").next().unwrap_or("");
    Some(match top {
        "" | "main" | "cli" | "property_tests" => (6, "app"),
        "http" => (5, "http"),
        "delivery" | "sandbox" => (4, "drivers"),
        "domain" => (3, "domain"),
        "store" => (2, "store"),
        "config" | "crypto" | "destination_guard" | "graph" | "telemetry" | "telephony"
        | "time" | "types" | "vault" | "background" => (1, "leaves"),
        _ => return None,
    })
}

struct SourceFile {
    module: String,
    path: PathBuf,
    text: String,
}

fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (doc links name modules without importing them) and
/// without string literals (SQL and messages mention module-like words).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            while i < bytes.len() && !bytes[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if bytes[i] == b'"' && (i == 0 || bytes[i - 1] != b'\'') {
            // A plain or raw string: skip to its end (escapes included).
            let raw_hashes = raw_string_hashes(bytes, i);
            i += 1;
            match raw_hashes {
                Some(hashes) => {
                    let close: Vec<u8> = std::iter::once(b'"')
                        .chain(std::iter::repeat_n(b'#', hashes))
                        .collect();
                    while i < bytes.len() && !bytes[i..].starts_with(&close) {
                        i += 1;
                    }
                    i += close.len();
                }
                None => {
                    while i < bytes.len() && bytes[i] != b'"' {
                        if bytes[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    i += 1;
                }
            }
            out.push_str("\"\"");
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// `Some(n)` when the quote at `quote` opens a raw string `r#…#"` with `n` hashes.
fn raw_string_hashes(bytes: &[u8], quote: usize) -> Option<usize> {
    let mut j = quote;
    let mut hashes = 0;
    while j > 0 && bytes[j - 1] == b'#' {
        hashes += 1;
        j -= 1;
    }
    (j > 0 && bytes[j - 1] == b'r' && (j < 2 || !bytes[j - 2].is_ascii_alphanumeric()))
        .then_some(hashes)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every path that starts at `anchor` (`crate`, `super`, …): `crate::a::b` gives `[a, b]`, and
/// `crate::{a::b, c}` gives `[a, b]` and `[c]`.
fn paths_after(code: &str, anchor: &str) -> Vec<(Vec<String>, bool)> {
    paths_after_at(code, anchor)
        .into_iter()
        .map(|(path, facade, _)| (path, facade))
        .collect()
}

/// [`paths_after`], with the byte offset of each anchor.
fn paths_after_at(code: &str, anchor: &str) -> Vec<(Vec<String>, bool, usize)> {
    let mut found = Vec::new();
    let needle = format!("{anchor}::");
    let bytes = code.as_bytes();
    let mut start = 0;
    while let Some(at) = code[start..].find(&needle) {
        let at = start + at;
        start = at + needle.len();
        // `x_crate::`, or the second `super` of `super::super::` (read with the first).
        if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
            continue;
        }
        let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
        let facade = {
            let line = code[line_start..at].trim_start();
            line.starts_with("pub use") || line.starts_with("pub(crate) use")
        };
        for path in parse_tree(&code[start..]) {
            found.push((path, facade, at));
        }
    }
    found
}

/// The paths of one use-tree: `a::b::C`, `a::{b, c::D}`, stopping at the first non-path byte.
fn parse_tree(rest: &str) -> Vec<Vec<String>> {
    let bytes = rest.as_bytes();
    let mut prefix = Vec::new();
    let mut i = 0;
    loop {
        if i < bytes.len() && bytes[i] == b'{' {
            // Split the group at its top-level commas.
            let mut depth = 0;
            let mut item_start = i + 1;
            let mut out = Vec::new();
            for j in i..bytes.len() {
                match bytes[j] {
                    b'{' => depth += 1,
                    b'}' | b',' if depth == 1 => {
                        for tail in parse_tree(rest[item_start..j].trim()) {
                            let mut path = prefix.clone();
                            path.extend(tail);
                            out.push(path);
                        }
                        item_start = j + 1;
                        if bytes[j] == b'}' {
                            return out;
                        }
                    }
                    b'}' => depth -= 1,
                    _ => {}
                }
            }
            return out;
        }
        let begin = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        if begin == i {
            return vec![prefix];
        }
        prefix.push(rest[begin..i].to_owned());
        if rest[i..].starts_with("::") {
            i += 2;
        } else {
            return vec![prefix];
        }
    }
}

/// Byte ranges of inline module bodies (`mod tests { … }`).
fn inline_modules(code: &str) -> Vec<(usize, usize)> {
    let bytes = code.as_bytes();
    let mut ranges = Vec::new();
    let mut search = 0;
    while let Some(found) = code[search..].find("mod ") {
        let at = search + found;
        search = at + 4;
        if at > 0 && is_ident(bytes[at - 1]) {
            continue;
        }
        let mut i = at + 4;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'{' {
            continue;
        }
        let open = i;
        let mut depth = 0;
        for (j, b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        ranges.push((open, j));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    ranges
}

/// Child modules a file declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`).
fn declared_children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub(crate) mod ")
                .or_else(|| line.strip_prefix("pub mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_owned())
}

fn join(base: &str, tail: &[String]) -> Vec<String> {
    let mut parts: Vec<String> = if base.is_empty() {
        Vec::new()
    } else {
        base.split("::").map(str::to_owned).collect()
    };
    parts.extend(tail.iter().cloned());
    parts
}

/// The longest prefix of `path` that is a module of the crate.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|candidate| modules.contains(candidate))
}

struct Edge {
    from: String,
    to: String,
    facade: bool,
}

fn edges(files: &[SourceFile], modules: &BTreeSet<String>) -> Vec<Edge> {
    let mut out = Vec::new();
    for file in files {
        let code = code_only(&file.text);
        let mut targets: Vec<(Vec<String>, bool)> = Vec::new();
        for (path, facade) in paths_after(&code, "crate") {
            targets.push((path, facade));
        }
        let up = parent(&file.module);
        let inline = inline_modules(&code);
        for (path, facade, at) in paths_after_at(&code, "super") {
            // `super::super::x` counts from the grandparent; inside an inline `mod tests { … }`
            // the first `super` is the file's own module.
            let nesting = inline
                .iter()
                .filter(|(a, b)| (*a..*b).contains(&at))
                .count();
            let mut base = if nesting > 0 {
                file.module.clone()
            } else {
                up.clone()
            };
            let mut path = path.as_slice();
            for _ in 1..nesting {
                if path.first().is_some_and(|p| p == "super") {
                    path = &path[1..];
                }
            }
            while path.first().is_some_and(|p| p == "super") {
                base = parent(&base);
                path = &path[1..];
            }
            targets.push((join(&base, path), facade));
        }
        for (path, facade) in paths_after(&code, "self") {
            targets.push((join(&file.module, &path), facade));
        }
        for child in declared_children(&code) {
            for (path, facade) in paths_after(&code, &child) {
                let mut full = vec![child.clone()];
                full.extend(path);
                targets.push((join(&file.module, &full), facade));
            }
        }
        for (path, facade) in targets {
            if let Some(to) = resolve(&path, modules) {
                if to != file.module {
                    out.push(Edge {
                        from: file.module.clone(),
                        to,
                        facade,
                    });
                }
            }
        }
    }
    out
}

fn sources() -> (Vec<SourceFile>, BTreeSet<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    collect(&src, &mut paths);
    let files: Vec<SourceFile> = paths
        .into_iter()
        .map(|path| SourceFile {
            module: module_of(&src, &path),
            text: std::fs::read_to_string(&path).unwrap(),
            path,
        })
        .collect();
    let modules = files.iter().map(|f| f.module.clone()).collect();
    (files, modules)
}

#[test]
fn every_module_has_a_layer() {
    let (files, _) = sources();
    let unplaced: Vec<String> = files
        .iter()
        .filter(|f| layer(&f.module).is_none())
        .map(|f| f.path.display().to_string())
        .collect();
    assert!(
        unplaced.is_empty(),
        "add these top-level modules to a layer in tests/layering.rs and ARCHITECTURE.md: {unplaced:?}"
    );
}

#[test]
fn imports_never_point_up_the_layers() {
    let (files, modules) = sources();
    let mut upward = BTreeSet::new();
    for edge in edges(&files, &modules) {
        let (Some((from, from_name)), Some((to, to_name))) = (layer(&edge.from), layer(&edge.to))
        else {
            continue;
        };
        if to > from {
            upward.insert(format!(
                "{} ({from_name}) imports {} ({to_name})",
                edge.from, edge.to
            ));
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up the layers (move the shared item down, or the importer up):\n{}",
        upward.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_import_cycles_between_files_outside_the_emulator() {
    let (files, modules) = sources();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for edge in edges(&files, &modules) {
        let descendant = edge.to.starts_with(&format!("{}::", edge.from)) || edge.from.is_empty();
        if edge.facade && descendant {
            continue;
        }
        graph.entry(edge.from).or_default().insert(edge.to);
    }
    let cycles: Vec<Vec<String>> = strongly_connected(&graph)
        .into_iter()
        .filter(|c| c.len() > 1 && !c.iter().all(|m| m.starts_with("sandbox")))
        .collect();
    assert!(
        cycles.is_empty(),
        "files that import each other (directly or around a loop): {cycles:?}"
    );
}

/// Tarjan's algorithm, iterative enough for a crate's worth of modules.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(targets) = s.graph.get(v) {
            for w in targets {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[w].min(s.low[v]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.index[w].min(s.low[v]);
                    s.low.insert(v, low);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.out
}

#[test]
fn the_checker_sees_grouped_and_relative_imports() {
    let code = code_only(
        "use crate::{a::b, c::{d, e::F}};\n// use crate::zzz;\nlet s = \"crate::yyy\";\npub use super::x::Y;\n",
    );
    let crate_paths: Vec<Vec<String>> = paths_after(&code, "crate")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        crate_paths,
        vec![
            strings(&["a", "b"]),
            strings(&["c", "d"]),
            strings(&["c", "e", "F"])
        ]
    );
    let supers = paths_after(&code, "super");
    assert_eq!(supers, vec![(strings(&["x", "Y"]), true)]);
}
