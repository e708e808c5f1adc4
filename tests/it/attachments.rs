//! Large attachments as raw Binary content: uploaded and downloaded as streams, stored in chunks,
//! in the uploading partner's compartment.

use reqwest::{Method, StatusCode};

use crate::support::{PARTNER_A, PARTNER_B, TestApp, backend_tests};

backend_tests!(
    @on sqlite_secured, postgres_secured;
    raw_binaries_round_trip_in_chunks,
);

async fn raw_binaries_round_trip_in_chunks(app: &TestApp) {
    let a = app.partner_token(PARTNER_A, "system/*.cruds").await;
    // 1.5 MB of a "PDF": several chunks, and bytes that are not valid UTF-8.
    let content: Vec<u8> = (0..1_500_000u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/Binary", app.base))
        .bearer_auth(&a)
        .header("content-type", "application/pdf")
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let binary: serde_json::Value = created.json().await.unwrap();
    let id = binary["id"].as_str().unwrap().to_string();
    assert_eq!(binary["contentType"], "application/pdf");
    assert!(binary.get("data").is_none(), "the content is not in the resource: {binary}");

    let download = client
        .get(format!("{}/Binary/{id}", app.base))
        .bearer_auth(&a)
        .header("accept", "application/pdf")
        .send()
        .await;
    let download = download.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["content-type"], "application/pdf");
    assert_eq!(download.bytes().await.unwrap().as_ref(), content.as_slice());

    // As FHIR JSON, the resource itself; another partner does not see it at all.
    let resource = app.send_as(&a, Method::GET, &format!("Binary/{id}"), None).await;
    assert_eq!(resource.body["resourceType"], "Binary");
    let b = app.partner_token(PARTNER_B, "system/*.cruds").await;
    let hidden = client.get(format!("{}/Binary/{id}", app.base)).bearer_auth(&b).header("accept", "application/pdf");
    assert_eq!(hidden.send().await.unwrap().status(), StatusCode::NOT_FOUND);
}
