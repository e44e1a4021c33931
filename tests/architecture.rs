//! The module graph (ARCHITECTURE.md) has no cycles: between the crate's top-level modules, and
//! between the modules of the proxy (the pipeline knows no profile). Read from the sources:
//! an edge is a `crate::a::...` path in a module's non-test code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it names, at the level under `prefix` (empty: top level).
type Graph = BTreeMap<String, BTreeSet<String>>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The graph of the modules directly under `prefix` (e.g. `["proxy"]`).
fn graph(prefix: &[&str]) -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root.join(prefix.join("/")), &mut files);
    let mut graph = Graph::new();
    let needle = format!(
        "crate::{}",
        prefix.iter().map(|p| format!("{p}::")).collect::<String>()
    );
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().with_extension("");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let Some(module) = parts.get(prefix.len()) else {
            continue;
        };
        if prefix.is_empty() && (module == "lib" || module == "main") {
            continue;
        }
        if module == "mod" {
            continue; // the parent's own file
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (at, _) in code.match_indices(&needle) {
            let rest = &code[at + needle.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() && name != *module {
                graph.entry(module.clone()).or_default().insert(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the path of modules around it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

#[test]
fn the_top_level_modules_import_each_other_without_cycles() {
    let graph = graph(&[]);
    assert!(
        graph.contains_key("proxy") && graph.contains_key("store"),
        "{graph:?}"
    );
    assert_eq!(cycle(&graph), None, "{graph:#?}");
}

#[test]
fn the_proxy_modules_import_each_other_without_cycles() {
    let graph = graph(&["proxy"]);
    assert!(
        graph
            .get("handler")
            .is_some_and(|uses| uses.contains("kubo")),
        "{graph:?}"
    );
    assert_eq!(cycle(&graph), None, "{graph:#?}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph.entry(a.into()).or_default().insert(b.into());
    }
    let found = cycle(&graph).unwrap();
    assert_eq!(found.first(), found.last());
    assert_eq!(found.len(), 4);
    graph.get_mut("c").unwrap().remove("a");
    assert_eq!(cycle(&graph), None);
}
