//! Profile claims of real partner payloads: IPS documents are checked against the built-in IPS
//! profiles; a `meta.profile` rex does not know is a warning (the server's default and partner A's)
//! or refuses the Bundle (partner B's `unknown_profiles = "reject"`), on the server and in
//! `rex validate`; the scorecard counts the unknown profiles per partner.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{PARTNER_A, PARTNER_B, TestApp, backend_tests};

backend_tests!(ips_documents_in_a_referral_are_checked_against_ips, validate_operation_warns_about_unknown_claims);
/// Partners' tokens need a secured server.
mod secured {
    use super::unknown_claims_follow_the_partner_policy;
    crate::support::backend_tests!(@on sqlite_secured, postgres_secured; unknown_claims_follow_the_partner_policy);
}

const REX: &str = env!("CARGO_BIN_EXE_rex");
const US_CORE_PATIENT: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient|6.1.0";

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repository(path)).unwrap()).unwrap()
}

/// A referral from an EHR that stamps every resource with a US Core (or Argonaut) profile.
fn us_core_referral() -> Value {
    read("tests/it/data/us-core-stamped-referral.json")
}

/// The referral of `fixtures/valid/10-…` (which carries a patient summary document), with rex's
/// IPS example document in its place: a document that claims `Bundle-uv-ips`.
fn referral_with_ips_document() -> (Value, usize) {
    let mut referral = read("fixtures/valid/10-gastroenterology-crohns-ips-document-hk.json");
    let document = read("crates/validation/tests/ips/own/bundle-ips-referral-summary.json");
    let entries = referral["entry"].as_array_mut().unwrap();
    let index = entries.iter().position(|e| e["resource"]["resourceType"] == "Bundle").unwrap();
    entries[index]["resource"] = document;
    (referral, index)
}

/// The issues of an OperationOutcome with this severity, as `location: text`.
fn issues(outcome: &Value, severity: &str) -> Vec<String> {
    let list = outcome["issue"].as_array().into_iter().flatten().filter(|i| i["severity"] == severity);
    list.map(|i| format!("{}: {}", i["expression"][0].as_str().unwrap_or("-"), i["diagnostics"])).collect()
}

async fn ips_documents_in_a_referral_are_checked_against_ips(app: &TestApp) {
    let (referral, index) = referral_with_ips_document();
    let reply = app.post("", &referral).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // The same document with a medication statement that claims IPS without the effective time IPS
    // (not the base specification) requires: refused, located inside the document.
    let (mut broken, _) = referral_with_ips_document();
    let document = &mut broken["entry"][index]["resource"];
    let statement = document["entry"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["resource"]["effectivePeriod"].is_object() && e["resource"]["meta"]["profile"].is_array())
        .unwrap();
    document["entry"][statement]["resource"].as_object_mut().unwrap().remove("effectivePeriod");
    let reply = app.post("", &broken).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    let location = format!("Bundle.entry[{index}].resource.entry[{statement}].resource.effective");
    let errors = issues(&reply.body, "error");
    assert!(errors.iter().any(|i| i.starts_with(&location) && i.contains("MedicationStatementIPS")), "{errors:#?}");
    // $validate checks an IPS document against IPS too.
    let document = read("crates/validation/tests/ips/own/bundle-ips-referral-summary.json");
    let reply = app.post("$validate", &document).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(issues(&reply.body, "error").is_empty(), "{}", reply.body);
    assert!(!reply.body.to_string().contains("is not known to rex"), "IPS is known: {}", reply.body);
}

