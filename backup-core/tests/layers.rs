//! The layer table in docs/ARCHITECTURE.md is a test: every `crate::`, `super::` and `self::`
//! path in `backup-core/src` (outside `#[cfg(test)] mod tests`), and every path through a child
//! module (`mysql::MysqlSource` in `source/mod.rs`), must point to a row strictly below the
//! importing module's row, and no file may reach itself through such paths (no cycles, also
//! inside one top-level module such as `storage`). A re-export is followed to the file that
//! defines the item (`crate::storage::Target` is `storage/target.rs`), so a cycle through a
//! `mod.rs` that re-exports is still one; a file using what its own module's `mod.rs` defines (the
//! contract its siblings implement) is not, since that `mod.rs` may use its children.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rows of the table between `<!-- layers:begin -->` and `<!-- layers:end -->`, top first:
/// module name -> row index (0 = top).
fn layer_table(doc: &str) -> BTreeMap<String, usize> {
    let begin = doc.find("<!-- layers:begin -->").expect("layers:begin marker in ARCHITECTURE.md");
    let end = doc.find("<!-- layers:end -->").expect("layers:end marker in ARCHITECTURE.md");
    let mut rows = BTreeMap::new();
    let mut row = 0;
    for line in doc[begin..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | layer | modules | holds |: skip the header and the separator.
        if cells.len() < 3 || cells[1] == "layer" || cells[1].starts_with("---") {
            continue;
        }
        for m in cells[2].split(',') {
            let m = m.trim().trim_matches('`');
            assert!(!m.is_empty(), "empty module in layer row {line}");
            assert!(rows.insert(m.to_string(), row).is_none(), "module {m} is in two layer rows");
        }
        row += 1;
    }
    assert!(row > 3, "the layer table has too few rows: {row}");
    rows
}

/// Every `.rs` file under `dir`, with its module path (`storage::url`, `source`, `lib`).
fn modules(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).expect("under src").with_extension("");
            let mut segs: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if segs.last().is_some_and(|s| s == "mod") {
                segs.pop();
            }
            if segs == ["lib"] {
                segs.clear();
            }
            (segs, p)
        })
        .collect()
}

/// The code of a file without comments and without its trailing `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("//") { "" } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file's code names: `crate::a::b::{c, d::e}` gives `a::b::c` and
/// `a::b::d::e`; `super::x` is resolved against the file's own module path, `self::x` and a bare
/// `x::` (where `x` is a child module of the file's module: a `mod.rs` using its own files, or
/// `lib.rs` its modules) against the module itself.
fn imports(module: &[String], children: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `super` is the parent module: `a` in `a/b.rs` (a::b) and the root in `a/mod.rs` (a).
    let mut parent = module.to_vec();
    parent.pop();
    let mut prefixes = vec![
        ("crate::".to_string(), Vec::new()),
        ("super::".into(), parent),
        ("self::".into(), module.to_vec()),
    ];
    for c in children {
        let mut base = module.to_vec();
        base.push(c.clone());
        prefixes.push((format!("{c}::"), base));
    }
    for (prefix, base) in prefixes {
        let mut rest = code;
        while let Some(i) = rest.find(&prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            // `$crate::`, `foo_crate::`, `r#super::`, the second `super::` of `super::super::`,
            // `crate::x::` for a child `x` are not paths of their own.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '#' || c == ':') {
                continue;
            }
            let mut base = base.clone();
            let mut path = rest;
            while let Some(r) = path.strip_prefix("super::") {
                base.pop();
                path = r;
            }
            expand(&base, path, &mut out);
        }
    }
    out
}

/// What a file re-exports (`pub use`, `pub(crate) use`, `pub(super) use`): name -> the full
/// path it stands for, so that `crate::a::X` is an edge to the file that defines `X`.
fn reexports(module: &[String], children: &[String], code: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for start in ["pub use ", "pub(crate) use ", "pub(super) use "] {
        let mut rest = code;
        while let Some(i) = rest.find(start) {
            rest = &rest[i + start.len()..];
            let stmt = rest.split(';').next().unwrap_or("");
            let mut base = module.to_vec();
            let mut tree = stmt.trim();
            if let Some(t) = tree.strip_prefix("crate::") {
                base.clear();
                tree = t;
            } else if let Some(t) = tree.strip_prefix("self::") {
                tree = t;
            } else {
                let mut up = false;
                while let Some(t) = tree.strip_prefix("super::") {
                    base.pop();
                    tree = t;
                    up = true;
                }
                let first: String = tree.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !up && !children.contains(&first) {
                    continue; // another crate's item
                }
            }
            use_tree(&base, tree, &mut out);
        }
    }
    out
}

