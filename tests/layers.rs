//! The module layout is an architecture, checked: every path a source file
//! names (`use crate::...`, `super::...`, `crate::a::b::f(...)` in code) is
//! resolved to the file that defines it, and
//!
//! - no file reaches a layer above its own (`src/lib.rs` lists the layers:
//!   a renderer never reaches the FUSE code, `source/` never `container/`);
//! - no two files reach each other, directly or through others.
//!
//! Comments and the `#[cfg(test)] mod tests` at the end of a file are left
//! out: a test module may use what it tests from anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first; a module may use its own layer and those below.
const LAYERS: [&str; 7] = [
    "source",
    "render",
    "container",
    "integrate",
    "serve",
    "lifecycle",
    "cli",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` are `[a, b]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).expect("below src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    if last != "mod.rs" && last != "lib.rs" {
        parts.push(last.trim_end_matches(".rs").to_owned());
    }
    parts
}

/// The file defining module `m`, if there is one.
fn file_of(m: &[String]) -> Option<PathBuf> {
    if m.is_empty() {
        return Some(src().join("lib.rs"));
    }
    let base = m.iter().fold(src(), |p, s| p.join(s));
    let flat = base.with_extension("rs");
    if flat.is_file() {
        return Some(flat);
    }
    let nested = base.join("mod.rs");
    nested.is_file().then_some(nested)
}

/// The code of a file without comments and without its trailing test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            // Not inside a string literal holding "//" (URLs in messages).
            Some(i) if l[..i].matches('"').count() % 2 == 0 => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').expect("balanced braces")];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.to_owned(),
            _ => format!("{prefix}::{p}"),
        })
        .collect()
}

/// The paths a file's code names, as written.
fn named_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` trees, taken out of the code as they are read.
    let mut others = String::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        others.push_str(&rest[..i]);
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            others.push_str("use ");
            rest = &rest[i + 4..];
            continue;
        }
        rest = &rest[i + 4..];
        match rest.find(';') {
            Some(end) => {
                out.extend(expand(&rest[..end]));
                rest = &rest[end + 1..];
            }
            None => break,
        }
    }
    others.push_str(rest);
    // Paths used inline: `crate::a::b(...)`, `super::x::Y`.
    for start in ["crate::", "super::", "self::"] {
        let mut rest = others.as_str();
        while let Some(i) = rest.find(start) {
            let ok_before = rest[..i]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if ok_before {
                out.push(tail[..end].trim_end_matches(':').to_owned());
            }
            rest = &rest[i + start.len()..];
        }
    }
    out
}

/// The file a path names, seen from module `here`, or None for paths
/// outside the crate (std, other crates, local items).
fn resolve(here: &[String], path: &str) -> Option<PathBuf> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let (mut m, rest): (Vec<String>, &[&str]) = match segs.first()? {
        &"crate" => (Vec::new(), &segs[1..]),
        &"self" => (here.to_vec(), &segs[1..]),
        &"super" => {
            let mut m = here.to_vec();
            let mut i = 0;
            while segs.get(i) == Some(&"super") {
                m.pop();
                i += 1;
            }
            (m, &segs[i..])
        }
        // A child module named without `self::` (2018 paths).
        first => {
            let mut child = here.to_vec();
            child.push((*first).to_owned());
            file_of(&child)?;
            (here.to_vec(), &segs[..])
        }
    };
    // The longest prefix that is a module file defines the item.
    for s in rest {
        let mut next = m.clone();
        next.push((*s).to_owned());
        if file_of(&next).is_none() {
            break;
        }
        m = next;
    }
    file_of(&m)
}

fn layer(m: &[String]) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| m.first().map(String::as_str) == Some(*l))
}

/// file -> files it names.
fn graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut g = BTreeMap::new();
    for f in files {
        if f.ends_with("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        let here = module_of(&f);
        let deps: BTreeSet<PathBuf> = named_paths(&code(&text))
            .iter()
            .filter_map(|p| resolve(&here, p))
            .filter(|d| *d != f)
            .collect();
        g.insert(f, deps);
    }
    g
}

fn short(p: &Path) -> String {
    p.strip_prefix(src()).unwrap_or(p).display().to_string()
}

#[test]
fn the_parser_finds_what_files_name() {
    let here = vec!["container".to_owned(), "view".to_owned()];
    let paths = named_paths(&code(
        "use super::caller::{self, Caller};\nuse crate::source::{cgroup::Dir, host};\n\
         // use crate::cli::args;\nfn f() { crate::render::stat::render(); }\n",
    ));
    let files: BTreeSet<String> = paths
        .iter()
        .filter_map(|p| resolve(&here, p))
        .map(|f| short(&f))
        .collect();
    // cgroup::Dir is re-exported by cgroup/mod.rs: the path names mod.rs.
    // The commented-out line names nothing.
    let want: BTreeSet<String> = [
        "container/caller.rs",
        "source/cgroup/mod.rs",
        "source/host.rs",
        "render/stat.rs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(files, want);
    assert!(graph().len() > 20, "the source tree was found");
}

#[test]
fn no_file_reaches_a_higher_layer() {
    let mut bad = Vec::new();
    for (f, deps) in graph() {
        let from = module_of(&f);
        let Some(lf) = layer(&from) else { continue };
        for d in deps {
            if let Some(ld) = layer(&module_of(&d)) {
                if ld > lf {
                    bad.push(format!(
                        "{} ({}) uses {} ({})",
                        short(&f),
                        LAYERS[lf],
                        short(&d),
                        LAYERS[ld]
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "arrows pointing up:\n{}", bad.join("\n"));
}

#[test]
fn no_import_cycles_between_files() {
    let g = graph();
    // Depth-first search; a back edge closes a cycle.
    fn visit(
        n: &PathBuf,
        g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        stack: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(i) = stack.iter().position(|s| s == n) {
            let c: Vec<String> = stack[i..].iter().chain([n]).map(|p| short(p)).collect();
            cycles.push(c.join(" -> "));
            return;
        }
        stack.push(n.clone());
        for d in g.get(n).into_iter().flatten() {
            visit(d, g, stack, done, cycles);
        }
        stack.pop();
        done.insert(n.clone());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for n in g.keys() {
        visit(n, &g, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}
