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
            for name in names(&code[at + needle.len()..]) {
                if name != *module {
                    graph.entry(module.clone()).or_default().insert(name);
                }
            }
        }
    }
    graph
}

/// The module names a path continues with: `a::...` names `a`; a group `{a, b::c, self}`
/// names `a` and `b`.
fn names(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)]
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect();
    };
    let (mut depth, mut items, mut start) = (0, Vec::new(), 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(ident)
        .filter(|n| !n.is_empty() && n != "self")
        .collect()
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
    // The pipeline knows the phases, not the profiles that implement them.
    let handler = &graph["handler"];
    assert!(handler.contains("phases"), "{graph:?}");
    for profile in ["kubo", "llm"] {
        assert!(
            !handler.contains(profile),
            "the pipeline names {profile}: {handler:?}"
        );
        assert!(graph[profile].contains("phases"), "{graph:?}");
    }
    assert_eq!(cycle(&graph), None, "{graph:#?}");
}

#[test]
fn grouped_imports_name_each_module() {
    assert_eq!(names("handler::{self, ProxyState};"), ["handler"]);
    assert_eq!(
        names("{ProxyBody, client_ip, kubo::{args, Ctx}, path};"),
        ["client_ip", "kubo", "path"]
    );
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
