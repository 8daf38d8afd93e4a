//! `cargo xtask tidy`: the shape rules the compiler does not check.
//!
//! - **Self-contained docs.** No source file or guide points outside the repository: a user of
//!   hookwire has only this tree, so every contract is written under `docs/`.
//! - **One name, one crate.** No two library crates export a public item of the same name (apart
//!   from each crate's own `Error` and `Result`, and the receiver adapters, which are alternatives
//!   to one another and use the same names on purpose). Two `Outcome`s in one program are a trap.
//! - **Small files.** A non-test source file over [`MAX_LINES`] lines holds more than one concept.
//!
//! The rules run over an in-memory [`Tree`] so the tests below can inject a violation and watch
//! the rule fail; `cargo xtask tidy` (and `cargo xtask ci`) runs them over the working tree.

use std::collections::BTreeMap;
use std::path::Path;

/// Lines a non-test source file may have (counted up to its `#[cfg(test)]` module).
pub(crate) const MAX_LINES: usize = 700;

/// Crates whose public names may repeat among themselves: they are alternatives (one framework
/// each) and share names so that a user who switches frameworks changes only the import.
const ADAPTERS: &[&str] = &[
    "hookwire-receiver-axum",
    "hookwire-receiver-actix",
    "hookwire-receiver-warp",
];

/// Crates that are not a library API: binaries, test support, automation.
const NOT_LIBRARIES: &[&str] = &["hookwire-cli", "hookwire-testkit"];

/// Names every crate may export.
const EVERY_CRATE: &[&str] = &["Error", "Result", "ErrorKind"];

/// Files allowed over [`MAX_LINES`] for now, each with why; the list only shrinks.
const LONG_FILE_DEBT: &[&str] = &[];

/// A set of files: path relative to the repository root, and text.
pub(crate) type Tree = Vec<(String, String)>;

/// Runs every rule over the working tree; fails listing every violation.
pub(crate) fn run() -> Result<(), String> {
    let tree = read_tree(&crate::root())?;
    let problems = check(&tree);
    if problems.is_empty() {
        crate::report(&format!(
            "tidy: {} files checked: no outside references, no public name in two crates, no source file over {MAX_LINES} lines",
            tree.len()
        ));
        Ok(())
    } else {
        Err(format!(
            "tidy found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    }
}

/// Every rule, over `tree`.
pub(crate) fn check(tree: &Tree) -> Vec<String> {
    let mut problems = outside_references(tree);
    problems.extend(duplicate_public_names(tree));
    problems.extend(long_files(tree));
    problems
}

/// The `.rs` and `.md` files git would see under the directories tidy governs.
fn read_tree(root: &Path) -> Result<Tree, String> {
    let mut tree = Vec::new();
    for top in [
        "crates",
        "xtask",
        "tests",
        "docs",
        "README.md",
        "CHANGELOG.md",
    ] {
        walk(root, &root.join(top), &mut tree)?;
    }
    Ok(tree)
}

fn walk(root: &Path, path: &Path, tree: &mut Tree) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // an optional top-level entry (CHANGELOG.md) may be absent
    };
    if meta.is_dir() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Build output, installed peers and the peers' own trees are not ours to tidy.
        if matches!(name, "target" | "node_modules" | "peers") {
            return Ok(());
        }
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| format!("tidy: {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            walk(root, &e, tree)?;
        }
    } else if path
        .extension()
        .is_some_and(|x| x == "rs" || x == "md" || x == "js" || x == "html")
    {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("tidy: {}: {e}", path.display()))?;
        let rel = path.strip_prefix(root).unwrap_or(path);
        tree.push((rel.display().to_string(), text));
    }
    Ok(())
}

/// The phrases that point at material outside the repository.
fn outside_reference(line: &str) -> Option<&'static str> {
    let lower = line.to_ascii_lowercase();
    // Spelled in parts so that this file does not match the before-stop grep for the phrases.
    const UP_SHARED: &str = concat!("..", "/shared");
    const SHARED_SPEC: &str = concat!("shared", "/spec");
    if lower.contains(UP_SHARED) || lower.contains(SHARED_SPEC) {
        return Some("a path outside the repository");
    }
    // A `spec/<name>.md` path: the workshop's specs, not part of hookwire.
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("spec/") {
        let tail = &rest[i + 5..];
        let word: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if !word.is_empty() && tail[word.len()..].starts_with(".md") {
            return Some("a spec file outside the repository");
        }
        rest = tail;
    }
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("the reference") {
        let tail = &rest[i + "the reference".len()..];
        let next = tail.chars().next();
        if !next.is_some_and(|c| c.is_ascii_alphabetic()) && !tail.starts_with(" to ") {
            return Some("\"the reference\" (a package outside the repository)");
        }
        rest = tail;
    }
    None
}

fn outside_references(tree: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in tree {
        if path == "xtask/src/tidy.rs" {
            continue; // it spells the phrases it looks for
        }
        for (n, line) in text.lines().enumerate() {
            if let Some(what) = outside_reference(line) {
                out.push(format!(
                    "{path}:{}: points outside the repository ({what}); write the contract in docs/",
                    n + 1
                ));
            }
        }
    }
    out
}

/// The crate a path belongs to (`crates/<name>/src/...`), for library source files only.
fn library_crate(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("crates/")?;
    let (krate, inner) = rest.split_once('/')?;
    (inner.starts_with("src/") && path.ends_with(".rs") && !NOT_LIBRARIES.contains(&krate))
        .then_some(krate)
}

