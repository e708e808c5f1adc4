//! Search: parameter types, modifiers, prefixes, OR and AND, paging, sorting, includes and totals.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, backend_tests};

backend_tests!(
    string_search,
    token_search,
    reference_search,
    date_search,
    quantity_and_number_search,
    uri_tag_profile_and_last_updated,
    paging_sorting_and_totals,
    include_and_revinclude,
    bad_search_requests,
    post_search,
    task_queue_pages,
);

async fn seed_patients(app: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    for (family, given, gender, birth, mrn) in [
        ("Müller", "Jörg", "male", "1950-03-04", "A1"),
        ("Mueller", "Anna", "female", "1972-11-30", "A2"),
        ("Al-Sayed", "Fatima", "female", "1990", "B7"),
        ("Chen", "Wei", "male", "2001-07", "C3"),
    ] {
        ids.push(
            app.create(&json!({
                "resourceType": "Patient",
                "identifier": [{"system": "http://partner.example/mrn", "value": mrn}],
                "name": [{"family": family, "given": [given]}],
                "gender": gender,
                "birthDate": birth,
                "telecom": [{"system": "phone", "value": format!("+1-555-{mrn}")}],
            }))
            .await,
        );
    }
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn string_search(app: &TestApp) {
    let ids = seed_patients(app).await;
    assert_eq!(sorted(app.search_ids("Patient?name=muller").await), sorted(vec![ids[0].clone()]));
    assert_eq!(sorted(app.search_ids("Patient?family=MU").await), sorted(vec![ids[0].clone(), ids[1].clone()]));
    assert_eq!(app.search_ids("Patient?family:exact=Müller").await, vec![ids[0].clone()]);
    assert!(app.search_ids("Patient?family:exact=müller").await.is_empty());
    assert_eq!(app.search_ids("Patient?name:contains=saye").await, vec![ids[2].clone()]);
    assert_eq!(sorted(app.search_ids("Patient?given=wei,fatima").await), sorted(vec![ids[2].clone(), ids[3].clone()]));
    // Repeated parameters AND together.
    assert_eq!(app.search_ids("Patient?family=mu&given=anna").await, vec![ids[1].clone()]);
    assert!(app.search_ids("Patient?family=mu&given=wei").await.is_empty());
    // Percent-encoded values decode the same.
    assert_eq!(app.search_ids("Patient?family=M%C3%BCller").await.len(), 1);
}

async fn token_search(app: &TestApp) {
    let ids = seed_patients(app).await;
    assert_eq!(app.search_ids("Patient?identifier=http://partner.example/mrn|A2").await, vec![ids[1].clone()]);
    assert_eq!(
        app.search_ids("Patient?identifier=http%3A%2F%2Fpartner.example%2Fmrn%7CA2").await,
        vec![ids[1].clone()]
    );
    assert_eq!(app.search_ids("Patient?identifier=B7").await, vec![ids[2].clone()]);
    assert!(app.search_ids("Patient?identifier=|B7").await.is_empty());
    assert_eq!(app.search_ids("Patient?identifier=http://partner.example/mrn|").await.len(), 4);
    assert_eq!(sorted(app.search_ids("Patient?gender=female").await), sorted(vec![ids[1].clone(), ids[2].clone()]));
    assert_eq!(sorted(app.search_ids("Patient?gender:not=female").await), sorted(vec![ids[0].clone(), ids[3].clone()]));
    assert_eq!(app.search_ids("Patient?phone=+1-555-C3").await.len(), 0, "a raw + decodes as a space");
    assert_eq!(app.search_ids("Patient?phone=%2B1-555-C3").await, vec![ids[3].clone()]);
    assert_eq!(app.search_ids(&format!("Patient?_id={}", ids[0])).await, vec![ids[0].clone()]);
    let without_gender = app.create(&json!({"resourceType": "Patient", "name": [{"family": "Nobody"}]})).await;
    assert_eq!(app.search_ids("Patient?gender:missing=true").await, vec![without_gender]);
    assert_eq!(app.search_ids("Patient?gender:missing=false").await.len(), 4);
}

async fn reference_search(app: &TestApp) {
    let ids = seed_patients(app).await;
    let observation = |subject: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": subject}})
    };
    let first = app.create(&observation(&format!("Patient/{}", ids[0]))).await;
    let second = app.create(&observation(&format!("Patient/{}", ids[1]))).await;
    assert_eq!(app.search_ids(&format!("Observation?subject=Patient/{}", ids[0])).await, vec![first.clone()]);
    assert_eq!(app.search_ids(&format!("Observation?subject=Patient%2F{}", ids[0])).await, vec![first.clone()]);
    assert_eq!(app.search_ids(&format!("Observation?patient={}", ids[1])).await, vec![second.clone()]);
    assert_eq!(app.search_ids(&format!("Observation?subject:Patient={}", ids[1])).await, vec![second]);
    assert_eq!(app.search_ids("Observation?code=http://loinc.org|8867-4").await.len(), 2);
}

