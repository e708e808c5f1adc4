//! The partner conformance scorecard (`GET /fhir/$partner-scorecard`, `rex report scorecard`): its
//! counts are what the partner sent, refused Bundles and their rules included; no refused content
//! is kept; partners read only their own; CSV; the terminal report.

use std::path::PathBuf;
use std::process::Command;

use reqwest::{Method, StatusCode};
use rex_auth::StaffRole;
use rex_store::{Backend, Store, Submission, SubmissionIssue};
use serde_json::{Value, json};

use crate::intake::referral;
use crate::support::{PARTNER_A, PARTNER_B, TestApp, backend_tests};

backend_tests!(@on sqlite_secured, postgres_secured;
    counts_are_what_the_partner_sent,
    partners_read_only_their_own_scorecard,
    scorecard_as_csv,
);

const ALL: &str = "system/*.cruds";
const REX: &str = env!("CARGO_BIN_EXE_rex");

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/invalid").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Posts a body as `token` to `path` and returns the status.
async fn submit(app: &TestApp, token: &str, path: &str, body: String) -> StatusCode {
    let authorization = format!("Bearer {token}");
    let headers = [("authorization", authorization.as_str()), ("content-type", "application/fhir+json")];
    app.send(Method::POST, path, &headers, Some(body)).await.status
}

fn coordinator(app: &TestApp) -> String {
    app.auth.as_ref().unwrap().staff_token(StaffRole::Coordinator, None, &[])
}

/// A named parameter's value (`valueInteger`, ...) of a Parameters resource.
fn value<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    let parameter = parameters["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name);
    parameter
        .unwrap_or_else(|| panic!("no parameter {name} in {parameters}"))
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("value"))
        .unwrap()
        .1
}

/// The parts of each repeated parameter `name`, as (part name → value) objects.
fn parts(parameters: &Value, name: &str) -> Vec<Value> {
    let repeated = parameters["parameter"].as_array().unwrap().iter().filter(|p| p["name"] == name);
    repeated
        .map(|p| {
            let mut object = serde_json::Map::new();
            for part in p["part"].as_array().unwrap() {
                let value = part.as_object().unwrap().iter().find(|(k, _)| k.starts_with("value")).unwrap().1;
                object.insert(part["name"].as_str().unwrap().to_string(), value.clone());
            }
            Value::Object(object)
        })
        .collect()
}