/// Reads a use tree (`a::{b as c, d::e}`) into name -> full path.
fn use_tree(base: &[String], s: &str, out: &mut BTreeMap<String, Vec<String>>) {
    let mut path = base.to_vec();
    let mut s = s.trim();
    loop {
        if let Some(group) = s.strip_prefix('{') {
            for item in group_items(group) {
                if item == "self" {
                    if let Some(last) = path.last() {
                        out.insert(last.clone(), path.clone());
                    }
                } else if !item.is_empty() {
                    use_tree(&path, item, out);
                }
            }
            return;
        }
        let ident: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if ident.is_empty() {
            return; // `*`: a glob names nothing by itself
        }
        path.push(ident.clone());
        s = &s[ident.len()..];
        match s.strip_prefix("::") {
            Some(r) => s = r,
            None => {
                let alias = s.trim().strip_prefix("as ").map(|a| a.trim().to_string());
                out.insert(alias.unwrap_or(ident), path);
                return;
            }
        }
    }
}

/// The top-level items of a `{...}` group (`group` starts after its `{`), trimmed, up to its `}`.
fn group_items(group: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (1, 0, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                items.push(group[start..i].trim());
                start = i + 1;
                if c == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    items
}

/// Reads one path (maybe with a `{...}` group) at the start of `s`, appending full paths to `out`.
fn expand(base: &[String], s: &str, out: &mut Vec<Vec<String>>) {
    let mut path = base.to_vec();
    let mut s = s;
    loop {
        if let Some(group) = s.strip_prefix('{') {
            for item in group_items(group) {
                if item == "self" {
                    out.push(path.clone());
                } else if !item.is_empty() {
                    expand(&path, item, out);
                }
            }
            return;
        }
        let ident: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if ident.is_empty() {
            break;
        }
        path.push(ident.clone());
        s = &s[ident.len()..];
        match s.strip_prefix("::") {
            Some(r) => s = r,
            None => break,
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// The longest prefix of `path` that is a module file (so `storage::url::RepoUrl` is
/// `storage::url`); an item re-exported at the root (`crate::Context`) is the facade.
fn owner(path: &[String], known: &BTreeSet<Vec<String>>) -> Vec<String> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| known.contains(p)).unwrap_or_default()
}

/// The module that defines what `path` names: its owner, followed through the owner's
/// re-exports (`crate::storage::Target` is `storage::target`). An item of the facade stays the
/// facade's: the `pub use` list is the public API, not a way round the table.
fn definer(
    path: &[String],
    known: &BTreeSet<Vec<String>>,
    reexported: &BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
) -> Vec<String> {
    let mut path = path.to_vec();
    for _ in 0..16 {
        let o = owner(&path, known);
        let next = (!o.is_empty())
            .then(|| path.get(o.len()))
            .flatten()
            .and_then(|name| reexported.get(&o)?.get(name));
        match next {
            Some(target) => path = target.iter().chain(&path[o.len() + 1..]).cloned().collect(),
            None => return o,
        }
    }
    owner(&path, known)
}

fn top(m: &[String]) -> String {
    m.first().cloned().unwrap_or_else(|| "lib".into())
}

/// Edges that break the table: (from file, to module, why).
fn violations(doc: &str, src: &Path) -> Vec<String> {
    let table = layer_table(doc);
    let mods = modules(src);
    let known: BTreeSet<Vec<String>> = mods.iter().map(|(m, _)| m.clone()).collect();
    // The table's note lists the cycles known and accepted
    // (`allowed cycle: `a::b` <-> `a::c``): the edge from the second back to the first is skipped.
    let mut allowed: BTreeSet<(Vec<String>, Vec<String>)> = BTreeSet::new();
    for line in doc.lines().filter_map(|l| l.trim_start_matches("- ").strip_prefix("allowed cycle: ")) {
        // The first two `code` spans of the line are the two ends.
        let ends: Vec<Vec<String>> = line
            .split('`')
            .skip(1)
            .step_by(2)
            .take(2)
            .map(|m| m.split("::").map(str::to_string).collect())
            .collect();
        if let [a, b] = &ends[..] {
            allowed.insert((b.clone(), a.clone()));
        }
    }
    let children = |m: &Vec<String>| -> Vec<String> {
        known
            .iter()
            .filter(|k| k.len() == m.len() + 1 && k.starts_with(m))
            .map(|k| k[m.len()].clone())
            .collect()
    };
    let code: BTreeMap<Vec<String>, String> = mods
        .iter()
        .map(|(m, f)| (m.clone(), code_of(&std::fs::read_to_string(f).expect("read source"))))
        .collect();
    let reexported: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> =
        code.iter().map(|(m, c)| (m.clone(), reexports(m, &children(m), c))).collect();
    let mut bad = Vec::new();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, file) in &mods {
        let from = top(m);
        let Some(&from_row) = table.get(&from) else {
            bad.push(format!("{}: module `{from}` is not in the layer table", file.display()));
            continue;
        };
        for path in imports(m, &children(m), &code[m]) {
            // The module the path names and the one that defines the item: both must be allowed.
            let named = owner(&path, &known);
            let to_mod = definer(&path, &known, &reexported);
            if allowed.contains(&(m.clone(), to_mod.clone())) {
                continue;
            }
            // A file may use what its own module's (or an ancestor's) `mod.rs` defines, the
            // contract its siblings implement (`source::Source`), while that `mod.rs` uses its
            // children (`open_source` picks an engine): that is the shape of a module, not a
            // cycle. Every other edge between files counts, re-exports followed to the file that
            // defines the item, so a cycle through a `mod.rs` hub is still one.
            let ancestor = to_mod.len() < m.len() && m.starts_with(&to_mod);
            if to_mod != *m && !ancestor {
                graph.entry(m.clone()).or_default().insert(to_mod.clone());
            }
            for to_mod in [named, to_mod] {
                let to = top(&to_mod);
                if to == from {
                    continue;
                }
                match table.get(&to) {
                    None => {
                        bad.push(format!("{}: uses `{to}`, which is not in the layer table", file.display()))
                    }
                    Some(&to_row) if to_row <= from_row => bad.push(format!(
                        "{}: `{from}` uses `crate::{}`, but `{to}` is not in a layer below `{from}`",
                        file.display(),
                        path.join("::")
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    bad.dedup();
    // Cycles between files (inside one top-level module too).
    fn visit(
        n: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
        bad: &mut Vec<String>,
    ) {
        match state.get(n) {
            Some(2) => return,
            Some(1) => {
                let i = stack.iter().position(|s| s == n).unwrap_or(0);
                let cycle: Vec<String> = stack[i..]
                    .iter()
                    .chain([n])
                    .map(|m| if m.is_empty() { "lib".into() } else { m.join("::") })
                    .collect();
                bad.push(format!("import cycle: {}", cycle.join(" -> ")));
                return;
            }
            _ => {}
        }
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for next in g.get(n).into_iter().flatten() {
            visit(next, g, state, stack, bad);
        }
        stack.pop();
        state.insert(n.clone(), 2);
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        visit(n, &graph, &mut state, &mut Vec::new(), &mut bad);
    }
    bad
}

#[test]
fn imports_follow_the_layer_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc =
        std::fs::read_to_string(root.join("../docs/ARCHITECTURE.md")).expect("read docs/ARCHITECTURE.md");
    let bad = violations(&doc, &root.join("src"));
    assert!(
        bad.is_empty(),
        "imports that break the layer table in docs/ARCHITECTURE.md:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_checker_sees_upward_imports_and_cycles() {
    // A small crate of its own: `b` (lower) uses `a` (upper), and `x`/`y` use each other; `h::q`
    // uses `h::p` through `h`'s re-export while `h::p` uses `h::q`; `t::k`'s `mod.rs` uses its
    // child `r`, which uses `t::s`, which uses `t::k` (a cycle through a parent's own code); `e`
    // is a module whose files implement what its `mod.rs` defines and which picks among them
    // (not a cycle).
    let dir = std::env::temp_dir().join(format!("dbbackup-layers-{}", std::process::id()));
    let src = dir.join("src");
    for d in ["x", "h", "t/k", "e"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod x;\nmod h;\nmod t;\nmod e;\npub use e::pick;\n"),
        ("a.rs", "use crate::b::thing;\n"),
        ("b.rs", "// crate::a in a comment is fine\nuse crate::{a::up, x};\n"),
        ("x/mod.rs", "mod y;\n"),
        ("x/y.rs", "use super::z;\n"),
        ("x/z.rs", "use crate::x::y::w;\n"),
        ("h/mod.rs", "mod p;\nmod q;\npub use p::P;\n"),
        ("h/p.rs", "use super::q::Q;\n"),
        ("h/q.rs", "use super::P;\n"),
        ("t/mod.rs", "mod k;\nmod s;\n"),
        ("t/k/mod.rs", "mod r;\npub fn f() { self::r::g() }\n"),
        ("t/k/r.rs", "use crate::t::s::h;\n"),
        ("t/s.rs", "use super::k::f;\n"),
        ("e/mod.rs", "mod i;\npub(crate) use i::I;\npub trait T {}\npub fn pick() -> I { i::make() }\n"),
        ("e/i.rs", "use super::T;\nuse crate::e::T as U;\n"),
    ];
    for (f, text) in files {
        std::fs::write(src.join(f), text).unwrap();
    }
    let doc = "<!-- layers:begin -->\n| layer | modules | holds |\n|---|---|---|\n| f | `lib` | |\n| u | `a` | |\n\
               | l | `b` | |\n| x | `x`, `h`, `t` | |\n| e | `e` | |\n<!-- layers:end -->\n";
    let bad = violations(doc, &src);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(bad.iter().any(|b| b.contains("`b` uses `crate::a::up`")), "{bad:?}");
    assert!(
        bad.iter().any(|b| b.contains("import cycle") && b.contains("x::y") && b.contains("x::z")),
        "{bad:?}"
    );
    assert!(bad.contains(&"import cycle: a -> b -> a".to_string()), "{bad:?}");
    assert!(bad.contains(&"import cycle: h::p -> h::q -> h::p".to_string()), "{bad:?}");
    assert!(bad.contains(&"import cycle: t::k -> t::k::r -> t::s -> t::k".to_string()), "{bad:?}");
    assert_eq!(bad.len(), 5, "{bad:?}");
}
