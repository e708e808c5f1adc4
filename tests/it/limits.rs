//! Bounded cost: searches and writes that would cost more than rex allows are refused with
//! `too-costly` naming the limit, never a 500 or minutes of work, and none starves `/health/live`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, TestApp, backend_tests};

backend_tests!(
    many_search_values_and_parameters_are_refused,
    repeated_and_excessive_sort_keys_are_refused,
    huge_arrays_and_index_values_are_refused,
    liveness_holds_while_huge_creates_run,
    searches_past_their_timeout_are_cancelled,
    conditional_writes_past_the_search_timeout_are_refused,
);

fn assert_too_costly(reply: &Reply, limit: &str, at: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.issue_code(), "too-costly", "{}", reply.body);
    assert_eq!(reply.issue_expression(), at, "{}", reply.body);
    let diagnostics = reply.body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(diagnostics.contains(limit), "the message names the limit {limit}: {diagnostics}");
}

async fn post_search(app: &TestApp, form: String) -> Reply {
    app.send(Method::POST, "Patient/_search", &[("content-type", "application/x-www-form-urlencoded")], Some(form))
        .await
}

async fn many_search_values_and_parameters_are_refused(app: &TestApp) {
    app.create(&json!({"resourceType": "Patient", "name": [{"family": "v7"}]})).await;
    let values = |n: usize| (0..n).map(|i| format!("v{i}")).collect::<Vec<_>>().join(",");
    // 1,001 values made SQLite refuse the statement ("Expression tree is too large"): a 500.
    let reply = app.get(&format!("Patient?name={}", values(1001))).await;
    assert_too_costly(&reply, "100", "name");
    assert_eq!(app.search_ids(&format!("Patient?name={}", values(100))).await.len(), 1);
    let pairs = (0..20_000).map(|i| format!("name=v{i}")).collect::<Vec<_>>().join("&");
    assert_too_costly(&post_search(app, pairs).await, "50", "name");
    let pairs = (0..50).map(|_| "name=v7").collect::<Vec<_>>().join("&");
    assert_eq!(post_search(app, pairs).await.status, StatusCode::OK);
    let spread = (0..3).map(|_| format!("name={}", values(100))).collect::<Vec<_>>().join("&");
    assert_too_costly(&post_search(app, spread).await, "200", "name");
}

async fn repeated_and_excessive_sort_keys_are_refused(app: &TestApp) {
    let repeated = app.get("Patient?_sort=birthdate,-birthdate").await;
    assert_eq!(repeated.status, StatusCode::BAD_REQUEST);
    assert_eq!((repeated.issue_code(), repeated.issue_expression()), ("invalid", "_sort"));
    // Hundreds of repeated keys took 68 s on a few thousand Patients.
    let hundreds = vec!["birthdate"; 300].join(",");
    let reply = app.get(&format!("Patient?_sort={hundreds}")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let six = app.get("Patient?_sort=_id,_lastUpdated,birthdate,name,family,given").await;
    assert_too_costly(&six, "5", "_sort");
    assert_eq!(app.get("Patient?_sort=_id,_lastUpdated,birthdate,name,family").await.status, StatusCode::OK);
}

fn patient_with_given_names(count: usize) -> Value {
    let given: Vec<String> = (0..count).map(|n| format!("g{n}")).collect();
    json!({"resourceType": "Patient", "name": [{"family": "Many", "given": given}]})
}

async fn huge_arrays_and_index_values_are_refused(app: &TestApp) {
    // 50,000 given names (about 500 KB) took 15.6 s to create: a quadratic step per value.
    let started = Instant::now();
    let reply = app.post("Patient", &patient_with_given_names(50_000)).await;
    assert_too_costly(&reply, "10000", "Patient.name[0].given");
    // Under the array limit, but more index values than allowed.
    let reply = app.post("Patient", &patient_with_given_names(5_000)).await;
    assert_too_costly(&reply, "2000", "Patient.name.given");
    assert!(started.elapsed() < Duration::from_secs(60), "refused in {:?}", started.elapsed());
    assert_eq!(app.total("Patient?family=many").await, 0, "nothing was written");
    assert_eq!(app.post("Patient", &patient_with_given_names(500)).await.status, StatusCode::CREATED);
    // In a Bundle the location is the entry's.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:9d1a1c55-5c8e-4e4b-9a5b-0c6f2a1d7e01",
        "resource": patient_with_given_names(5_000),
        "request": {"method": "POST", "url": "Patient"}}]});
    let reply = app.post("", &bundle).await;
    assert_too_costly(&reply, "2000", "Bundle.entry[0].resource.name.given");
}

