//! The log of a whole referral's life, from the `rex` binary as operators run it (`--security`,
//! default log level), holds requests, routes and callers but no patient name, identifier or token.

use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::intake::referral;

const REX: &str = env!("CARGO_BIN_EXE_rex");

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_referral_life_leaves_no_phi_or_token_in_the_log() {
    let folder = std::env::temp_dir().join(format!("rex-log-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    let partner = "hospital-angeles-mx";
    let config = crate::support::write_security_config(&folder, partner);
    let (partner_key, security) = (&config.partner_key, &config.file);
    let staff_pem = folder.join("staff.pem");
    std::fs::write(&staff_pem, &config.staff_pem).unwrap();
    let log_path = folder.join("rex.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut server = Server(
        Command::new(REX)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--security")
            .arg(security)
            .arg("--database")
            .arg(format!("sqlite://{}/rex.db", folder.display()))
            .args(["--routing", &format!("{root}/config/routing.toml"), "--profiles", &format!("{root}/profiles")])
            .env_remove("REX_LOG")
            .env_remove("REX_DEV")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start rex"),
    );
    let base = format!("http://127.0.0.1:{port}/fhir");
    let client = reqwest::Client::new();
    for _ in 0..600 {
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "rex exited early: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        if client.get(format!("{base}/metadata")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The partner's token, through the token endpoint.
    let token_url = format!("http://127.0.0.1:{port}/auth/token");
    let assertion =
        rex_auth::mint_client_assertion(partner_key, partner, &token_url, chrono::Utc::now().timestamp()).unwrap();
    let partner_token = crate::support::exchange_assertion(&client, &token_url, &assertion).await;
    // The specialist's token, from `rex token` with the development key.
    let minted = Command::new(REX)
        .args([
            "token",
            "--subject",
            "dr-log",
            "--role",
            "specialist",
            "--practitioner-role",
            "PractitionerRole/dr-log",
        ])
        .args(["--queue", "cardiology", "--security"])
        .arg(security)
        .arg("--key")
        .arg(&staff_pem)
        .output()
        .unwrap();
    assert!(minted.status.success(), "rex token: {}", String::from_utf8_lossy(&minted.stderr));
    let staff_token = String::from_utf8(minted.stdout).unwrap().trim().to_string();

    let call = |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = client.request(method, format!("{base}/{path}")).bearer_auth(token);
        if let Some(body) = body {
            request = request.header("content-type", "application/fhir+json").body(body.to_string());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    use reqwest::Method;
    let (status, sent) =
        call(&partner_token, Method::POST, "", Some(referral("LOG-7", "I25.10", "urgent", "es-MX", true))).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let task = sent["link"][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let query = "Patient?identifier=https://hospital-angeles.mx/fhir/mrn|MRN-LOG-7&name=Ram%C3%ADrez";
    assert_eq!(call(&partner_token, Method::GET, query, None).await.0, StatusCode::OK);
    let invalid = json!({"resourceType": "Patient", "name": [{"family": "Ramírez"}], "gender": "Sofía"});
    assert_eq!(call(&partner_token, Method::POST, "Patient", Some(invalid)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let empty = json!({"resourceType": "Parameters"});
    let (status, claimed) = call(&staff_token, Method::POST, &format!("Task/{task}/$claim"), Some(empty)).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let ask = json!({"resourceType": "Parameters", "parameter": [{"name": "message", "valueString": "Echo for Sofía Ramírez?"}]});
    assert_eq!(
        call(&staff_token, Method::POST, &format!("Task/{task}/$request-information"), Some(ask)).await.0,
        StatusCode::OK
    );
    let (_, requests) = call(&partner_token, Method::GET, "Communication?category=information-request", None).await;
    let request = requests["entry"][0]["resource"]["id"].as_str().expect("the partner sees the request").to_string();
    let answer = json!({"resourceType": "Communication", "status": "completed",
        "inResponseTo": [{"reference": format!("Communication/{request}")}],
        "payload": [{"contentString": "Echo of Sofía Ramírez attached"}]});
    assert_eq!(call(&partner_token, Method::POST, "Communication", Some(answer)).await.0, StatusCode::CREATED);
    let report = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Second opinion"},
                        "conclusion": "Sofía Ramírez: medical therapy"});
    let (_, report) = call(&staff_token, Method::POST, "DiagnosticReport", Some(report)).await;
    let opinion = format!("DiagnosticReport/{}", report["id"].as_str().unwrap());
    let complete = json!({"resourceType": "Parameters", "parameter": [{"name": "opinion", "valueReference": {"reference": opinion}}]});
    let (status, completed) = call(&staff_token, Method::POST, &format!("Task/{task}/$complete"), Some(complete)).await;
    assert_eq!(status, StatusCode::OK, "{completed}");
    // The partner reads the opinion its Task names.
    assert_eq!(call(&partner_token, Method::GET, &opinion, None).await.0, StatusCode::OK);
    // A denied access is logged too.
    assert_eq!(call("forged", Method::GET, "Patient", None).await.0, StatusCode::UNAUTHORIZED);
    drop(server);

    let text = std::fs::read_to_string(&log_path).unwrap();
    let requests = text.lines().filter(|line| line.contains("request_id=")).count();
    assert!(requests >= 12, "one log line per request, got {requests}:\n{text}");
    assert!(text.contains("route=/fhir/{type}/{id}/{operation}"), "routes are logged as templates:\n{text}");
    assert!(text.contains(&format!("caller=partner:{partner}")), "the caller is logged:\n{text}");
    for secret in ["Ramírez", "Ramirez", "Sofía", "MRN-LOG-7", "LOG-7", &partner_token, &staff_token, &assertion] {
        assert!(!text.contains(secret), "the log contains {secret:.20}...:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&folder);
}