async fn validate_operation_warns_about_unknown_claims(app: &TestApp) {
    let reply = app.post("$validate", &us_core_referral()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(issues(&reply.body, "error").is_empty(), "{}", reply.body);
    let warnings = issues(&reply.body, "warning");
    let patient = warnings.iter().find(|w| w.contains(US_CORE_PATIENT)).expect("the patient's claim");
    assert!(patient.starts_with("Bundle.entry[3].resource.meta.profile[0]"), "{patient}");
    assert!(patient.contains("checked only against the base specification and the profiles rex knows"), "{patient}");
    assert_eq!(warnings.iter().filter(|w| w.contains("is not known to rex")).count(), 25, "every resource");
}

async fn unknown_claims_follow_the_partner_policy(app: &TestApp) {
    // Partner A (the server's default, warn): accepted; each entry's response carries its warning.
    let partner_a = app.partner_token(PARTNER_A, "system/*.cruds").await;
    let reply = app.send_as(&partner_a, Method::POST, "", Some(&us_core_referral())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let entries = reply.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 25);
    let outcome = &entries[3]["response"]["outcome"];
    assert_eq!(outcome["issue"][0]["severity"], "warning", "{}", reply.body);
    assert_eq!(outcome["issue"][0]["expression"][0], "Bundle.entry[3].resource.meta.profile[0]");
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains(US_CORE_PATIENT));
    // Partner B (unknown_profiles = "reject"): the same Bundle is refused, every claim named.
    let partner_b = app.partner_token(PARTNER_B, "system/*.cruds").await;
    let reply = app.send_as(&partner_b, Method::POST, "", Some(&us_core_referral())).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    let errors = issues(&reply.body, "error");
    assert_eq!(errors.iter().filter(|e| e.contains("is not known to rex")).count(), 25, "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains(US_CORE_PATIENT) && e.contains("unknown_profiles = reject")));
    // The scorecard of A counts the unknown profiles: the guide to ask for.
    let reply = app.send_as(&partner_a, Method::GET, "$partner-scorecard", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let claims: Vec<&Value> =
        reply.body["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == "unknown-profile").collect();
    let count = |profile: &str| {
        let claim = claims.iter().find(|c| c["part"][0]["valueCanonical"] == profile);
        claim.map(|c| (c["part"][1]["valueInteger"].as_i64().unwrap(), c["part"][2]["valueInteger"].as_i64().unwrap()))
    };
    assert_eq!(count(US_CORE_PATIENT), Some((1, 1)), "{claims:#?}");
    let lab = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab";
    assert!(count(lab).is_some_and(|(resources, submissions)| resources > 1 && submissions == 1), "{claims:#?}");
    // The refusal is B's, counted for B only.
    let reply = app.send_as(&partner_b, Method::GET, "$partner-scorecard", None).await;
    assert!(reply.body.to_string().contains(US_CORE_PATIENT), "{}", reply.body);
}

#[test]
fn rex_validate_gives_the_intake_verdicts() {
    let profiles = repository("profiles");
    let run = |file: &str, extra: &[&str]| {
        let mut command = Command::new(REX);
        command.arg("validate").arg("--profiles").arg(&profiles).arg("--summary").args(extra).arg(repository(file));
        command.env_remove("REX_UNKNOWN_PROFILES").output().unwrap()
    };
    let warned = run("tests/it/data/us-core-stamped-referral.json", &[]);
    let text = String::from_utf8_lossy(&warned.stdout);
    assert_eq!(warned.status.code(), Some(0), "{text}");
    assert!(text.contains("(0 errors, 25 warnings)") && text.contains(US_CORE_PATIENT), "{text}");
    let refused = run("tests/it/data/us-core-stamped-referral.json", &["--unknown-profiles", "reject"]);
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains("INVALID") && text.contains("(25 errors"), "{text}");
    let ips = run("crates/validation/tests/ips/own/bundle-ips-referral-summary.json", &[]);
    assert_eq!(ips.status.code(), Some(0), "{}", String::from_utf8_lossy(&ips.stdout));
    let bad = run("crates/validation/tests/ips/invalid/medicationstatement-no-effective.json", &[]);
    assert_eq!(bad.status.code(), Some(1), "{}", String::from_utf8_lossy(&bad.stdout));
    let wrong = run("tests/it/data/us-core-stamped-referral.json", &["--unknown-profiles", "ignore"]);
    assert_eq!(wrong.status.code(), Some(2));
}