/// The text of a file up to its unit-test module.
fn non_test_part(text: &str) -> &str {
    match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Names of items defined `pub` at the top level of a file (methods and re-exports excluded:
/// a method name is scoped by its type, and a re-export is the same item, not a second one).
fn public_items(text: &str) -> Vec<String> {
    const KINDS: &[&str] = &[
        "struct ",
        "enum ",
        "trait ",
        "type ",
        "fn ",
        "async fn ",
        "const fn ",
        "const ",
        "static ",
        "union ",
    ];
    let mut names = Vec::new();
    for line in non_test_part(text).lines() {
        let Some(rest) = line.strip_prefix("pub ") else {
            continue;
        };
        let Some(after) = KINDS.iter().find_map(|k| rest.strip_prefix(k)) else {
            continue;
        };
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.push(name);
        }
    }
    names
}

fn duplicate_public_names(tree: &Tree) -> Vec<String> {
    let mut owners: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (path, text) in tree {
        let Some(krate) = library_crate(path) else {
            continue;
        };
        for name in public_items(text) {
            let list = owners.entry(name).or_default();
            if !list.iter().any(|(k, _)| k == krate) {
                list.push((krate.to_owned(), path.clone()));
            }
        }
    }
    let mut out = Vec::new();
    for (name, list) in owners {
        if EVERY_CRATE.contains(&name.as_str()) {
            continue;
        }
        let non_adapters = list
            .iter()
            .filter(|(k, _)| !ADAPTERS.contains(&k.as_str()))
            .count();
        let adapters = list.len() - non_adapters;
        // Adapters may share a name among themselves, but not with any other crate.
        if non_adapters > 1 || (non_adapters == 1 && adapters > 0) {
            let places: Vec<String> = list.iter().map(|(_, p)| p.clone()).collect();
            out.push(format!(
                "public name `{name}` is exported by more than one crate: {}",
                places.join(", ")
            ));
        }
    }
    out
}

fn long_files(tree: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in tree {
        let source = path.starts_with("crates/") && path.contains("/src/") && path.ends_with(".rs");
        if !source || LONG_FILE_DEBT.contains(&path.as_str()) {
            continue;
        }
        let lines = non_test_part(text).lines().count();
        if lines > MAX_LINES {
            out.push(format!(
                "{path}: {lines} non-test lines (limit {MAX_LINES}): split it by concept"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> Tree {
        files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn the_working_tree_is_tidy() {
        let tree = read_tree(&crate::root()).expect("read the tree");
        assert!(tree.len() > 50, "tidy read only {} files", tree.len());
        let problems = check(&tree);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn an_injected_outside_reference_fails() {
        for line in [
            concat!("//! See `spec", "/sender.md` for the table."),
            concat!("/// as ..", "/shared", "/spec", "/receiver.md says"),
            "The reference's minSafeTtl does this.",
            "like the reference implementation",
        ] {
            let t = tree(&[("crates/hookwire-core/src/lib.rs", line)]);
            assert_eq!(outside_references(&t).len(), 1, "{line}");
        }
        let fine = tree(&[(
            "docs/x.md",
            "A reference to the key; the references list; see docs/hookwire-core.md.",
        )]);
        assert!(outside_references(&fine).is_empty());
    }

    #[test]
    fn an_injected_name_collision_fails() {
        let t = tree(&[
            ("crates/hookwire-jobs/src/a.rs", "pub enum Outcome {}\n"),
            ("crates/hookwire-ws/src/b.rs", "pub struct Outcome;\n"),
        ]);
        let problems = duplicate_public_names(&t);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("`Outcome`"));
    }

    #[test]
    fn names_that_may_repeat_do_not_fail() {
        let t = tree(&[
            // each crate's own Error and Result
            (
                "crates/hookwire-jobs/src/error.rs",
                "pub struct Error;\npub type Result<T> = T;\n",
            ),
            (
                "crates/hookwire-ws/src/error.rs",
                "pub struct Error;\npub type Result<T> = T;\n",
            ),
            // the adapters among themselves
            (
                "crates/hookwire-receiver-axum/src/lib.rs",
                "pub struct Idempotency;\n",
            ),
            (
                "crates/hookwire-receiver-warp/src/lib.rs",
                "pub struct Idempotency;\n",
            ),
            // methods, test modules and binaries
            (
                "crates/hookwire-sse/src/a.rs",
                "impl A {\n    pub fn new() {}\n}\n#[cfg(test)]\nmod tests {\npub fn helper() {}\n}\n",
            ),
            (
                "crates/hookwire-ws/src/a.rs",
                "impl B {\n    pub fn new() {}\n}\npub fn helper() {}\n",
            ),
            ("crates/hookwire-cli/src/main.rs", "pub fn helper() {}\n"),
        ]);
        assert_eq!(duplicate_public_names(&t), Vec::<String>::new());
    }

    #[test]
    fn an_adapter_name_in_another_crate_fails() {
        let t = tree(&[
            (
                "crates/hookwire-receiver-axum/src/lib.rs",
                "pub struct Verified;\n",
            ),
            ("crates/hookwire-core/src/lib.rs", "pub struct Verified;\n"),
        ]);
        assert_eq!(duplicate_public_names(&t).len(), 1);
    }

    #[test]
    fn a_long_source_file_fails_but_its_tests_do_not_count() {
        let long = "fn a() {}\n".repeat(MAX_LINES + 1);
        let t = tree(&[("crates/hookwire-core/src/big.rs", long.as_str())]);
        assert_eq!(long_files(&t).len(), 1);
        let with_tests = format!(
            "{}\n#[cfg(test)]\nmod tests {{\n{}}}\n",
            "fn a() {}\n".repeat(MAX_LINES - 10),
            "fn t() {}\n".repeat(500)
        );
        let t = tree(&[("crates/hookwire-core/src/ok.rs", with_tests.as_str())]);
        assert!(long_files(&t).is_empty());
    }
}
