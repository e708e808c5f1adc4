//! The opinion rex issues at `$complete`: the PDF it renders from the DiagnosticReport
//! (`presentedForm`) and the Provenance whose detached JWS over the report version's canonical
//! JSON verifies with the key published at `/auth/jwks`, and fails for a changed report; the
//! partner guide's Python verification script, run as printed, says the same.

use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use rex_auth::jwt::{Algorithm, JwtError, verify_detached};
use rex_auth::{JwkSet, jcs::canonical_json};
use serde_json::{Value, json};

use crate::intake::referral;
use crate::support::{TestApp, backend_tests, skipped};

backend_tests!(the_completed_opinion_is_rendered_and_signed);

fn parameters(name: &str, reference: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [{"name": name, "valueReference": {"reference": reference}}]})
}

async fn the_completed_opinion_is_rendered_and_signed(app: &TestApp) {
    let sent = app.post("", &referral("OP-1", "I25.10", "urgent", "ar", false)).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let task = sent.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "https://rex.example/fhir/referral-task")
        .and_then(|l| l["url"].as_str())
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let claimed = app.post(&format!("Task/{task}/$claim"), &parameters("owner", "PractitionerRole/dr-lee")).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    let conclusion = "Medical therapy first. العلاج الدوائي أولاً. 先药物治疗";
    let report = app
        .create(&json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Second opinion"},
            "subject": claimed.body["for"], "issued": "2026-12-04T10:00:00Z",
            "performer": [{"reference": "PractitionerRole/dr-lee", "display": "Dr. Lee"}],
            "conclusion": conclusion,
            "conclusionCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "60573004", "display": "Aortic valve stenosis"}]}]}))
        .await;
    let completed = app
        .post(&format!("Task/{task}/$complete"), &parameters("opinion", &format!("DiagnosticReport/{report}")))
        .await;
    assert_eq!(completed.status, StatusCode::OK, "{}", completed.body);

    // The PDF rex rendered comes first in presentedForm and is a PDF that holds the conclusion.
    let stored = app.get(&format!("DiagnosticReport/{report}")).await.body;
    let form = &stored["presentedForm"][0];
    assert_eq!(form["contentType"], "application/pdf");
    let pdf = STANDARD.decode(form["data"].as_str().unwrap()).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    assert_eq!(form["size"], pdf.len());
    assert_eq!(form["hash"], STANDARD.encode(openssl::sha::sha1(&pdf)));
    // (Its text, in every script, is read back with a PDF reader in rex-opinion's tests.)

    // The Provenance targets this version and its signature verifies with the published key.
    let version = stored["meta"]["versionId"].as_str().unwrap();
    let found = app.get(&format!("Provenance?target=DiagnosticReport/{report}/_history/{version}")).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.body["total"], 1, "{}", found.body);
    let provenance = &found.body["entry"][0]["resource"];
    let signature = &provenance["signature"][0];
    assert_eq!(signature["sigFormat"], "application/jose");
    assert_eq!(signature["targetFormat"], "application/fhir+json");
    let jws = String::from_utf8(STANDARD.decode(signature["data"].as_str().unwrap()).unwrap()).unwrap();
    let origin = app.base.trim_end_matches("/fhir");
    let jwks: Value = reqwest::get(format!("{origin}/auth/jwks")).await.unwrap().json().await.unwrap();
    let keys = JwkSet::from_value(&jwks, &[Algorithm::ES384]).unwrap();
    let version_read = app.get(&format!("DiagnosticReport/{report}/_history/{version}")).await.body;
    verify_detached(&jws, canonical_json(&version_read).as_bytes(), &keys, &[Algorithm::ES384])
        .expect("the signature verifies");

    // A changed report does not verify.
    let mut changed = version_read.clone();
    changed["conclusion"] = json!("Surgery at once");
    let refused = verify_detached(&jws, canonical_json(&changed).as_bytes(), &keys, &[Algorithm::ES384]);
    assert_eq!(refused.unwrap_err(), JwtError::BadSignature);

    // The partner guide's script verifies it too, and refuses a signature that was changed.
    guide_script_verifies(app, &found.body, &jwks, true).await;
    let mut forged = found.body.clone();
    let (header, signature) = jws.split_once("..").unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    forged["entry"][0]["resource"]["signature"][0]["data"] =
        json!(STANDARD.encode(format!("{header}..{flipped}{}", &signature[1..])));
    guide_script_verifies(app, &forged, &jwks, false).await;
}

/// Runs the Python verification script of docs/partner-guide.md, exactly as printed there, in a
/// folder holding `provenance.json` and `jwks.json` as the guide's curl commands save them, and
/// checks whether it accepted the signature. Skips (saying so) without python3 and its
/// `cryptography` module, except in CI, where `.ci/run` installs them.
async fn guide_script_verifies(app: &TestApp, provenance: &Value, jwks: &Value, valid: bool) {
    let guide = include_str!("../../docs/partner-guide.md");
    let (_, after) = guide.split_once("python3 - \"$B\" \"$TOKEN\" <<'PY'\n").expect("the guide's verification script");
    let (script, _) = after.split_once("\nPY\n").expect("the script's end");
    let usable = Command::new("python3").args(["-c", "import cryptography"]).output();
    if !usable.is_ok_and(|o| o.status.success()) {
        skipped("the partner guide's signature script needs python3 with the cryptography module");
        return;
    }
    let folder = std::env::temp_dir().join(format!("rex-guide-verify-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("provenance.json"), provenance.to_string()).unwrap();
    std::fs::write(folder.join("jwks.json"), jwks.to_string()).unwrap();
    std::fs::write(folder.join("verify.py"), script).unwrap();
    let base = app.base.clone();
    // This app needs no token; the script sends whatever it is given.
    let run = tokio::task::spawn_blocking(move || {
        let run = Command::new("python3").args(["verify.py", &base, "unused"]).current_dir(&folder).output();
        std::fs::remove_dir_all(&folder).ok();
        run
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    if valid {
        assert!(run.status.success(), "the guide's script refused rex's signature:\n{stdout}\n{stderr}");
        assert!(stdout.contains("signature valid: rex issued DiagnosticReport/"), "{stdout}");
    } else {
        assert!(!run.status.success(), "the guide's script accepted a changed signature:\n{stdout}");
        assert!(stderr.contains("InvalidSignature"), "{stderr}");
    }
}