async fn date_search(app: &TestApp) {
    let ids = seed_patients(app).await;
    // Birth dates: 1950-03-04, 1972-11-30, 1990 (whole year), 2001-07 (whole month).
    assert_eq!(app.search_ids("Patient?birthdate=1950-03-04").await, vec![ids[0].clone()]);
    assert_eq!(app.search_ids("Patient?birthdate=1972").await, vec![ids[1].clone()]);
    assert_eq!(app.search_ids("Patient?birthdate=eq1990").await, vec![ids[2].clone()]);
    assert!(app.search_ids("Patient?birthdate=1990-06-01").await.is_empty(), "a year is not within a single day");
    assert_eq!(sorted(app.search_ids("Patient?birthdate=ge1990").await), sorted(vec![ids[2].clone(), ids[3].clone()]));
    assert_eq!(sorted(app.search_ids("Patient?birthdate=lt1972-11-30").await), sorted(vec![ids[0].clone()]));
    assert_eq!(
        sorted(app.search_ids("Patient?birthdate=le1972-11-30").await),
        sorted(vec![ids[0].clone(), ids[1].clone()])
    );
    assert_eq!(sorted(app.search_ids("Patient?birthdate=gt2001-06-30").await), sorted(vec![ids[3].clone()]));
    assert_eq!(
        sorted(app.search_ids("Patient?birthdate=ge1960&birthdate=lt2000").await),
        sorted(vec![ids[1].clone(), ids[2].clone()])
    );
    assert_eq!(app.search_ids("Patient?birthdate=ne1950-03-04").await.len(), 3);
    let encounter = app
        .create(&json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "VR"},
                         "period": {"start": "2026-01-10T09:00:00Z", "end": "2026-01-10T10:00:00Z"}}))
        .await;
    assert_eq!(app.search_ids("Encounter?date=2026-01-10").await, vec![encounter.clone()]);
    assert_eq!(app.search_ids("Encounter?date=ge2026-01-10T09:30:00Z").await, vec![encounter.clone()]);
    assert!(app.search_ids("Encounter?date=gt2026-01-10T10:30:00Z").await.is_empty());
    assert_eq!(
        app.search_ids("Encounter?date=2026-01-10T09:30:00%2B00:00").await.len(),
        0,
        "a point is not the whole hour"
    );
}

async fn quantity_and_number_search(app: &TestApp) {
    let heart_rate = |value: f64| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "HR"},
               "valueQuantity": {"value": value, "unit": "beats/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
    };
    let slow = app.create(&heart_rate(48.0)).await;
    let fast = app.create(&heart_rate(130.0)).await;
    assert_eq!(app.search_ids("Observation?value-quantity=gt100").await, vec![fast.clone()]);
    assert_eq!(
        app.search_ids("Observation?value-quantity=lt50|http://unitsofmeasure.org|/min").await,
        vec![slow.clone()]
    );
    assert_eq!(app.search_ids("Observation?value-quantity=48").await, vec![slow.clone()]);
    assert_eq!(app.search_ids("Observation?value-quantity=130||/min").await, vec![fast.clone()]);
    assert!(app.search_ids("Observation?value-quantity=130|http://other|/min").await.is_empty());
    let risk = app
        .create(&json!({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/x"},
                                  "prediction": [{"probabilityDecimal": 0.25}]}))
        .await;
    assert_eq!(app.search_ids("RiskAssessment?probability=ge0.2").await, vec![risk.clone()]);
    assert!(app.search_ids("RiskAssessment?probability=gt0.3").await.is_empty());
}