/// Two creates of half a megabyte each that were quadratic held both async workers of a two-core
/// machine for a minute: `/health/live` must answer meanwhile. The bound is generous (a liveness
/// property, not a timing): the server must answer within seconds, not after the creates.
async fn liveness_holds_while_huge_creates_run(app: &TestApp) {
    let huge = patient_with_given_names(9_000);
    let creates = async {
        let (first, second) = tokio::join!(app.post("Patient", &huge), app.post("Patient", &huge));
        (first.status, second.status)
    };
    let probes = async {
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let started = Instant::now();
            let live = app.get(&format!("{}/health/live", app.base.trim_end_matches("/fhir"))).await;
            assert_eq!(live.status, StatusCode::OK);
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        slowest
    };
    let ((first, second), slowest) = tokio::join!(creates, probes);
    assert_eq!((first, second), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST));
    assert!(slowest < Duration::from_secs(5), "/health/live took {slowest:?} while the creates ran");
}

/// Observations written straight through the store (no HTTP, no validation), in one transaction.
async fn fill_observations(app: &TestApp, count: usize) {
    let mut tx = app.store.begin(rex_store::Isolation::Serializable).await.unwrap();
    for n in 0..count {
        let observation = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": format!("{}", n % 50)}]},
            "effectiveDateTime": format!("{}-{:02}-{:02}", 1990 + n % 35, 1 + n % 12, 1 + n % 28)});
        tx.create("Observation", &format!("o{n}"), observation).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// A search past `--search-timeout` is stopped in the database and answered 400 `too-costly`;
/// the connections it used serve the next searches as before.
async fn searches_past_their_timeout_are_cancelled(app: &TestApp) {
    fill_observations(app, 3000).await;
    let expensive = "Observation?date=ge1900&code=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15&_sort=-date&_total=accurate";
    let full = app.get(expensive).await;
    assert_eq!(full.status, StatusCode::OK, "{}", full.body);
    assert_eq!(full.body["total"], 900);
    app.store.set_search_timeout(Duration::from_millis(1));
    for _ in 0..3 {
        let stopped = app.get(expensive).await;
        assert_too_costly(&stopped, "1 ms", "");
    }
    app.store.set_search_timeout(Duration::from_secs(30));
    for _ in 0..10 {
        let again = app.get(expensive).await;
        assert_eq!((again.status, &again.body["total"]), (StatusCode::OK, &json!(900)), "{}", again.body);
    }
}

/// The search of a conditional create runs inside the write transaction (on SQLite, holding the
/// one writer): past `--search-timeout` it is stopped, the write refused as too costly and nothing
/// of it kept; the writes after it run as before.
async fn conditional_writes_past_the_search_timeout_are_refused(app: &TestApp) {
    fill_observations(app, 3000).await;
    let observation = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}});
    // Every Observation is a candidate for the first criterion and none meets the second.
    let condition = "date=ge1900&date=lt1900&code:not=8867-4";
    let create = |condition: &'static str| {
        let body = observation.to_string();
        async move {
            app.send(
                Method::POST,
                "Observation",
                &[("content-type", "application/fhir+json"), ("if-none-exist", condition)],
                Some(body),
            )
            .await
        }
    };
    app.store.set_search_timeout(Duration::from_millis(1));
    for _ in 0..3 {
        let refused = create(condition).await;
        assert_eq!((refused.status, refused.issue_code()), (StatusCode::BAD_REQUEST, "too-costly"), "{}", refused.body);
        assert!(refused.body.to_string().contains("1 ms"), "{}", refused.body);
    }
    app.store.set_search_timeout(Duration::from_secs(30));
    assert_eq!(app.total("Observation?code=8867-4").await, 0, "nothing of the refused creates is kept");
    let unmatched = create(condition).await;
    assert_eq!(unmatched.status, StatusCode::CREATED, "no match: {}", unmatched.body);
    for _ in 0..5 {
        let created = create("code=http://loinc.org|8867-4").await;
        assert!(matches!(created.status, StatusCode::CREATED | StatusCode::OK), "{}", created.body);
    }
    assert_eq!(app.total("Observation?code=8867-4").await, 1);
}
