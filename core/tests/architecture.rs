//! The shape of core, checked: no two of its files import each other,
//! directly or in a circle (`use crate::...` and `crate::` paths in code;
//! doc comments and test modules do not count). A circle is where a
//! module stops being a layer and two files become one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src`, by its path relative to `src`.
fn sources(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src");
                let text = std::fs::read_to_string(&path).expect("source readable");
                out.insert(rel.to_string_lossy().replace('\\', "/"), text);
            }
        }
    }
    out
}

/// The code of a file: no comment lines, nothing from `#[cfg(test)] mod`
/// on (test modules are at the end of a file here).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|next| next.contains("mod tests"))
        {
            break;
        }
        if !trimmed.starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The paths after each `crate::` in `code`, a `{...}` group expanded one level.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let mut prefix = Vec::new();
        let mut s = rest;
        loop {
            let end = s.find(|c: char| !ident(c)).unwrap_or(s.len());
            if end == 0 {
                break;
            }
            prefix.push(s[..end].to_owned());
            s = &s[end..];
            match s.strip_prefix("::") {
                Some(more) => s = more,
                None => break,
            }
        }
        if let Some(group) = s.strip_prefix('{') {
            let close = group.find('}').unwrap_or(group.len());
            for item in group[..close].split(',') {
                let item = item.split(" as ").next().unwrap_or("").trim();
                let mut path = prefix.clone();
                // A nested group (`smtp::{Reply}`) counts as its module.
                path.extend(
                    item.split("::")
                        .take_while(|p| p.chars().all(ident))
                        .filter(|p| !p.is_empty() && *p != "self")
                        .map(str::to_owned),
                );
                out.push(path);
            }
        } else {
            out.push(prefix);
        }
    }
    out
}

/// The file that defines the module path `mods` (its longest prefix that
/// is a file).
fn module_file(files: &BTreeMap<String, String>, mods: &[String]) -> Option<String> {
    (1..=mods.len()).rev().find_map(|n| {
        let p = mods[..n].join("/");
        [format!("{p}.rs"), format!("{p}/mod.rs")]
            .into_iter()
            .find(|f| files.contains_key(f))
    })
}

/// Names the crate root re-exports (`pub use module::{A, B};`), mapped to
/// their module, so that `crate::Mailer` counts as an import of `mailer.rs`.
fn root_exports(lib: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for stmt in code(lib).split(';') {
        let Some(used) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let (module, names) = match used.split_once("::{") {
            Some((m, names)) => (m, names.trim_end_matches('}').to_owned()),
            None => match used.rsplit_once("::") {
                Some((m, name)) => (m, name.to_owned()),
                None => continue,
            },
        };
        let module: Vec<String> = module.split("::").map(str::to_owned).collect();
        for name in names.split(',') {
            let name = name.split(" as ").last().unwrap_or("").trim();
            if !name.is_empty() {
                out.insert(name.to_owned(), module.clone());
            }
        }
    }
    out
}

fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(src);
    let exports = root_exports(&files["lib.rs"]);
    let mut graph = BTreeMap::new();
    for (file, text) in &files {
        let mut deps = BTreeSet::new();
        for mut path in crate_paths(&code(text)) {
            if let Some(module) = path.first().and_then(|first| exports.get(first)) {
                path.splice(0..1, module.iter().cloned());
            }
            let mods: Vec<String> = path
                .into_iter()
                .take_while(|p| p.starts_with(|c: char| c.is_ascii_lowercase()))
                .collect();
            if let Some(target) = module_file(&files, &mods)
                && target != *file
                && target != "lib.rs"
            {
                deps.insert(target);
            }
        }
        graph.insert(file.clone(), deps);
    }
    graph
}

/// One circle of imports, if there is any (a depth-first search).
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut circle = stack[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, stack, done) {
                return Some(circle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn core_has_no_import_circle() {
    let graph = import_graph(&src());
    assert!(
        graph.len() > 20,
        "the source walk found {} files",
        graph.len()
    );
    assert!(
        graph["mailer.rs"].iter().any(|d| d.starts_with("settings")),
        "the import scan misses `use crate::settings::...`: {:?}",
        graph["mailer.rs"]
    );
    if let Some(circle) = find_circle(&graph) {
        panic!("an import circle in core: {}", circle.join(" -> "));
    }
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a.rs", &["b.rs"][..]),
        ("b.rs", &["c.rs"][..]),
        ("c.rs", &["a.rs"][..]),
        ("d.rs", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    let circle = find_circle(&graph).expect("a circle");
    assert_eq!(circle.first(), circle.last());
    assert_eq!(circle.len(), 4, "{circle:?}");
    assert_eq!(
        crate_paths(
            "use crate::{error::Error, smtp::{Reply}};\nlet x = crate::mailer::Mailer::new();"
        ),
        [
            vec!["error".to_owned(), "Error".to_owned()],
            vec!["smtp".to_owned()],
            vec!["mailer".to_owned(), "Mailer".to_owned(), "new".to_owned()],
        ]
    );
}

/// Longest a file of core's code may be (a file's own tests go in a
/// `tests.rs` beside it): past it, a file holds more than one thing.
const MAX_FILE_LINES: usize = 800;

#[test]
fn no_file_of_core_is_over_800_lines() {
    let too_long: Vec<String> = sources(&src())
        .into_iter()
        .filter(|(file, _)| !file.ends_with("tests.rs"))
        .map(|(file, text)| (file, text.lines().count()))
        .filter(|(_, lines)| *lines > MAX_FILE_LINES)
        .map(|(file, lines)| format!("{file}: {lines} lines"))
        .collect();
    assert!(
        too_long.is_empty(),
        "split these (a test module can move to a tests.rs beside its file): {too_long:?}"
    );
}
