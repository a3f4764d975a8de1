//! The function catalog: every function the rule language knows, with its signature, doc and
//! examples (the table is in `catalog/table.rs`). The planner binds calls through it once, at
//! compile time; README's function reference is generated from it (`sluice functions`), and
//! every example runs as a test.

use std::collections::HashMap;
use std::sync::LazyLock;

pub use crate::rule::ctx::{Example, FnImpl, FunctionDef};

mod table;

/// The topic of the example message.
pub const EXAMPLE_TOPIC: &str = "/sys/1234556554/deviceName1234/thing/event/property/post";
/// The example message's payload: seed 004's property post.
pub const EXAMPLE_PAYLOAD: &str = r#"{"iotId":"4z819VQHk6VSLmmBJfrf00107ee200","productKey":"1234556554","deviceName":"deviceName1234","gmtCreate":1510799670074,"deviceType":"Ammeter","items":{"Power":{"value":"on","time":1510799670074},"Position":{"time":1510292697470,"value":{"latitude":39.9,"longitude":116.38}}}}"#;
/// The example clock: 2023-11-14T22:13:20Z.
pub const EXAMPLE_NOW_MS: i64 = 1_700_000_000_000;
/// The example message id.
pub const EXAMPLE_MESSAGE_ID: u64 = 42;

static BY_NAME: LazyLock<HashMap<&'static str, &'static FunctionDef>> = LazyLock::new(|| table::FUNCTIONS.iter().map(|f| (f.name, f)).collect());

/// Every function, in reference order.
pub fn all() -> &'static [FunctionDef] {
    table::FUNCTIONS
}

/// Looks a function up by its exact name.
pub fn get(name: &str) -> Option<&'static FunctionDef> {
    BY_NAME.get(name).copied()
}

/// The closest known name, for `did you mean …?`: same name in another case first, then the
/// nearest by edit distance (at most a third of the length).
pub fn suggest(name: &str) -> Option<&'static str> {
    if let Some(f) = all().iter().find(|f| f.name.eq_ignore_ascii_case(name)) {
        return Some(f.name);
    }
    let lower = name.to_ascii_lowercase();
    all().iter().map(|f| (strsim::levenshtein(&lower, &f.name.to_ascii_lowercase()), f.name)).filter(|(d, n)| *d <= (n.len().max(3) / 3).max(1)).min().map(|(_, n)| n)
}

/// The function reference in Markdown, grouped by category (README embeds it).
pub fn markdown_reference() -> String {
    let mut out = String::new();
    let mut cats: Vec<&str> = Vec::new();
    for f in all() {
        if !cats.contains(&f.category) {
            cats.push(f.category);
        }
    }
    for cat in cats {
        out.push_str(&format!("\n#### {cat}\n\n| function | meaning | example |\n| --- | --- | --- |\n"));
        for f in all().iter().filter(|f| f.category == cat) {
            let ex = f.examples.first().map_or(String::new(), |e| format!("`{}` → `{}`", e.expr, e.result));
            out.push_str(&format!("| `{}` | {} | {} |\n", f.signature, f.doc.replace('|', "\\|").replace('\n', " "), ex.replace('|', "\\|")));
        }
    }
    out
}

#[cfg(test)]
mod tests;