async fn counts_are_what_the_partner_sent(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, ALL).await;
    let mut statuses = Vec::new();
    // Two referrals accepted.
    for number in ["SC-1", "SC-2"] {
        statuses.push(submit(app, &partner, "", referral(number, "I25.10", "routine", "en", false).to_string()).await);
    }
    // Refused Bundles: the same mistake twice, two others, and JSON that does not parse.
    for name in [
        "06-patient-missing-gender.json",
        "06-patient-missing-gender.json",
        "05-patient-birthdate-local-format.json",
        "08-duplicate-fullurl.json",
        "15-json-trailing-comma.json",
    ] {
        statuses.push(submit(app, &partner, "", fixture(name)).await);
    }
    // A message Bundle without its MessageHeader, and a batch with one bad entry (answered 200).
    let message = json!({"resourceType": "Bundle", "type": "message", "entry": []});
    statuses.push(submit(app, &partner, "$process-message", message.to_string()).await);
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "bogus": true}, "request": {"method": "POST", "url": "Patient"}}]});
    statuses.push(submit(app, &partner, "", batch.to_string()).await);
    let accepted = statuses.iter().filter(|s| s.is_success()).count() as i64;
    assert_eq!(accepted, 3, "two referrals and the batch are accepted: {statuses:?}");
    // Another partner's submission is not counted for A.
    let other = app.partner_token(PARTNER_B, ALL).await;
    submit(app, &other, "", fixture("05-patient-birthdate-local-format.json")).await;
    // A coordinator claims one referral: its first specialist action.
    let staff = coordinator(app);
    let tasks = app.send_as(&staff, Method::GET, "Task?_count=10", None).await.body;
    let task = tasks["entry"][0]["resource"]["id"].as_str().expect("a referral Task").to_string();
    let owner = json!({"resourceType": "Parameters", "parameter": [
        {"name": "owner", "valueReference": {"reference": "PractitionerRole/dr-lee"}}]});
    let claimed = app.send_as(&staff, Method::POST, &format!("Task/{task}/$claim"), Some(&owner)).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);

    let reply = app.send_as(&partner, Method::GET, "$partner-scorecard", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let card = &reply.body;
    assert_eq!(card["resourceType"], "Parameters");
    assert_eq!(value(card, "partner"), PARTNER_A);
    assert_eq!(value(card, "submissions"), statuses.len() as i64);
    assert_eq!(value(card, "accepted"), accepted);
    assert_eq!(value(card, "refused"), statuses.len() as i64 - accepted);
    assert_eq!(value(card, "acceptance-rate").as_f64().unwrap(), ((accepted as f64 / 9.0) * 1000.0).round() / 1000.0);
    let kinds: Vec<(String, i64, i64)> = parts(card, "kind")
        .iter()
        .map(|k| {
            (k["code"].as_str().unwrap().into(), k["submissions"].as_i64().unwrap(), k["accepted"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("batch".into(), 1, 1), ("message".into(), 1, 0), ("other".into(), 1, 0), ("transaction".into(), 6, 2)]
    );
    assert_eq!(value(card, "referrals"), 2);
    assert_eq!(value(card, "referrals-acted-on"), 1);
    assert_eq!(value(card, "median-time-to-first-action")["code"], "s");

    let rules = parts(card, "rule");
    let rule = |key: &str| {
        rules.iter().find(|r| r["key"] == key).unwrap_or_else(|| panic!("no rule {key} in {rules:?}")).clone()
    };
    let gender = rule("required@Patient.gender");
    assert_eq!(gender["submissions"], 2, "{gender}");
    assert_eq!(gender["count"], 2, "{gender}");
    assert_eq!(gender["example-location"], "Bundle.entry[3].resource.gender");
    assert_eq!(rule("value@Patient.birthDate")["submissions"], 1);
    assert_eq!(rule("duplicate@Bundle.entry.fullUrl")["example-location"], "Bundle.entry[8].fullUrl");
    assert_eq!(rule("structure@Patient.bogus")["example-location"], "Bundle.entry[0].resource.bogus");
    // The Patient entries that fail their profile also miss the referral Bundle's patient slice.
    assert_eq!(rule("required@Bundle.entry:patient")["count"], 3);
    // It is the most frequent, but a follow-on of the Patients' own errors: the causes come first.
    assert_eq!(rules[0]["key"], "required@Patient.gender", "the most frequent cause comes first: {rules:?}");
    assert_eq!(rules.last().unwrap()["key"], "required@Bundle.entry:patient", "{rules:?}");

    let days = parts(card, "day");
    assert_eq!(days.len(), 30, "the last 30 days");
    let today = days.last().unwrap();
    assert_eq!(today["date"], chrono::Utc::now().date_naive().to_string());
    assert_eq!((today["submissions"].as_i64(), today["accepted"].as_i64()), (Some(9), Some(accepted)));

    // Nothing of the refused content is kept: no names or identifiers of the refused patients.
    let text = card.to_string();
    let refused = fixture("06-patient-missing-gender.json") + &fixture("05-patient-birthdate-local-format.json");
    // The birth date is quoted by the issue text ("Not a valid date: '04/07/1960'").
    for secret in ["Tan Wei Ling", "RH-10447392", "S8802174H", "04/07/1960"] {
        assert!(refused.contains(secret), "{secret} is in the fixtures");
        assert!(!text.contains(secret), "the scorecard shows {secret}");
    }
    // A period before anything was sent is empty.
    let empty = app.send_as(&partner, Method::GET, "$partner-scorecard?period=2020-01", None).await;
    assert_eq!(value(&empty.body, "submissions"), 0);
    assert_eq!(parts(&empty.body, "day").len(), 31);
}

async fn partners_read_only_their_own_scorecard(app: &TestApp) {
    let a = app.partner_token(PARTNER_A, ALL).await;
    let b = app.partner_token(PARTNER_B, ALL).await;
    submit(app, &a, "", fixture("06-patient-missing-gender.json")).await;
    let path = format!("$partner-scorecard?partner={PARTNER_A}");
    let refused = app.send_as(&b, Method::GET, &path, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(refused.issue_code(), "forbidden");
    let own = app.send_as(&b, Method::GET, "$partner-scorecard", None).await;
    assert_eq!((value(&own.body, "partner"), value(&own.body, "submissions")), (&json!(PARTNER_B), &json!(0)));
    let auth = app.auth.as_ref().unwrap();
    let specialist = auth.staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-heart"), &["cardiology"]);
    assert_eq!(app.send_as(&specialist, Method::GET, &path, None).await.status, StatusCode::FORBIDDEN);
    let staff = coordinator(app);
    let theirs = app.send_as(&staff, Method::GET, &path, None).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
    assert_eq!(value(&theirs.body, "submissions"), 1);
    let admin = auth.staff_token(StaffRole::Admin, None, &[]);
    assert_eq!(app.send_as(&admin, Method::GET, &path, None).await.status, StatusCode::OK);
    // Errors are OperationOutcomes with their statuses.
    let unnamed = app.send_as(&staff, Method::GET, "$partner-scorecard", None).await;
    assert_eq!((unnamed.status, unnamed.issue_code()), (StatusCode::BAD_REQUEST, "required"));
    let unknown = app.send_as(&staff, Method::GET, "$partner-scorecard?partner=nobody", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad_period = app.send_as(&staff, Method::GET, &format!("{path}&period=yesterday"), None).await;
    assert_eq!((bad_period.status, bad_period.issue_expression()), (StatusCode::BAD_REQUEST, "period"));
    let unknown_parameter = app.send_as(&staff, Method::GET, &format!("{path}&since=2026"), None).await;
    assert_eq!((unknown_parameter.status, unknown_parameter.issue_code()), (StatusCode::BAD_REQUEST, "not-supported"));
}

async fn scorecard_as_csv(app: &TestApp) {
    let partner = app.partner_token(PARTNER_A, ALL).await;
    submit(app, &partner, "", referral("CSV-1", "I25.10", "routine", "en", false).to_string()).await;
    submit(app, &partner, "", fixture("06-patient-missing-gender.json")).await;
    let client = reqwest::Client::new();
    let url = format!("{}/$partner-scorecard", app.base);
    for request in [
        client.get(format!("{url}?_format=text/csv")),
        client.get(format!("{url}?_format=csv")),
        client.get(&url).header("accept", "text/csv"),
    ] {
        let response = request.bearer_auth(&partner).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
        let csv = response.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "section,key,value,example_location,profile");
        for row in [
            format!("summary,partner,{PARTNER_A},,"),
            "summary,submissions,2,,".into(),
            "summary,accepted,1,,".into(),
            "summary,acceptance-rate,0.500,,".into(),
            "kind-submissions,transaction,2,,".into(),
            format!("day-refused,{},1,,", chrono::Utc::now().date_naive()),
            "rule,required@Patient.gender,1,Bundle.entry[3].resource.gender,".into(),
        ] {
            assert!(lines.contains(&row.as_str()), "no row {row} in\n{csv}");
        }
    }
    // Asked for XML, the Parameters come as FHIR XML; a format rex does not write is refused.
    let auth = format!("Bearer {partner}");
    let (status, headers, xml) =
        app.send_text(Method::GET, "$partner-scorecard?_format=xml", &[("authorization", &auth)], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-type").unwrap(), "application/fhir+xml; charset=utf-8");
    assert!(xml.contains("<Parameters xmlns=\"http://hl7.org/fhir\">"), "{xml}");
    let turtle = app.send(Method::GET, "$partner-scorecard?_format=ttl", &[("authorization", &auth)], None).await;
    assert_eq!(turtle.status, StatusCode::NOT_ACCEPTABLE);
}

/// `rex report scorecard` reads a database the test fills itself (the test app's database URL is
/// its own), so the expected figures are exact.
mod report {
    use super::*;

    backend_tests!(report_prints_the_scorecard_with_a_trend_chart);

    /// A scratch database of the app's backend, for the `rex` binary to read; returns its URL.
    async fn scratch_database(app: &TestApp) -> String {
        match app.store.backend() {
            Backend::Sqlite => {
                format!(
                    "sqlite://{}",
                    std::env::temp_dir().join(format!("rex-report-{}.db", uuid::Uuid::new_v4())).display()
                )
            }
            Backend::Postgres => {
                let admin = std::env::var("REX_TEST_POSTGRES_URL").unwrap();
                let name = format!("rex_r_{}", uuid::Uuid::new_v4().simple());
                rex_store::create_postgres_database(&admin, &name).await.unwrap()
            }
        }
    }

    async fn drop_scratch_database(url: &str) {
        match url.strip_prefix("sqlite://") {
            Some(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
            None => {
                let admin = std::env::var("REX_TEST_POSTGRES_URL").unwrap();
                let name = url.rsplit('/').next().unwrap();
                rex_store::drop_postgres_database(&admin, name).await.unwrap();
            }
        }
    }

    async fn report_prints_the_scorecard_with_a_trend_chart(app: &TestApp) {
        let url = scratch_database(app).await;
        let store = Store::connect(&url).await.unwrap();
        let now = rex_store::now_micros();
        let day = 86_400_000_000;
        let issue = SubmissionIssue {
            severity: "error".into(),
            code: "required".into(),
            rule: "required@Patient.gender".into(),
            location: Some("Bundle.entry[3].resource.gender".into()),
            profile: None,
        };
        // Yesterday 3 accepted and 1 refused, today 1 refused.
        // The Patient's missing gender also leaves the Bundle's patient slice unfilled: a follow-on
        // error, reported twice as often here, and still ranked after its cause.
        let follow_on = SubmissionIssue {
            rule: "required@Bundle.entry:patient".into(),
            location: Some("Bundle.entry".into()),
            ..issue.clone()
        };
        for (received, accepted) in
            [(now - day, true), (now - day, true), (now - day, true), (now - day, false), (now, false)]
        {
            let issues = if accepted { Vec::new() } else { vec![follow_on.clone(), issue.clone(), follow_on.clone()] };
            let submission = Submission {
                partner: PARTNER_A.into(),
                received,
                kind: "transaction".into(),
                accepted,
                status: if accepted { 200 } else { 422 },
                issue_count: issues.len(),
                issues,
            };
            store.record_submission(&submission).await.unwrap();
        }
        store.close().await;
        let since = chrono::DateTime::from_timestamp_micros(now - day).unwrap().date_naive().to_string();
        let output = Command::new(REX)
            .args(["report", "scorecard", "--partner", PARTNER_A, "--since", &since, "--database", &url])
            .output()
            .unwrap();
        drop_scratch_database(&url).await;
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(output.status.success(), "rex report failed: {}{text}", String::from_utf8_lossy(&output.stderr));
        assert!(text.contains(&format!("Conformance scorecard of {PARTNER_A}")), "{text}");
        assert!(text.contains("submissions       5"), "{text}");
        assert!(text.contains("accepted          3 (60.0 %)"), "{text}");
        assert!(text.contains("refused           2"), "{text}");
        assert!(text.contains("     2      2  required@Patient.gender  at Bundle.entry[3].resource.gender"), "{text}");
        let cause = text.find("required@Patient.gender").unwrap();
        let follow_on = text.find("     4      2  required@Bundle.entry:patient").expect("the follow-on error");
        assert!(cause < follow_on, "the root cause ranks first:\n{text}");
        // The busiest day fills the chart: 3 accepted and 1 refused of 4 is 30 + 10 characters.
        let bar = format!("{since} {}{} 4", "#".repeat(30), "x".repeat(10));
        assert!(text.contains(&bar), "no line {bar:?} in\n{text}");
        let today = chrono::DateTime::from_timestamp_micros(now).unwrap().date_naive();
        assert!(text.contains(&format!("{today} {}", "x".repeat(10))), "{text}");
        // A partner the database never heard of is an error, as the API's 404, not a card of zeros.
        let url = scratch_database(app).await;
        Store::connect(&url).await.unwrap().close().await;
        let nobody = Command::new(REX)
            .args(["report", "scorecard", "--partner", "nobody", "--database", &url])
            .output()
            .unwrap();
        drop_scratch_database(&url).await;
        assert_eq!(nobody.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&nobody.stderr).contains("no partner 'nobody'"), "{nobody:?}");
        let missing = Command::new(REX)
            .args(["report", "scorecard", "--partner", PARTNER_A, "--database", "sqlite:///nonexistent/rex.db"])
            .output()
            .unwrap();
        assert!(!missing.status.success());
    }
}
