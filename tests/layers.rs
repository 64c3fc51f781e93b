//! The dependency check: no source file imports a file that imports it back (directly or through
//! others), and the folders import one way only, down the layer table below
//! (contract ← silentauth ← verify ← worker, kafka, telemetry ← tools).
//!
//! It reads the `use` lines and the `crate::…` paths of every crate of the workspace (tests of a
//! file, after its `#[cfg(test)]` module, are left out) and resolves each imported name to the
//! file that defines it, following `pub use` re-exports; a re-export is itself an import of the
//! file it re-exports from. Rerun it alone with `cargo test --test layers`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: a module may import from its own layer (if no cycle results) and
/// from layers below, never from a layer above. Every top-level module must be listed.
const LAYERS: &[&[&str]] = &[
    &["simulator"],
    &["clock", "secret", "spans"],
    &["contract", "config"],
    &["silentauth", "test_faults"],
    &["network_signals", "verify"],
    &["idempotency", "kafka", "telemetry"],
    &["worker"],
    &["replay", "doctor", "fuzzing", "harness"],
    &["lib"],
    &["bin"],
];

/// The crates of the workspace: (name as imported, root file). The simulator is a crate of its
/// own and must import nothing of the worker (Cargo enforces that; the cycle check still reads it).
fn crates(root: &Path) -> Vec<(String, PathBuf)> {
    let mut crates = vec![
        ("silentauth_worker".to_owned(), root.join("src/lib.rs")),
        ("bin".to_owned(), root.join("src/main.rs")),
    ];
    let sim = root.join("crates/simulator/src/lib.rs");
    if sim.exists() {
        crates.push(("silentauth_simulator".to_owned(), sim));
    }
    crates
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let graph = Graph::load(&crates(Path::new(env!("CARGO_MANIFEST_DIR"))));
    assert!(
        graph.modules.len() > 50,
        "read only {} files",
        graph.modules.len()
    );
    let cycles = graph.file_cycles();
    assert!(
        cycles.is_empty(),
        "import cycles between files:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn folders_import_down_the_layer_table_only() {
    let graph = Graph::load(&crates(Path::new(env!("CARGO_MANIFEST_DIR"))));
    let wrong = graph.layer_violations();
    assert!(
        wrong.is_empty(),
        "imports against the layer table:\n{}",
        wrong.join("\n")
    );
}

/// Files allowed past [`MAX_CODE_LINES`], each with the reason the README repeats.
const LONG_FILES: &[(&str, &str)] = &[];

/// About 400 lines of code: 420 (blank and comment lines and the test module not counted).
const MAX_CODE_LINES: usize = 420;

#[test]
fn no_source_file_passes_about_400_lines_of_code() {
    let graph = Graph::load(&crates(Path::new(env!("CARGO_MANIFEST_DIR"))));
    let mut long = Vec::new();
    for m in &graph.modules {
        let code = match test_module(&m.text) {
            Some(at) => &m.text[..at],
            None => &m.text[..],
        };
        let lines = code
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .count();
        if lines > MAX_CODE_LINES && !LONG_FILES.iter().any(|(f, _)| *f == m.file) {
            long.push(format!("  {} ({lines} lines of code)", m.file));
        }
    }
    assert!(
        long.is_empty(),
        "files past {MAX_CODE_LINES} lines of code:\n{}",
        long.join("\n")
    );
}

/// The longest a function of the product may be, signature to closing brace.
const MAX_FN_LINES: usize = 80;

#[test]
fn no_function_in_src_passes_80_lines() {
    let graph = Graph::load(&crates(Path::new(env!("CARGO_MANIFEST_DIR"))));
    let long: Vec<String> = graph
        .modules
        .iter()
        .filter(|m| m.file.starts_with("src/"))
        .flat_map(|m| {
            long_functions(&m.text)
                .into_iter()
                .map(move |(name, line, n)| format!("  {}:{line} {name} ({n} lines)", m.file))
        })
        .collect();
    assert!(
        long.is_empty(),
        "functions past {MAX_FN_LINES} lines (split them into named phases):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_check_finds_a_long_function() {
    let body = "    let x = 1;\n".repeat(MAX_FN_LINES - 1);
    let text = format!(
        "/// {{ in a comment\nfn short(a: [u8; 4]) -> &'static str {{\n    \"}}\"\n}}\n\
         pub(crate) async fn long<T>(t: T) where T: Copy {{\n{body}}}\n\
         fn exact() {{\n{}}}\n\
         trait T {{ fn declared(&self); }}\n\
         #[cfg(test)]\nmod tests {{\n    fn in_tests() {{\n{body}    }}\n}}\n",
        "    let y = '{';\n".repeat(MAX_FN_LINES - 2)
    );
    assert_eq!(
        long_functions(&text),
        [("long".to_owned(), 5, MAX_FN_LINES + 1)]
    );
}

/// The functions of `text` (its test module left out) longer than [`MAX_FN_LINES`]: name, line
/// of the `fn`, lines from the `fn` to the closing brace.
fn long_functions(text: &str) -> Vec<(String, usize, usize)> {
    let code = blank(text);
    let code = match test_module(&code) {
        Some(at) => &code[..at],
        None => &code[..],
    };
    let b = code.as_bytes();
    let line_of = |i: usize| code[..i].matches('\n').count() + 1;
    let mut long = Vec::new();
    for (at, _) in code.match_indices("fn ") {
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
            continue;
        }
        let name: String = code[at + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body: the first `{` outside parentheses and brackets, unless a `;` ends the
        // declaration first.
        let (mut depth, mut open) = (0i32, None);
        for (i, &c) in b.iter().enumerate().skip(at) {
            match c {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    open = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0;
        let close = b[open..].iter().position(|&c| {
            braces += match c {
                b'{' => 1,
                b'}' => -1,
                _ => 0,
            };
            braces == 0
        });
        let Some(close) = close else { continue };
        let lines = line_of(open + close) - line_of(at) + 1;
        if lines > MAX_FN_LINES {
            long.push((name, line_of(at), lines));
        }
    }
    long
}

/// `text` with its comments and the contents of its string and character literals blanked,
/// newlines kept (so line numbers hold): only the code's own braces are left.
fn blank(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blanked = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let ident = |i: usize| i < c.len() && (c[i].is_alphanumeric() || c[i] == '_');
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                let pair = (c[i], c.get(i + 1).copied());
                if pair == ('/', Some('*')) || pair == ('*', Some('/')) {
                    depth += if pair.0 == '/' { 1 } else { -1 };
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blanked(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && matches!(next, Some('#' | '"'))
            && (i == 0 || !ident(i - 1) || (c[i - 1] == 'b' && (i < 2 || !ident(i - 2))))
        {
            // A raw string: r"…", r#"…"#, br"…".
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let end: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            out.push('"');
            i += 2 + hashes;
            while i < c.len() && !c[i..].starts_with(&end.chars().collect::<Vec<_>>()) {
                out.push(blanked(c[i]));
                i += 1;
            }
            out.push('"');
            i += end.len();
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                let skip = if c[i] == '\\' { 2 } else { 1 };
                for &ch in &c[i..(i + skip).min(c.len())] {
                    out.push(blanked(ch));
                }
                i += skip;
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A character literal (not a lifetime).
            out.push('\'');
            i += 1;
            while i < c.len() && c[i] != '\'' {
                let skip = if c[i] == '\\' { 2 } else { 1 };
                out.push_str(&" ".repeat(skip));
                i += skip;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn the_check_finds_a_cycle_through_a_re_export() {
    // a.rs imports B from b.rs; b.rs imports A through the crate root's re-export of a::A.
    let graph = Graph::from_sources(
        "silentauth_worker",
        &[
            ("src/lib.rs", "pub mod a;\npub mod b;\npub use a::A;\n"),
            ("src/a.rs", "use crate::b::B;\npub struct A(B);\n"),
            (
                "src/b.rs",
                "pub struct B;\nfn f() -> crate::A { todo!() }\n",
            ),
        ],
    );
    let cycles = graph.file_cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].contains("src/a.rs") && cycles[0].contains("src/b.rs"));
}

#[test]
fn the_check_finds_an_import_up_the_layers() {
    let graph = Graph::from_sources(
        "silentauth_worker",
        &[
            ("src/lib.rs", "pub mod contract;\npub mod worker;\n"),
            ("src/contract.rs", "use crate::worker::Worker;\n"),
            ("src/worker.rs", "pub struct Worker;\n"),
        ],
    );
    let wrong = graph.layer_violations();
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(wrong[0].contains("contract") && wrong[0].contains("worker"));
}

/// One source file: its crate, module path, the names it defines and the paths it imports.
struct Module {
    krate: String,
    path: Vec<String>,
    file: String,
    /// The file as read.
    text: String,
    children: BTreeSet<String>,
    defs: BTreeSet<String>,
    /// (imported path, the name it is known by here or `*`).
    uses: Vec<(Vec<String>, String)>,
}

struct Graph {
    modules: Vec<Module>,
}

impl Graph {
    fn load(crates: &[(String, PathBuf)]) -> Graph {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut modules = Vec::new();
        for (name, file) in crates {
            let mut read = |p: &Path| std::fs::read_to_string(p).ok();
            collect(name, file, Vec::new(), root, &mut read, &mut modules);
        }
        Graph { modules }
    }

    fn from_sources(krate: &str, files: &[(&str, &str)]) -> Graph {
        let map: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        let mut read = |p: &Path| map.get(p).cloned();
        let mut modules = Vec::new();
        collect(
            krate,
            Path::new(files[0].0),
            Vec::new(),
            Path::new(""),
            &mut read,
            &mut modules,
        );
        Graph { modules }
    }

    fn find(&self, krate: &str, path: &[String]) -> Option<usize> {
        self.modules
            .iter()
            .position(|m| m.krate == krate && m.path == path)
    }

    /// The file that defines what `segments` names, seen from module `from`.
    fn resolve(&self, from: usize, segments: &[String], depth: usize) -> Option<usize> {
        let m = &self.modules[from];
        let (mut at, rest) = match segments.first().map(String::as_str) {
            Some("crate") => (self.find(&m.krate, &[])?, &segments[1..]),
            Some("self") => (from, &segments[1..]),
            Some("super") => {
                let mut path = m.path.clone();
                let mut rest = segments;
                while rest.first().map(String::as_str) == Some("super") {
                    path.pop();
                    rest = &rest[1..];
                }
                (self.find(&m.krate, &path)?, rest)
            }
            Some(first) if m.children.contains(first) => (from, segments),
            Some(first) => (self.find(first, &[])?, &segments[1..]),
            None => return None,
        };
        let mut rest = rest;
        while let Some(seg) = rest.first() {
            if !self.modules[at].children.contains(seg) {
                break;
            }
            let mut path = self.modules[at].path.clone();
            path.push(seg.clone());
            at = self.find(&self.modules[at].krate, &path)?;
            rest = &rest[1..];
        }
        let Some(name) = rest.first() else {
            return Some(at);
        };
        if self.modules[at].defs.contains(name) || depth > 8 {
            return Some(at);
        }
        for (path, alias) in &self.modules[at].uses {
            if alias == name {
                let mut full = path.clone();
                full.extend(rest[1..].iter().cloned());
                return self.resolve(at, &full, depth + 1).or(Some(at));
            }
        }
        Some(at)
    }

    fn edges(&self) -> BTreeSet<(usize, usize)> {
        let mut edges = BTreeSet::new();
        for (i, m) in self.modules.iter().enumerate() {
            for (path, _) in &m.uses {
                if let Some(j) = self.resolve(i, path, 0) {
                    if i != j {
                        edges.insert((i, j));
                    }
                }
            }
        }
        edges
    }

    fn file_cycles(&self) -> Vec<String> {
        let edges = self.edges();
        strongly_connected(self.modules.len(), &edges)
            .into_iter()
            .map(|c| {
                let files: Vec<&str> = c.iter().map(|&i| self.modules[i].file.as_str()).collect();
                let ties: Vec<String> = edges
                    .iter()
                    .filter(|(a, b)| c.contains(a) && c.contains(b))
                    .map(|(a, b)| format!("{} -> {}", self.modules[*a].file, self.modules[*b].file))
                    .collect();
                format!("  {} ({})", files.join(", "), ties.join("; "))
            })
            .collect()
    }

    fn layer_violations(&self) -> Vec<String> {
        let mut wrong = BTreeSet::new();
        for (a, b) in self.edges() {
            let (ma, mb) = (&self.modules[a], &self.modules[b]);
            if ma.krate != mb.krate && mb.krate == "silentauth_simulator" {
                continue;
            }
            let (la, lb) = (layer(ma), layer(mb));
            let rank = |l: &str| LAYERS.iter().position(|layer| layer.contains(&l));
            match (rank(&la), rank(&lb)) {
                (Some(ra), Some(rb)) if ra >= rb => {}
                (Some(_), Some(_)) => {
                    wrong.insert(format!("  {la} imports {lb} ({} -> {})", ma.file, mb.file));
                }
                _ => {
                    wrong.insert(format!("  `{la}` or `{lb}` is missing from LAYERS"));
                }
            }
        }
        wrong.into_iter().collect()
    }
}

/// A file's layer: the binary, the simulator crate, or its top-level module in the library.
fn layer(m: &Module) -> String {
    match m.krate.as_str() {
        "silentauth_worker" => m.path.first().cloned().unwrap_or_else(|| "lib".to_owned()),
        "silentauth_simulator" => "simulator".to_owned(),
        _ => "bin".to_owned(),
    }
}

/// Reads one module file and, through its `mod x;` lines, the files of its children.
fn collect(
    krate: &str,
    file: &Path,
    path: Vec<String>,
    root: &Path,
    read: &mut dyn FnMut(&Path) -> Option<String>,
    out: &mut Vec<Module>,
) {
    let Some(text) = read(file) else { return };
    let code = strip(&text);
    let mut children = BTreeSet::new();
    let mut defs = BTreeSet::new();
    let mut uses = Vec::new();
    let mut test_only = false;
    for stmt in statements(&code) {
        if stmt.starts_with("#[cfg(test)]") || stmt.starts_with("#[cfg(all(test") {
            test_only = true;
        }
        let s = strip_attributes(stmt.trim_start());
        let s = s
            .strip_prefix("pub ")
            .or_else(|| s.strip_prefix("pub(crate) "))
            .unwrap_or(s);
        let s = s.strip_prefix("pub(super) ").unwrap_or(s);
        if let Some(rest) = s.strip_prefix("mod ") {
            let name = ident(rest);
            if rest[name.len()..].trim_start().starts_with(';') && !test_only {
                children.insert(name.to_owned());
            }
            defs.insert(name.to_owned());
        } else if let Some(rest) = s.strip_prefix("use ") {
            if !test_only {
                expand(rest.trim_end_matches(';'), &mut Vec::new(), &mut uses);
            }
        }
        test_only = false;
    }
    for word in [
        "struct",
        "enum",
        "fn",
        "trait",
        "const",
        "static",
        "type",
        "union",
        "macro_rules!",
    ] {
        let pattern = format!("{word} ");
        for (i, _) in code.match_indices(&pattern) {
            let before = code[..i].chars().last();
            if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
                defs.insert(ident(&code[i + pattern.len()..]).to_owned());
            }
        }
    }
    let body = without_uses(&code);
    let mut prefixes: Vec<String> = [
        "crate",
        "super",
        "silentauth_worker",
        "silentauth_simulator",
    ]
    .iter()
    .map(|p| format!("{p}::"))
    .collect();
    prefixes.extend(children.iter().map(|c| format!("{c}::")));
    for prefix in &prefixes {
        for (i, _) in body.match_indices(prefix.as_str()) {
            let before = body[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let chain: String = body[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segs: Vec<String> = chain
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            uses.push((segs, String::new()));
        }
    }
    let dir = match file.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs" | "lib.rs" | "main.rs") => file.parent().unwrap_or(root).to_path_buf(),
        _ => file.with_extension(""),
    };
    let shown = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    out.push(Module {
        krate: krate.to_owned(),
        path: path.clone(),
        file: shown,
        text,
        children: children.clone(),
        defs,
        uses,
    });
    for child in children {
        let mut p = path.clone();
        p.push(child.clone());
        let flat = dir.join(format!("{child}.rs"));
        let nested = dir.join(&child).join("mod.rs");
        let f = if read(&flat).is_some() { flat } else { nested };
        collect(krate, &f, p, root, read, out);
    }
}

/// The text without comments, string contents and the `#[cfg(test)] mod tests { … }` block.
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut l = line;
        if let Some(i) = l.find("//") {
            l = &l[..i];
        }
        out.push_str(l);
        out.push('\n');
    }
    let mut clean = String::with_capacity(out.len());
    let mut in_str = false;
    let mut prev = ' ';
    for c in out.chars() {
        if c == '"' && prev != '\\' && prev != '\'' {
            in_str = !in_str;
            clean.push(c);
        } else if !in_str {
            clean.push(c);
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
    }
    match test_module(&clean) {
        Some(at) => clean[..at].to_owned(),
        None => clean,
    }
}

/// Where the inline `#[cfg(test)] mod … { … }` block starts, if the file has one.
fn test_module(code: &str) -> Option<usize> {
    code.match_indices("#[cfg(test)]")
        .map(|(i, _)| i)
        .find(|&i| {
            let rest = code[i + "#[cfg(test)]".len()..].trim_start();
            rest.starts_with("mod ")
                && rest
                    .find('{')
                    .is_some_and(|b| rest.find(';').is_none_or(|s| b < s))
        })
}

/// The code without its `use` statements (their paths are read by [`statements`]).
fn without_uses(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut in_use = false;
    for line in code.lines() {
        let t = strip_attributes(line.trim());
        let t = t
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ");
        if t.trim_start_matches("pub ").starts_with("use ") {
            in_use = true;
        }
        if !in_use {
            out.push_str(line);
        }
        if in_use && line.contains(';') {
            in_use = false;
        }
        out.push('\n');
    }
    out
}

/// The text split into top-level-ish statements: each `use`/`mod` line with what precedes it on
/// attribute lines, up to its `;` or `{`.
fn statements(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut attrs = String::new();
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.starts_with("#[") {
            attrs.push_str(t);
            continue;
        }
        let body = strip_attributes(t);
        let bare = body
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ");
        let bare = bare.trim_start_matches("pub ");
        if bare.starts_with("use ") || bare.starts_with("mod ") {
            let mut stmt = format!("{attrs}{t}");
            while !stmt.contains(';') && !stmt.contains('{')
                || stmt.starts_with("use") && !stmt.contains(';')
            {
                match lines.next() {
                    Some(more) => stmt.push_str(more.trim()),
                    None => break,
                }
            }
            out.push(stmt);
        }
        attrs.clear();
    }
    out
}

fn strip_attributes(mut s: &str) -> &str {
    while let Some(rest) = s.strip_prefix("#[") {
        let Some(end) = rest.find(']') else { break };
        s = rest[end + 1..].trim_start();
    }
    s
}

fn ident(s: &str) -> &str {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !c.is_alphanumeric() && c != '_')
        .unwrap_or(s.len());
    &s[..end]
}

/// Expands a use tree (`a::{b, c::{D, E as F}, *}`) into (path, local name) pairs.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let n = prefix.len();
        prefix.extend(
            head.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], prefix, out);
        prefix.truncate(n);
        return;
    }
    if tree.is_empty() {
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p.trim(), a.trim().to_owned()),
        None => (tree, String::new()),
    };
    let mut full = prefix.clone();
    full.extend(path.split("::").map(str::trim).map(str::to_owned));
    if full.last().map(String::as_str) == Some("self") {
        full.pop();
    }
    let name = if alias.is_empty() {
        full.last().cloned().unwrap_or_default()
    } else {
        alias
    };
    if full.last().map(String::as_str) == Some("*") {
        full.pop();
    }
    out.push((full, name));
}

/// Tarjan's strongly connected components of more than one node.
fn strongly_connected(n: usize, edges: &BTreeSet<(usize, usize)>) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in edges {
        adj[a].push(b);
    }
    struct State {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(v: usize, adj: &[Vec<usize>], s: &mut State) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        for &w in &adj[v] {
            match s.index[w] {
                None => {
                    visit(w, adj, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort_unstable();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(v, &adj, &mut s);
        }
    }
    s.out
}
