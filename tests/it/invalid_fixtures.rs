//! The invalid referral fixtures in `fixtures/invalid/`: each `NN-slug.json` is a referral Bundle
//! with one mistake a partner's integration engineer makes, and `NN-slug.expected.json` says what
//! rex must answer: `{"status": 422, "issues": [{"severity", "code", "expression"}]}`. Every
//! expected issue must be among the answer's issues (an `expression` of `null` is not compared),
//! and nothing may be written. See `fixtures/README.md`.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use crate::support::{TestApp, backend_tests};

backend_tests!(invalid_fixtures_are_refused_as_expected);

/// `fixtures/invalid/*.json` without the `.expected.json` files, sorted by name.
fn invalid_fixtures() -> Vec<PathBuf> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("fixtures/invalid exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.ends_with(".expected.json")
        })
        .collect();
    files.sort();
    files
}

/// Whether `issue` (from rex's OperationOutcome) is the `expected` one.
fn matches(issue: &Value, expected: &Value) -> bool {
    issue["severity"] == expected["severity"]
        && issue["code"] == expected["code"]
        && (expected["expression"].is_null()
            || issue["expression"].as_array().is_some_and(|list| list.contains(&expected["expression"])))
}

async fn invalid_fixtures_are_refused_as_expected(app: &TestApp) {
    let fixtures = invalid_fixtures();
    assert!(fixtures.len() >= 12, "expected at least 12 invalid fixtures, found {}", fixtures.len());
    let rows = app.count_rows("resource_history").await;
    let mut failures = Vec::new();
    for path in &fixtures {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {name}: {e}"));
        let expected_path = path.with_extension("expected.json");
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("read {}: {e}", expected_path.display())),
        )
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", expected_path.display()));
        let reply = app.send(Method::POST, "", &[("content-type", "application/fhir+json")], Some(text)).await;
        let status = expected["status"].as_u64().expect("expected status");
        if u64::from(reply.status.as_u16()) != status {
            failures.push(format!("{name}: expected status {status}, got {}: {}", reply.status, reply.body));
            continue;
        }
        let issues = reply.body["issue"].as_array().cloned().unwrap_or_default();
        for want in expected["issues"].as_array().expect("expected issues") {
            if !issues.iter().any(|issue| matches(issue, want)) {
                failures.push(format!("{name}: missing issue {want} in {}", reply.body));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} invalid fixture(s) not answered as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(app.count_rows("resource_history").await, rows, "nothing was written");
    assert_eq!(app.count_rows("referrals").await, 0, "no referral was recorded");
}
