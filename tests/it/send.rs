//! `rex send` against a running rex: a token from the partner's key, each Bundle posted where it
//! belongs, a summary per file (or the raw responses) and the exit status.

use std::process::Command;

use serde_json::Value;

use crate::intake::referral;
use crate::message::message;
use crate::support::{PARTNER_A, TestApp};

const REX: &str = env!("CARGO_BIN_EXE_rex");

fn write(folder: &std::path::Path, name: &str, content: &[u8]) -> std::path::PathBuf {
    let path = folder.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[tokio::test]
async fn send_posts_as_the_partner_and_summarises_each_file() {
    let app = TestApp::sqlite_secured().await;
    let folder = std::env::temp_dir().join(format!("rex-send-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    let key = write(&folder, "a.pem", app.auth.as_ref().unwrap().partner_key_pem(PARTNER_A));
    let good = write(&folder, "good.json", referral("SEND-1", "I25.10", "urgent", "en", false).to_string().as_bytes());
    let invalid = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/invalid/03-invalid-priority-code.json"));
    let bad = write(&folder, "bad.json", &invalid.unwrap());
    let base = app.base.clone();
    let send = move |files: Vec<std::path::PathBuf>, extra: Vec<&'static str>| {
        let (base, key) = (base.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(REX)
                .args(["send", "--server", &base, "--client-id", PARTNER_A, "--key"])
                .arg(&key)
                .args(extra)
                .args(files)
                .output()
                .unwrap()
        })
    };

    // A file that is no JSON is reported and the others are sent all the same.
    let garbage = write(&folder, "garbage.json", b"{\"resourceType\": \"Bundle\",");
    let both = send(vec![garbage, good.clone(), bad.clone()], vec![]).await.unwrap();
    let text = String::from_utf8_lossy(&both.stdout);
    assert_eq!(both.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&both.stderr));
    assert!(text.starts_with("UNREADABLE ") && text.contains("garbage.json (not sent)"), "{text}");
    assert!(text.contains("    fatal structure at -: ") && text.contains("is not FHIR JSON or XML"), "{text}");
    let accepted = text.lines().find(|l| l.starts_with("accepted")).unwrap_or_else(|| panic!("{text}"));
    assert!(accepted.contains("good.json") && accepted.contains("referral created: Task/"), "{text}");
    assert!(accepted.contains("queue cardiology, due 20"), "{text}");
    assert!(text.contains("REFUSED") && text.contains("bad.json (422"), "{text}");
    assert!(text.contains("    error ") && text.contains("priority"), "issue lines with locations: {text}");

    // Sent again, the referral is recognised as unchanged; --json gives the raw response.
    let again = send(vec![good.clone()], vec!["--json"]).await.unwrap();
    assert_eq!(again.status.code(), Some(0));
    let response: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(response["type"], "transaction-response");
    assert!(response["link"].to_string().contains("#unchanged"));
    // The summary says what happened: an identical re-send is unchanged, a revoke is revoked
    // (neither is routed to a queue).
    let unchanged = send(vec![good.clone()], vec![]).await.unwrap();
    let text = String::from_utf8_lossy(&unchanged.stdout).into_owned();
    assert!(text.starts_with("unchanged ") && text.contains("referral unchanged: Task/"), "{text}");
    assert!(text.contains("nothing written") && !text.contains("queue"), "{text}");
    let revoke = write(&folder, "revoke.json", message("referral-revoke", "SEND-1").to_string().as_bytes());
    let revoked = send(vec![revoke], vec![]).await.unwrap();
    let text = String::from_utf8_lossy(&revoked.stdout).into_owned();
    assert_eq!(revoked.status.code(), Some(0), "{text}");
    assert!(text.starts_with("revoked ") && text.contains("referral revoked: Task/"), "{text}");
    assert!(text.contains("cancelled") && !text.contains("queue"), "{text}");
    app.cleanup().await;
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test]
async fn send_refuses_to_run_without_credentials_and_reports_a_refused_token() {
    let app = TestApp::sqlite_secured().await;
    let folder = std::env::temp_dir().join(format!("rex-send-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    let file = write(&folder, "r.json", referral("SEND-2", "I25.10", "urgent", "en", false).to_string().as_bytes());
    // A key rex does not know for this partner.
    let stranger = {
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap();
        let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
        write(&folder, "stranger.pem", &key.private_key_to_pem_pkcs8().unwrap())
    };
    let base = app.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        let no_credentials = Command::new(REX).args(["send", "--server", &base]).arg(&file).output().unwrap();
        let refused = Command::new(REX)
            .args(["send", "--server", &base, "--client-id", PARTNER_A, "--key"])
            .arg(&stranger)
            .arg(&file)
            .output()
            .unwrap();
        (no_credentials, refused)
    })
    .await
    .unwrap();
    assert_eq!(output.0.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.0.stderr).contains("--client-id"));
    assert_eq!(output.1.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.1.stderr).contains("invalid_client"));
    app.cleanup().await;
    let _ = std::fs::remove_dir_all(&folder);
}
