//! Concurrent writers: conditional creates never duplicate, optimistic locking lets one of many
//! racing updates win, and concurrent transactions stay atomic.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, backend_tests};

backend_tests!(
    concurrent_conditional_creates_make_one,
    concurrent_updates_with_if_match_one_wins,
    concurrent_plain_updates_all_land
);

const WRITERS: usize = 25;

async fn concurrent_conditional_creates_make_one(app: &TestApp) {
    let resource =
        json!({"resourceType": "Patient", "identifier": [{"system": "http://partner.example/mrn", "value": "RACE-1"}]})
            .to_string();
    let headers =
        [("content-type", "application/fhir+json"), ("if-none-exist", "identifier=http://partner.example/mrn|RACE-1")];
    let replies = futures_join(WRITERS, |_| app.send(Method::POST, "Patient", &headers, Some(resource.clone()))).await;
    let created = replies.iter().filter(|r| r.status == StatusCode::CREATED).count();
    let found = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(
        (created, found),
        (1, WRITERS - 1),
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(app.total("Patient").await, 1);
}

async fn concurrent_updates_with_if_match_one_wins(app: &TestApp) {
    let id = app.create(&json!({"resourceType": "Patient", "active": true})).await;
    let path = format!("Patient/{id}");
    let body = json!({"resourceType": "Patient", "id": id, "active": false}).to_string();
    let headers = [("content-type", "application/fhir+json"), ("if-match", "W/\"1\"")];
    let replies = futures_join(WRITERS, |_| app.send(Method::PUT, &path, &headers, Some(body.clone()))).await;
    let won = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    let lost = replies.iter().filter(|r| r.status == StatusCode::PRECONDITION_FAILED).count();
    assert_eq!((won, lost), (1, WRITERS - 1));
    assert_eq!(app.get(&path).await.body["meta"]["versionId"], "2");
}

async fn concurrent_plain_updates_all_land(app: &TestApp) {
    let id = app.create(&json!({"resourceType": "Patient"})).await;
    let path = format!("Patient/{id}");
    let replies = futures_join(WRITERS, |n| {
        let body = json!({"resourceType": "Patient", "id": id, "birthDate": format!("19{:02}-01-01", n)}).to_string();
        let path = path.clone();
        async move { app.send(Method::PUT, &path, &[("content-type", "application/fhir+json")], Some(body)).await }
    })
    .await;
    assert!(
        replies.iter().all(|r| r.status == StatusCode::OK),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!(app.get(&path).await.body["meta"]["versionId"], (WRITERS + 1).to_string());
    assert_eq!(app.get(&format!("{path}/_history")).await.body["total"], WRITERS + 1);
}

/// Runs `n` requests at once and collects their replies.
async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures::future::join_all((0..n).map(make)).await
}

/// Several instances behind a load balancer on one PostgreSQL: claims on one Task sent to both
/// instances at once have one winner, and the same referral sent to both at once is one referral.
#[tokio::test]
#[ignore = "needs PostgreSQL: set REX_TEST_POSTGRES_URL and run with --ignored"]
async fn two_instances_share_claims_and_de_duplication() {
    let app = TestApp::postgres().await;
    let other = app.another_instance().await;
    let bases = [app.base.clone(), other];
    let bundle = crate::intake::referral("MI-1", "I25.10", "urgent", "en", false);
    let urls: Vec<String> = (0..6).map(|n| format!("{}/", bases[n % 2])).collect();
    let sends = urls.iter().map(|url| app.post(url, &bundle));
    let replies = futures::future::join_all(sends).await;
    assert!(
        replies.iter().all(|r| r.status == StatusCode::OK),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!(app.total("ServiceRequest?identifier=https://hospital-angeles.mx/fhir/referral|MI-1").await, 1);
    let task = replies[0].body["link"][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let requests: Vec<(String, serde_json::Value)> = (0..20)
        .map(|n| {
            let body = json!({"resourceType": "Parameters", "parameter": [
                {"name": "owner", "valueReference": {"reference": format!("PractitionerRole/dr-{n}")}}]});
            (format!("{}/Task/{task}/$claim", bases[n % 2]), body)
        })
        .collect();
    let claims = requests.iter().map(|(url, body)| app.post(url, body));
    let replies = futures::future::join_all(claims).await;
    let winners = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(winners, 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    app.cleanup().await;
}

/// Instances starting together on a fresh database apply the migrations once (the others wait).
#[tokio::test]
#[ignore = "needs PostgreSQL: set REX_TEST_POSTGRES_URL and run with --ignored"]
async fn instances_starting_together_migrate_once() {
    let admin = std::env::var("REX_TEST_POSTGRES_URL").expect("REX_TEST_POSTGRES_URL");
    let name = format!("rex_t_{}", uuid::Uuid::new_v4().simple());
    let url = rex_store::create_postgres_database(&admin, &name).await.unwrap();
    let starts = (0..4).map(|_| rex_store::Store::connect(&url));
    let stores = futures::future::join_all(starts).await;
    assert!(stores.iter().all(Result::is_ok), "every instance starts");
    let store = stores.into_iter().next().unwrap().unwrap();
    // The last migrations' tables are there.
    assert_eq!(store.outbox_counts().await.unwrap(), rex_store::OutboxCounts::default());
    assert!(store.record_assertion("p|j", 10, 0).await.unwrap());
    store.close().await;
    rex_store::drop_postgres_database(&admin, &name).await.unwrap();
}
