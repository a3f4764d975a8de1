//! README's function reference is generated from the registry (`sluice functions`); this test
//! fails when they drift apart. Regenerate the block between the markers with
//! `cargo run -- functions`.

#[test]
fn readme_function_reference_matches_the_registry() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let begin = "<!-- functions:begin -->\n";
    let end = "<!-- functions:end -->";
    let start = readme.find(begin).expect("functions:begin marker") + begin.len();
    let stop = readme.find(end).expect("functions:end marker");
    let generated = sluice::rule::catalog::markdown_reference();
    assert!(readme[start..stop] == generated, "README's function reference is stale: replace the block between the markers with `cargo run -- functions`");
    for f in sluice::rule::catalog::all() {
        assert!(readme[start..stop].contains(&format!("`{}", f.name)), "{} missing from README", f.name);
    }
}

#[test]
fn readme_commands_are_the_ones_ci_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    assert!(readme.contains("cargo run --release -- run --config deploy/quickstart.toml"));
    assert!(readme.contains("\nscripts/test.sh\n"));
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).expect(".ci/run");
    assert!(ci.contains("scripts/test.sh"), ".ci/run must call README's test command");
}

/// Every metric defined in `src/telemetry/metrics.rs` has a row in README's metrics table.
#[test]
fn readme_documents_every_metric() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/telemetry/metrics.rs")).expect("metrics.rs");
    let mut names = Vec::new();
    let mut rest = source.as_str();
    while let Some(i) = rest.find("\"sluice_") {
        let name: String = rest[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + 1 + name.len()..];
        // A metric's name is a whole literal (test strings add labels or suffixes).
        if rest.starts_with('"') {
            names.push(name);
        }
    }
    assert!(names.len() >= 40, "found only {names:?}");
    for n in names {
        assert!(readme.contains(&format!("| `{n}` |")), "metric {n} has no row in README's metrics table");
    }
}
