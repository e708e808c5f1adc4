//! Operator endpoints and process behaviour: health, Prometheus metrics, SIGTERM and start-up
//! validation of settings.

use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};
use rex_auth::StaffRole;

use crate::intake::referral;
use crate::support::{PARTNER_A, TestApp};

const REX: &str = env!("CARGO_BIN_EXE_rex");

#[tokio::test]
async fn health_and_metrics() {
    let app = TestApp::sqlite_secured().await;
    let root = app.base.trim_end_matches("/fhir").to_string();
    for probe in ["health/live", "health/ready"] {
        let reply = app.get(&format!("{root}/{probe}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{probe}");
        assert_eq!(reply.header("content-type"), Some("application/health+json"));
        assert_eq!(reply.body["status"], "pass");
    }
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    let sent = app.send_as(&partner, Method::POST, "", Some(&referral("M-1", "I25.10", "urgent", "en", false))).await;
    assert_eq!(sent.status, StatusCode::OK);
    let metrics = format!("{root}/metrics");
    assert_eq!(app.get(&metrics).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.send_as(&partner, Method::GET, &metrics, None).await.status, StatusCode::FORBIDDEN);
    let admin = app.auth.as_ref().unwrap().staff_token(StaffRole::Admin, None, &[]);
    let response = reqwest::Client::new().get(&metrics).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for expected in [
        "rex_http_requests_total{method=\"POST\",route=\"/fhir/\",status=\"200\"} 1",
        "rex_http_request_duration_seconds_count{method=\"POST\",route=\"/fhir/\"} 1",
        &format!("rex_referral_submissions_total{{partner=\"{PARTNER_A}\",outcome=\"accepted\"}} 1"),
        "rex_queue_open_referrals{queue=\"cardiology\"} 1",
        "rex_queue_overdue_referrals{queue=\"cardiology\"} 0",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }
    app.cleanup().await;
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let folder = std::env::temp_dir().join(format!("rex-stop-{}", uuid::Uuid::new_v4()));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let root = env!("CARGO_MANIFEST_DIR");
    let server = Command::new(REX)
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database")
        .arg(format!("sqlite://{}/rex.db", folder.display()))
        .args(["--routing", &format!("{root}/config/routing.toml"), "--profiles", &format!("{root}/profiles")])
        .env("REX_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(ready, "rex listens");
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    let output = server.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let log = String::from_utf8_lossy(&output.stdout);
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).expect("JSON log lines");
    assert_eq!(last["fields"]["message"], "stopped", "{log}");
    let _ = std::fs::remove_dir_all(&folder);
}

#[test]
fn bad_settings_are_refused_at_start() {
    let bad_format = Command::new(REX).args(["serve", "--dev"]).env("REX_LOG_FORMAT", "xml").output().unwrap();
    assert_eq!(bad_format.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_format.stderr).contains("REX_LOG_FORMAT must be text or json"));
    let bad_number = Command::new(REX).args(["serve", "--dev", "--max-body-bytes", "lots"]).output().unwrap();
    assert!(!bad_number.status.success());
    assert!(String::from_utf8_lossy(&bad_number.stderr).contains("--max-body-bytes"));
}
