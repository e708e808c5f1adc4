//! The `rex` binary as a newcomer runs it: `rex serve --demo --dev` on a fresh SQLite database.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const REX: &str = env!("CARGO_BIN_EXE_rex");

/// Kills the server when the test ends, even on failure.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_until_ready(base: &str, server: &mut Server) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("rex exited early with {status}");
        }
        if reqwest::get(format!("{base}/metadata")).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rex did not answer within 60 s");
}

#[tokio::test]
async fn serve_demo_loads_fixtures_on_a_fresh_database() {
    let folder = std::env::temp_dir().join(format!("rex-cli-{}", uuid::Uuid::new_v4()));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let start = || {
        Server(
            Command::new(REX)
                .args(["serve", "--demo", "--dev", "--listen", &format!("127.0.0.1:{port}")])
                .env("REX_DATABASE_URL", format!("sqlite://{}/rex.db", folder.display()))
                .env("REX_DEMO_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/valid"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start rex"),
        )
    };
    let demo_files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/valid"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    assert!(demo_files > 0, "fixtures/valid holds the demo Bundles");

    let mut server = start();
    wait_until_ready(&base, &mut server).await;
    let count = |body: Value| body["total"].as_i64().unwrap();
    let requests =
        reqwest::get(format!("{base}/ServiceRequest?_summary=count")).await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(count(requests), demo_files as i64, "one ServiceRequest per demo Bundle");
    drop(server);

    // A restart on the same database does not load the demo data twice.
    let mut server = start();
    wait_until_ready(&base, &mut server).await;
    let requests =
        reqwest::get(format!("{base}/ServiceRequest?_summary=count")).await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(count(requests), demo_files as i64);
    drop(server);
    let _ = std::fs::remove_dir_all(&folder);
}

#[test]
fn refuses_to_run_without_authentication_or_dev_off_loopback() {
    let without_dev = Command::new(REX).args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!without_dev.status.success());
    assert!(String::from_utf8_lossy(&without_dev.stderr).contains("--dev"));
    let public = Command::new(REX).args(["serve", "--dev", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(!public.status.success());
    assert!(String::from_utf8_lossy(&public.stderr).contains("loopback"));
}

#[test]
fn validate_command_reports_per_file_and_sets_the_exit_status() {
    let folder = std::env::temp_dir().join(format!("rex-validate-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    let good = folder.join("good.json");
    let bad = folder.join("bad.json");
    std::fs::write(&good, r#"{"resourceType":"Patient","name":[{"family":"Chen"}]}"#).unwrap();
    std::fs::write(&bad, r#"{"resourceType":"Patient","birthDate":"1970-13-45"}"#).unwrap();
    let profiles = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles");
    let run = |files: &[&std::path::Path], extra: &[&str]| {
        let mut command = Command::new(REX);
        command.args(["validate", "--profiles", profiles]).args(extra).args(files);
        command.output().unwrap()
    };
    let ok = run(&[&good], &[]);
    assert_eq!(ok.status.code(), Some(0));
    let outcome: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let both = run(&[&good, &bad], &[]);
    assert_eq!(both.status.code(), Some(1));
    let bundle: Value = serde_json::from_slice(&both.stdout).unwrap();
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 2);
    let summary = run(&[&good, &bad], &["--summary"]);
    let text = String::from_utf8_lossy(&summary.stdout);
    assert!(text.contains("valid") && text.contains("INVALID") && text.contains("Patient.birthDate"), "{text}");
    assert_eq!(run(&[&folder.join("missing.json")], &[]).status.code(), Some(2));
    let repeated = folder.join("repeated.json");
    std::fs::write(&repeated, r#"{"resourceType":"Patient","gender":"male","gender":"female"}"#).unwrap();
    let refused = run(&[&repeated], &[]);
    assert_eq!(refused.status.code(), Some(2), "a repeated key is not read last-wins");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("'gender' appears more than once") && stderr.contains("Patient.gender"), "{stderr}");

    // `rex validate ... | head`: the reader is gone before rex writes; rex ends as Unix tools do.
    let mut piped = Command::new(REX)
        .args(["validate", "--profiles", profiles, "--summary"])
        .args([&good, &bad])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(piped.stdout.take());
    let closed = piped.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(closed.status.signal(), Some(13), "ended by SIGPIPE: {:?}", closed.status);
    let _ = std::fs::remove_dir_all(&folder);
}

/// Run outside the repository, without `--profiles`, `rex validate` knows rex's profiles: they are
/// built into the binary.
#[test]
fn validate_finds_the_profiles_built_in_wherever_it_runs() {
    let elsewhere = std::env::temp_dir().join(format!("rex-elsewhere-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/invalid/06-patient-missing-gender.json");
    let output = Command::new(REX)
        .current_dir(&elsewhere)
        .env_remove("REX_PROFILES")
        .args([
            "validate",
            "--summary",
            "--profile",
            "https://rex.example/fhir/StructureDefinition/rex-referral-bundle",
        ])
        .arg(fixture)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("Slice 'Bundle.entry:patient'"), "the referral profile was applied: {text}");
    let valid = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/valid/01-cardiology-nstemi-stat-mx.json");
    let output =
        Command::new(REX).current_dir(&elsewhere).env_remove("REX_PROFILES").args(["validate", valid]).output();
    assert_eq!(output.unwrap().status.code(), Some(0), "its declared rex profiles are known");
    let _ = std::fs::remove_dir_all(&elsewhere);
}

/// `rex keys jwks KEY.pem` prints the public JWKS rex derives from the key (no private part).
#[test]
fn keys_jwks_prints_the_public_jwks_of_a_key() {
    let folder = std::env::temp_dir().join(format!("rex-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    let key = folder.join("staff-key.pem");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success());
    let output = Command::new(REX).args(["keys", "jwks"]).arg(&key).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let jwks: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(jwks, rex_auth::SigningKey::from_pem_file(&key).unwrap().public_jwks());
    assert_eq!((jwks["keys"][0]["kty"].as_str(), jwks["keys"][0]["alg"].as_str()), (Some("EC"), Some("ES384")));
    assert!(jwks["keys"][0].get("d").is_none(), "public half only");
    let missing = Command::new(REX).args(["keys", "jwks"]).arg(folder.join("none.pem")).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&folder);
}
