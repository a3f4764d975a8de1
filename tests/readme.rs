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
    let generated = sluice::rule::registry::markdown_reference();
    assert!(readme[start..stop] == generated, "README's function reference is stale: replace the block between the markers with `cargo run -- functions`");
    for f in sluice::rule::registry::all() {
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
