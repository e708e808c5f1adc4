//! The documentation stays true to the server: every operation and interaction the
//! CapabilityStatement advertises is documented in `docs/api.md`, and `docs/profiles.md` is what
//! `rex profiles doc` generates from `profiles/` today.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestApp;

const REX: &str = env!("CARGO_BIN_EXE_rex");

/// Operation names (`$validate`) and interaction codes (`` `read` ``) the statement advertises,
/// as they must appear in the API documentation.
fn advertised(statement: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let list = |value: &Value| value.as_array().cloned().unwrap_or_default();
    for rest in list(&statement["rest"]) {
        let resources = list(&rest["resource"]);
        let operations =
            list(&rest["operation"]).into_iter().chain(resources.iter().flat_map(|r| list(&r["operation"])));
        for operation in operations {
            names.insert(format!("${}", operation["name"].as_str().unwrap_or_default()));
        }
        let interactions =
            list(&rest["interaction"]).into_iter().chain(resources.iter().flat_map(|r| list(&r["interaction"])));
        for interaction in interactions {
            names.insert(format!("`{}`", interaction["code"].as_str().unwrap_or_default()));
        }
    }
    names
}

/// What `statement` advertises that `doc` does not document: a name counts as documented when it
/// appears in a heading or a table row, where the reference lists what rex supports.
fn undocumented(statement: &Value, doc: &str) -> Vec<String> {
    let reference_lines: Vec<&str> =
        doc.lines().map(str::trim_start).filter(|line| line.starts_with('#') || line.starts_with('|')).collect();
    advertised(statement).into_iter().filter(|name| !reference_lines.iter().any(|line| mentions(line, name))).collect()
}

/// Whether `line` names `name` on its own: `$claim` does not count as `$claim-next`.
fn mentions(line: &str, name: &str) -> bool {
    line.match_indices(name).any(|(at, _)| {
        let next = line[at + name.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[tokio::test]
async fn every_advertised_operation_and_interaction_is_in_the_api_docs() {
    let app = TestApp::sqlite().await;
    let reply = app.get("metadata").await;
    app.cleanup().await;
    assert_eq!(reply.status, StatusCode::OK);
    let names = advertised(&reply.body);
    assert!(names.contains("$validate") && names.contains("`read`"), "the statement lists {names:?}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md");
    let doc = std::fs::read_to_string(&path).expect("docs/api.md exists");
    let missing = undocumented(&reply.body, &doc);
    assert!(missing.is_empty(), "docs/api.md does not document {missing:?} (add a heading or a table row)");
}

#[test]
fn the_docs_check_catches_an_undocumented_operation() {
    let statement = json!({"rest": [{"interaction": [{"code": "transaction"}],
        "operation": [{"name": "validate"}, {"name": "claim"}],
        "resource": [{"type": "Task", "interaction": [{"code": "read"}], "operation": [{"name": "claim-next"}]}]}]});
    let doc = "## `$validate`\n\n| interaction | route |\n| `read` | GET |\n| `transaction` | POST |\n\
               | `$claim-next` | POST |\nThe prose mentions $claim, which is not enough.\n";
    assert_eq!(undocumented(&statement, doc), vec!["$claim"]);
}

#[test]
fn the_profile_reference_is_current() {
    let output = Command::new(REX)
        .args(["profiles", "doc", "--profiles", "profiles", "--fixtures", "fixtures/valid"])
        .args(["--check", "docs/profiles.md"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("rex runs");
    assert!(
        output.status.success(),
        "docs/profiles.md is stale (exit {:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}