async fn uri_tag_profile_and_last_updated(app: &TestApp) {
    let unknown_profile = app
        .post("Patient", &json!({"resourceType": "Patient", "meta": {"profile": ["https://rex.example/fhir/StructureDefinition/rex-patient"]}}))
        .await;
    assert_eq!(
        unknown_profile.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a declared profile rex does not know is an error"
    );
    let tagged = app
        .create(&json!({"resourceType": "Patient", "meta": {
            "tag": [{"system": "https://rex.example/tags", "code": "sandbox"}],
            "profile": ["https://rex.example/fhir/StructureDefinition/rex-international-patient"]},
            "identifier": [{"system": "https://partner.example/mrn", "value": "1"}], "name": [{"family": "Tagged"}],
            "gender": "other", "birthDate": "1990-01-01", "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]}}]}))
        .await;
    let plain = app.create(&json!({"resourceType": "Patient"})).await;
    assert_eq!(app.search_ids("Patient?_tag=https://rex.example/tags|sandbox").await, vec![tagged.clone()]);
    assert_eq!(
        app.search_ids("Patient?_profile=https://rex.example/fhir/StructureDefinition/rex-international-patient").await,
        vec![tagged.clone()]
    );
    assert_eq!(app.search_ids("Patient?_profile:below=https://rex.example/fhir/").await, vec![tagged.clone()]);
    assert_eq!(app.search_ids("Patient?_lastUpdated=gt2000-01-01").await.len(), 2);
    assert!(app.search_ids("Patient?_lastUpdated=lt2000-01-01").await.is_empty());
    let plan = app.create(&json!({"resourceType": "PlanDefinition", "status": "active", "url": "http://example.org/fhir/PlanDefinition/referral-triage"})).await;
    assert_eq!(
        app.search_ids("PlanDefinition?url=http://example.org/fhir/PlanDefinition/referral-triage").await,
        vec![plan.clone()]
    );
    assert_eq!(app.search_ids("PlanDefinition?url:below=http://example.org/fhir").await, vec![plan]);
    assert_eq!(app.search_ids(&format!("Patient?_id={plain},{tagged}")).await.len(), 2);
}

async fn paging_sorting_and_totals(app: &TestApp) {
    let ids = seed_patients(app).await;
    let reply = app.get("Patient?_count=3&_sort=birthdate").await;
    assert_eq!(reply.body["total"], 4);
    let page: Vec<&str> =
        reply.body["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(page, vec![ids[0].as_str(), ids[1].as_str(), ids[2].as_str()]);
    let links = reply.body["link"].as_array().unwrap();
    let next = links.iter().find(|l| l["relation"] == "next").expect("next link")["url"].as_str().unwrap().to_string();
    let self_link = links.iter().find(|l| l["relation"] == "self").unwrap()["url"].as_str().unwrap();
    assert!(self_link.contains("_sort=birthdate"));
    let second = app.get(&next).await;
    assert_eq!(second.body["entry"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["entry"][0]["resource"]["id"], ids[3].as_str());
    assert!(second.body["link"].as_array().unwrap().iter().all(|l| l["relation"] != "next"));
    assert!(second.body["link"].as_array().unwrap().iter().any(|l| l["relation"] == "previous"));

    let descending = app.search_ids("Patient?_sort=-birthdate").await;
    assert_eq!(descending, vec![ids[3].clone(), ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let by_update = app.search_ids("Patient?_sort=-_lastUpdated").await;
    assert_eq!(by_update.first(), Some(&ids[3]));
    let by_family = app.search_ids("Patient?_sort=family").await;
    assert_eq!(by_family.first(), Some(&ids[2]), "Al-Sayed sorts first");

    let count = app.get("Patient?gender=female&_summary=count").await;
    assert_eq!(count.body["total"], 2);
    assert!(count.body.get("entry").is_none());
    let no_total = app.get("Patient?_total=none").await;
    assert!(no_total.body.get("total").is_none());
    assert_eq!(no_total.body["entry"].as_array().unwrap().len(), 4);
}

async fn include_and_revinclude(app: &TestApp) {
    let organization = app.create(&json!({"resourceType": "Organization", "name": "Hospital San José"})).await;
    let patient = app
        .create(&json!({"resourceType": "Patient", "managingOrganization": {"reference": format!("Organization/{organization}")}}))
        .await;
    let request = app
        .create(&json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                         "subject": {"reference": format!("Patient/{patient}")}}))
        .await;
    let included = app.get(&format!("ServiceRequest?_id={request}&_include=ServiceRequest:subject")).await;
    let entries = included.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["search"]["mode"], "include");
    assert_eq!(entries[1]["resource"]["id"], patient.as_str());
    assert_eq!(included.body["total"], 1, "total counts matches only");
    let iterated = app
        .get(&format!(
            "ServiceRequest?_id={request}&_include=ServiceRequest:subject&_include:iterate=Patient:organization"
        ))
        .await;
    assert_eq!(iterated.body["entry"].as_array().unwrap().len(), 3);
    let reverse = app.get(&format!("Patient?_id={patient}&_revinclude=ServiceRequest:subject")).await;
    let kinds: Vec<&str> = reverse.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["Patient", "ServiceRequest"]);
    let all_refs = app.get(&format!("ServiceRequest?_id={request}&_include=ServiceRequest:*")).await;
    assert_eq!(all_refs.body["entry"].as_array().unwrap().len(), 2);
}

async fn bad_search_requests(app: &TestApp) {
    let unknown = app.get("Patient?favourite-colour=blue").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.issue_code(), "not-supported");
    assert_eq!(unknown.issue_expression(), "favourite-colour");
    let lenient = app.send(Method::GET, "Patient?favourite-colour=blue", &[("prefer", "handling=lenient")], None).await;
    assert_eq!(lenient.status, StatusCode::OK);
    for bad in [
        "Patient?birthdate=1970-13-01",
        "Patient?_count=-1",
        "Patient?_sort=gender",
        "Patient?name:fuzzy=x",
        "Patient?organization.name=x",
        "Patient?_include=Patient:name",
        "Observation?value-quantity=abc",
    ] {
        let reply = app.get(bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {}", reply.body);
        assert_eq!(reply.body["resourceType"], "OperationOutcome");
    }
}

async fn post_search(app: &TestApp) {
    let ids = seed_patients(app).await;
    let reply = app
        .send(
            Method::POST,
            "Patient/_search",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some("gender=male&family=chen".into()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let found: Vec<Value> =
        reply.body["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].clone()).collect();
    assert_eq!(found, vec![json!(ids[3])]);
}

/// A Task of a work queue, written with a known id (ties in `due` are broken by id).
async fn put_task(app: &TestApp, id: &str, queue: &str, status: &str, due: Option<&str>) {
    let mut task = json!({"resourceType": "Task", "id": id, "status": status, "intent": "order",
                          "owner": {"reference": format!("HealthcareService/{queue}")}});
    if let Some(due) = due {
        task["restriction"] = json!({"period": {"end": due}});
    }
    let reply = app.put(&format!("Task/{id}"), &task).await;
    assert!(reply.status.is_success(), "{}", reply.body);
}

/// "My queue, open, due first" pages: Tasks by due time then id, those without one last, paged
/// across that boundary; Tasks of other queues or statuses, deleted Tasks and Tasks whose status
/// or owner changed are left out, also from totals. (`$claim-next`, which reads the same rows, is
/// in workflow.rs.)
async fn task_queue_pages(app: &TestApp) {
    let queue = "Task?owner=HealthcareService/cardiology&status=requested&_sort=due";
    put_task(app, "q-early", "cardiology", "requested", Some("2026-12-01T09:00:00Z")).await;
    put_task(app, "q-tie-b", "cardiology", "requested", Some("2026-12-04")).await;
    put_task(app, "q-tie-a", "cardiology", "requested", Some("2026-12-04")).await;
    put_task(app, "q-late", "cardiology", "requested", Some("2026-12-05")).await;
    put_task(app, "q-none-b", "cardiology", "requested", None).await;
    put_task(app, "q-none-a", "cardiology", "requested", None).await;
    put_task(app, "q-elsewhere", "vascular-surgery", "requested", Some("2026-11-01")).await;
    put_task(app, "q-received", "cardiology", "received", Some("2026-11-02")).await;
    put_task(app, "q-gone", "cardiology", "requested", Some("2026-11-03")).await;
    assert_eq!(app.delete("Task/q-gone").await.status, StatusCode::NO_CONTENT);
    put_task(app, "q-moved", "cardiology", "requested", Some("2026-11-04")).await;
    put_task(app, "q-moved", "vascular-surgery", "requested", Some("2026-11-04")).await;

    let order = ["q-early", "q-tie-a", "q-tie-b", "q-late", "q-none-a", "q-none-b"];
    assert_eq!(app.search_ids(queue).await, order);
    for offset in 0..order.len() {
        let page = app.search_ids(&format!("{queue}&_count=2&_offset={offset}")).await;
        assert_eq!(page, order[offset..order.len().min(offset + 2)], "offset {offset}");
    }
    assert!(app.search_ids(&format!("{queue}&_count=2&_offset=9")).await.is_empty());
    assert_eq!(app.total(&format!("{queue}&_total=accurate")).await, 6);
    assert_eq!(app.total("Task?owner=HealthcareService/cardiology&status=requested&_summary=count").await, 6);
    let open = "Task?owner=HealthcareService/cardiology,HealthcareService/vascular-surgery&status=requested,received&_sort=due";
    assert_eq!(
        app.search_ids(open).await,
        ["q-elsewhere", "q-received", "q-moved", "q-early", "q-tie-a", "q-tie-b", "q-late", "q-none-a", "q-none-b"]
    );
    assert_eq!(
        app.search_ids(&format!("{queue}&due=lt2026-12-05&_id=q-late,q-tie-b,q-none-a")).await,
        ["q-tie-b"],
        "other criteria still hold"
    );
    assert_eq!(app.search_ids("Task?status=received,cancelled&_sort=-due").await, ["q-received"]);

    let mut claimed = app.get("Task/q-early").await.body;
    claimed["status"] = json!("received");
    assert!(app.put("Task/q-early", &claimed).await.status.is_success());
    assert_eq!(app.search_ids(&format!("{queue}&_count=1")).await, ["q-tie-a"], "the changed status left the queue");
}
