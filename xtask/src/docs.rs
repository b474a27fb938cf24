//! `cargo xtask docs-check`: what docs.rs shows of each published crate stays true.
//!
//! - Each library crate's crate documentation (`src/lib.rs`) has an example rustdoc
//!   compiles (a code block that is not `text`, `sh`, `toml` or `ignore`), a
//!   `# Feature flags` section whose table names exactly the features of its
//!   `Cargo.toml` (or says it has none), and a `# Minimum supported Rust version`
//!   section naming the workspace's `rust-version`.
//! - The umbrella's features, as `crates/rxon/Cargo.toml` declares them, are the rows of
//!   the README's "Feature flags of `rxon`" table and are all named in
//!   docs/architecture.md's rule on the umbrella.

use std::collections::BTreeSet;
use std::path::Path;

/// Runs every check; one error listing every problem found.
pub(crate) fn check(root: &Path) -> Result<(), String> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let rust_version = rust_version(&read(&root.join("Cargo.toml"))?)
        .ok_or("the workspace Cargo.toml declares no rust-version")?;
    let mut problems = Vec::new();
    let mut crates: Vec<_> = std::fs::read_dir(root.join("crates"))
        .map_err(|e| format!("cannot list crates/: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    crates.sort();
    let mut checked = 0;
    for dir in crates {
        let manifest = read(&dir.join("Cargo.toml"))?;
        let lib = dir.join("src/lib.rs");
        if manifest.contains("publish = false") || !lib.exists() {
            continue;
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let docs = crate_docs(&read(&lib)?);
        problems.extend(
            check_crate(&docs, &features(&manifest), &rust_version)
                .into_iter()
                .map(|p| format!("{name}/src/lib.rs: {p}")),
        );
        checked += 1;
    }
    let umbrella = features(&read(&root.join("crates/rxon/Cargo.toml"))?);
    let readme = read(&root.join("README.md"))?;
    let table = section(&readme, "## Feature flags of `rxon`")
        .map(table_names)
        .unwrap_or_default();
    problems.extend(
        mismatch(&table, &umbrella)
            .into_iter()
            .map(|p| format!("README.md, \"Feature flags of `rxon`\": {p}")),
    );
    let architecture = read(&root.join("docs/architecture.md"))?;
    let rule = architecture
        .split("\n\n")
        .find(|p| p.contains("The umbrella depends on everything"))
        .unwrap_or_default();
    for feature in &umbrella {
        if !rule.contains(&format!("`{feature}`")) {
            problems.push(format!(
                "docs/architecture.md, the umbrella's rule: feature `{feature}` is not named"
            ));
        }
    }
    if problems.is_empty() {
        println!(
            "xtask: docs-check: {checked} crates document an example, their features and MSRV {rust_version}; the umbrella's {} features match the README and docs/architecture.md",
            umbrella.len()
        );
        Ok(())
    } else {
        Err(format!("docs-check:\n  {}", problems.join("\n  ")))
    }
}

/// What is wrong with one crate's documentation.
fn check_crate(docs: &str, features: &BTreeSet<String>, rust_version: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !has_example(docs) {
        problems.push("no example in the crate documentation".to_owned());
    }
    match section(docs, "# Feature flags") {
        None => problems.push("no `# Feature flags` section".to_owned()),
        Some(text) => {
            let rows = table_names(text);
            if features.is_empty() && rows.is_empty() {
                if !text.contains("no features") {
                    problems.push(
                        "`# Feature flags` has no table and does not say \"no features\"".into(),
                    );
                }
            } else {
                problems.extend(mismatch(&rows, features));
            }
        }
    }
    match section(docs, "# Minimum supported Rust version") {
        None => problems.push("no `# Minimum supported Rust version` section".to_owned()),
        Some(text) if !text.contains(&format!("Rust {rust_version}")) => problems.push(format!(
            "the MSRV section does not say \"Rust {rust_version}\" (the workspace's rust-version)"
        )),
        Some(_) => {}
    }
    problems
}

/// Features documented but not declared, and declared but not documented.
fn mismatch(documented: &BTreeSet<String>, declared: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for f in declared.difference(documented) {
        problems.push(format!(
            "feature `{f}` is declared in Cargo.toml but not listed"
        ));
    }
    for f in documented.difference(declared) {
        problems.push(format!(
            "feature `{f}` is listed but Cargo.toml has no such feature"
        ));
    }
    problems
}

/// `rust-version = "…"` of a manifest.
fn rust_version(manifest: &str) -> Option<String> {
    manifest.lines().find_map(|l| {
        let value = l
            .trim()
            .strip_prefix("rust-version")?
            .trim()
            .strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

/// The names in a manifest's `[features]` table, `default` aside.
fn features(manifest: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[features]";
            continue;
        }
        if !inside || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && name != "default" {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The crate documentation of a `lib.rs`: its leading `//!` lines, without the marker.
fn crate_docs(lib: &str) -> String {
    let mut docs = String::new();
    for line in lib.lines() {
        let Some(text) = line.strip_prefix("//!") else {
            if line.trim().is_empty() {
                continue;
            }
            break;
        };
        docs.push_str(text.strip_prefix(' ').unwrap_or(text));
        docs.push('\n');
    }
    docs
}

/// The text under `heading` up to the next heading of the same or a higher level,
/// code blocks skipped over (their `# ` lines are hidden code, not headings).
fn section<'a>(docs: &'a str, heading: &str) -> Option<&'a str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut offset = 0;
    let mut start = None;
    let mut fenced = false;
    for line in docs.split_inclusive('\n') {
        let text = line.trim_end();
        if text.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            let hashes = text.chars().take_while(|c| *c == '#').count();
            let is_heading = hashes > 0 && text[hashes..].starts_with(' ');
            match start {
                None if text == heading => start = Some(offset + line.len()),
                Some(s) if is_heading && hashes <= level => return Some(&docs[s..offset]),
                _ => {}
            }
        }
        offset += line.len();
    }
    start.map(|s| &docs[s..])
}

/// The first cell of each table row that names something in backticks: "| `http` | …".
fn table_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("| `")?.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// `true` when the documentation has a code block rustdoc compiles.
fn has_example(docs: &str) -> bool {
    let mut fenced = false;
    for line in docs.lines() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        if !fenced {
            let info = info.trim();
            let skipped = ["text", "sh", "toml", "json", "ignore", "console"];
            if !info.split(',').any(|tag| skipped.contains(&tag.trim())) {
                return true;
            }
        }
        fenced = !fenced;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = "\
Intro.

```
# fn main() {}
# Feature flags
```

# Feature flags

| feature | what |
| --- | --- |
| `tor` | dials onions |
| `pki` | certificates |

## A subsection

Still features.

# Minimum supported Rust version

Rust 1.95 (edition 2024).
";

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn sections_end_at_the_next_heading_of_their_level_outside_code() {
        let features = section(DOCS, "# Feature flags").unwrap();
        assert!(features.contains("`pki`"), "{features}");
        assert!(features.contains("Still features."), "{features}");
        assert!(!features.contains("Rust 1.95"), "{features}");
        assert_eq!(table_names(features), set(&["tor", "pki"]));
        assert!(section(DOCS, "# Nothing").is_none());
    }

    #[test]
    fn a_crate_is_checked_against_its_manifest() {
        assert!(check_crate(DOCS, &set(&["tor", "pki"]), "1.95").is_empty());
        let problems = check_crate(DOCS, &set(&["tor", "s3"]), "1.96");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`s3` is declared"), "{problems:?}");
        assert!(problems[1].contains("`pki` is listed"), "{problems:?}");
        assert!(problems[2].contains("Rust 1.96"), "{problems:?}");
        let bare = "# Feature flags\n\nNone.\n\n# Minimum supported Rust version\n\nRust 1.95\n";
        let problems = check_crate(bare, &BTreeSet::new(), "1.95");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("no example"), "{problems:?}");
        assert!(problems[1].contains("no features"), "{problems:?}");
    }

    #[test]
    fn examples_are_code_blocks_rustdoc_compiles() {
        assert!(has_example("```\nlet x = 1;\n```\n"));
        assert!(has_example("```no_run\nserve();\n```\n"));
        assert!(!has_example("```text\nGET /\n```\n```sh\ncargo run\n```\n"));
        assert!(!has_example("```rust,ignore\nnope();\n```\n"));
    }

    #[test]
    fn manifests_give_their_features_and_rust_version() {
        let manifest = "[package]\nrust-version = \"1.95\"\n\n[features]\ndefault = [\"a\"]\n## doc\na = []\nb-c = [\"dep:x\"]\n\n[dependencies]\nx = \"1\"\n";
        assert_eq!(features(manifest), set(&["a", "b-c"]));
        assert_eq!(rust_version(manifest).as_deref(), Some("1.95"));
        let lib = "//! Title\n//!\n//! Text.\n\n#![forbid(unsafe_code)]\n//! not docs\n";
        assert_eq!(crate_docs(lib), "Title\n\nText.\n");
    }
}
