//! Telehealth consults end to end: a specialist in Los Angeles opens weekly slots across the US
//! daylight-saving change of March 2027, an Arabic interpreter opens hers in Dubai, the specialist
//! asks for a consult, the partner in Dubai finds and books one (times right on both sides),
//! reschedules and cancels it, hears of every step and of the reminder; other partners see none of
//! it; concurrent bookings of one slot have one winner.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use rex_auth::StaffRole;
use rex_server::interactions::reminders::remind_due;
use rex_server::notifications::deliver_due;
use serde_json::{Value, json};

use crate::intake::referral;
use crate::message::message;
use crate::notifications::Receiver;
use crate::support::{PARTNER_A, PARTNER_B, TestApp, backend_tests};
use crate::web::{Browser, screenshots};

backend_tests!(
    @on sqlite_secured, postgres_secured;
    a_dubai_partner_books_a_los_angeles_consult_with_an_arabic_interpreter,
    concurrent_bookings_of_one_slot_have_one_winner,
    a_revoked_referral_gives_its_booked_slot_back,
    slots_are_opened_and_blocked_by_their_owner_only,
);

const ALL: &str = "system/*.cruds";

fn parameters(values: &[(&str, Value)]) -> Value {
    let parameter: Vec<Value> = values
        .iter()
        .map(|(name, value)| {
            let mut p = json!({"name": name});
            let key = match value {
                Value::Bool(_) => "valueBoolean",
                Value::Number(_) => "valueInteger",
                Value::Object(_) => "resource",
                _ => "valueString",
            };
            p[key] = value.clone();
            p
        })
        .collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// Staff tokens and the actors of a consult: a cardiologist and an Arabic interpreter.
struct Clinic {
    coordinator: String,
    specialist: String,
    specialist_role: String,
    interpreter_role: String,
}

async fn clinic(app: &TestApp) -> Clinic {
    let auth = app.auth.as_ref().unwrap();
    let coordinator = auth.staff_token(StaffRole::Coordinator, None, &[]);
    let create = |body: Value| {
        let coordinator = coordinator.clone();
        async move {
            let reply =
                app.send_as(&coordinator, Method::POST, body["resourceType"].as_str().unwrap(), Some(&body)).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
            reply.body["id"].as_str().unwrap().to_string()
        }
    };
    let doctor = create(json!({"resourceType": "Practitioner", "name": [{"family": "Lee", "given": ["Dana"]}]})).await;
    let specialist_role = create(json!({"resourceType": "PractitionerRole", "active": true,
        "practitioner": {"reference": format!("Practitioner/{doctor}")},
        "specialty": [{"text": "Cardiology"}]}))
    .await;
    let interpreter = create(json!({"resourceType": "Practitioner", "name": [{"family": "Haddad", "given": ["Mona"]}],
        "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "ar"}]},
                          {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]}]}))
    .await;
    let interpreter_role = create(json!({"resourceType": "PractitionerRole", "active": true,
        "practitioner": {"reference": format!("Practitioner/{interpreter}")},
        "code": [{"coding": [{"system": "https://rex.example/fhir/CodeSystem/telehealth-service", "code": "interpreting"}]}]}))
    .await;
    let specialist_role = format!("PractitionerRole/{specialist_role}");
    let specialist = auth.staff_token(StaffRole::Specialist, Some(&specialist_role), &["cardiology"]);
    Clinic {
        coordinator,
        specialist,
        specialist_role,
        interpreter_role: format!("PractitionerRole/{interpreter_role}"),
    }
}

/// A referral of `partner` (language, interpreter) claimed by the clinic's specialist; returns
/// (ServiceRequest reference, Task id).
async fn claimed_referral(
    app: &TestApp,
    clinic: &Clinic,
    partner: &str,
    number: &str,
    language: &str,
) -> (String, String) {
    let token = app.partner_token(partner, ALL).await;
    let text = referral(number, "I25.10", "urgent", language, language.starts_with("ar")).to_string();
    let bundle: Value = serde_json::from_str(&text.replace(PARTNER_A, partner)).unwrap();
    let sent = app.send_as(&token, Method::POST, "", Some(&bundle)).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let location = |prefix: &str| {
        sent.body["entry"].as_array().unwrap().iter().find_map(|e| {
            e["response"]["location"].as_str().filter(|l| l.starts_with(prefix)).map(|l| {
                let mut parts = l.split('/');
                format!("{}/{}", parts.next().unwrap(), parts.next().unwrap())
            })
        })
    };
    let request = location("ServiceRequest/").unwrap();
    let task = sent.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "https://rex.example/fhir/referral-task")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let claimed =
        app.send_as(&clinic.specialist, Method::POST, &format!("Task/{task}/$claim"), Some(&parameters(&[]))).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    (request, task)
}

async fn open_slots(app: &TestApp, token: &str, actor: &str, values: &[(&str, Value)]) -> Value {
    let reply = app.send_as(token, Method::POST, &format!("{actor}/$open-slots"), Some(&parameters(values))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

fn parameter<'a>(parameters: &'a Value, name: &str) -> &'a Value {
    parameters["parameter"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
}

fn starts(bundle: &Value) -> Vec<String> {
    bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"]["start"].as_str().unwrap().to_string()).collect()
}

fn event(appointment: &Value) -> &str {
    appointment["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "https://rex.example/fhir/StructureDefinition/consult-event")
        .unwrap()["valueCode"]
        .as_str()
        .unwrap()
}

async fn request_consult(app: &TestApp, clinic: &Clinic, task: &str) -> Value {
    let asked = app
        .send_as(
            &clinic.specialist,
            Method::POST,
            &format!("Task/{task}/$request-consult"),
            Some(&parameters(&[
                ("minutesDuration", json!(45)),
                ("earliest", json!("2027-03-08T00:00:00Z")),
                ("latest", json!("2027-03-20T00:00:00Z")),
            ])),
        )
        .await;
    assert_eq!(asked.status, StatusCode::CREATED, "{}", asked.body);
    asked.body
}

async fn a_dubai_partner_books_a_los_angeles_consult_with_an_arabic_interpreter(app: &TestApp) {
    let clinic = clinic(app).await;
    // Mondays and Wednesdays 09:00-11:00 in Los Angeles, the week before and the week of the US
    // change to daylight time (Sunday 14 March 2027).
    let opened = open_slots(
        app,
        &clinic.specialist,
        &clinic.specialist_role,
        &[
            ("timezone", json!("America/Los_Angeles")),
            ("weekday", json!("mon")),
            ("weekday", json!("wed")),
            ("from", json!("2027-03-08")),
            ("until", json!("2027-03-19")),
            ("startTime", json!("09:00")),
            ("endTime", json!("11:00")),
            ("slotMinutes", json!(60)),
        ],
    )
    .await;
    assert_eq!(parameter(&opened, "opened")["valueInteger"], 8);
    // The interpreter works Monday evenings in Dubai (no daylight saving there).
    for (start, end) in [("2027-03-08T20:00", "2027-03-09T00:00"), ("2027-03-15T19:00", "2027-03-15T23:00")] {
        open_slots(
            app,
            &clinic.coordinator,
            &clinic.interpreter_role,
            &[
                ("timezone", json!("Asia/Dubai")),
                ("start", json!(start)),
                ("end", json!(end)),
                ("slotMinutes", json!(120)),
            ],
        )
        .await;
    }
    // Opening the same hours again opens nothing.
    let again = open_slots(
        app,
        &clinic.specialist,
        &clinic.specialist_role,
        &[
            ("weekday", json!("mon")),
            ("from", json!("2027-03-08")),
            ("until", json!("2027-03-08")),
            ("startTime", json!("09:00")),
            ("endTime", json!("11:00")),
            ("slotMinutes", json!(60)),
        ],
    )
    .await;
    assert_eq!(
        (parameter(&again, "opened")["valueInteger"].as_i64(), parameter(&again, "skipped")["valueInteger"].as_i64()),
        (Some(0), Some(2))
    );

    let (endpoint_receiver, endpoint) = Receiver::start(0).await;
    let dubai = app.partner_token(PARTNER_B, ALL).await;
    let mexico = app.partner_token(PARTNER_A, ALL).await;
    let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "Consults",
        "criteria": "Task", "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}});
    assert_eq!(
        app.send_as(&dubai, Method::POST, "Subscription", Some(&subscription)).await.status,
        StatusCode::CREATED
    );
    deliver_due(&app.state, &reqwest::Client::new(), Utc::now()).await.unwrap();

    let (request, task) = claimed_referral(app, &clinic, PARTNER_B, "TH-1", "ar-AE").await;
    let proposed = request_consult(app, &clinic, &task).await;
    assert_eq!(proposed["status"], "proposed");
    let description = proposed["description"].as_str().unwrap();
    assert!(description.starts_with("استشارة عن بُعد"), "in the partner's language (Arabic): {description}");
    assert_eq!(proposed["requestedPeriod"][0]["start"], "2027-03-08T04:00:00+04:00", "in the partner's zone");
    let waiting = app.send_as(&clinic.specialist, Method::GET, &format!("Task/{task}"), None).await.body;
    assert_eq!(
        (waiting["status"].as_str(), waiting["businessStatus"]["coding"][0]["code"].as_str()),
        (Some("on-hold"), Some("consult-proposed"))
    );
    let again = app
        .send_as(
            &clinic.specialist,
            Method::POST,
            &format!("Task/{task}/$request-consult"),
            Some(&parameters(&[
                ("minutesDuration", json!(45)),
                ("earliest", json!("2027-03-08T00:00:00Z")),
                ("latest", json!("2027-03-20T00:00:00Z")),
            ])),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);

    // The partner finds times: Monday 09:00 and 10:00 in Los Angeles, with the interpreter free.
    let find = parameters(&[("referral", json!(request))]);
    let found = app.send_as(&dubai, Method::POST, "Appointment/$find", Some(&find)).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(
        starts(&found.body),
        vec![
            "2027-03-08T21:00:00+04:00", // 09:00 PST (-08:00)
            "2027-03-08T22:00:00+04:00",
            "2027-03-15T20:00:00+04:00", // 09:00 PDT (-07:00): an hour earlier in Dubai
            "2027-03-15T21:00:00+04:00",
        ]
    );
    let offer = found.body["entry"][2]["resource"].clone();
    assert_eq!(offer["participant"][2]["actor"]["reference"], clinic.interpreter_role);
    assert_eq!(offer["end"], "2027-03-15T20:45:00+04:00");

    // Nobody books around the operations: a partner may not write Slots or its own consult.
    let fake_slot = json!({"resourceType": "Slot", "schedule": parameter(&opened, "schedule")["valueReference"], "status": "free",
        "start": "2027-03-09T09:00:00-08:00", "end": "2027-03-09T10:00:00-08:00"});
    let forged = app.send_as(&dubai, Method::POST, "Slot", Some(&fake_slot)).await;
    assert_eq!((forged.status, forged.issue_code()), (StatusCode::FORBIDDEN, "forbidden"), "{}", forged.body);
    let mut fake_consult = offer.clone();
    fake_consult["status"] = json!("booked");
    let forged = app.send_as(&dubai, Method::POST, "Appointment", Some(&fake_consult)).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let mut edited = proposed.clone();
    edited["status"] = json!("cancelled");
    let forged = app
        .send_as(&dubai, Method::PUT, &format!("Appointment/{}", proposed["id"].as_str().unwrap()), Some(&edited))
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);

    // Another partner can neither find, book nor see anything of it.
    let foreign = app.send_as(&mexico, Method::POST, "Appointment/$find", Some(&find)).await;
    assert_eq!((foreign.status, foreign.issue_code()), (StatusCode::NOT_FOUND, "not-found"), "{}", foreign.body);
    let book = parameters(&[("appointment-resource", offer.clone())]);
    let stolen = app.send_as(&mexico, Method::POST, "Appointment/$book", Some(&book)).await;
    assert_eq!(stolen.status, StatusCode::NOT_FOUND, "{}", stolen.body);

    let booked = app.send_as(&dubai, Method::POST, "Appointment/$book", Some(&book)).await;
    assert_eq!(booked.status, StatusCode::OK, "{}", booked.body);
    let appointment = booked.body.clone();
    let id = appointment["id"].as_str().unwrap().to_string();
    assert_eq!(appointment["status"], "booked");
    assert_eq!(event(&appointment), "booked");
    assert_eq!(
        (appointment["start"].as_str(), appointment["end"].as_str()),
        (Some("2027-03-15T20:00:00+04:00"), Some("2027-03-15T20:45:00+04:00"))
    );
    assert_eq!(appointment["basedOn"][0]["reference"], request);
    let actors: Vec<&str> = appointment["participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["actor"]["reference"].as_str().unwrap())
        .collect();
    assert!(actors[0].starts_with("Patient/"));
    assert_eq!(&actors[1..], [clinic.specialist_role.as_str(), clinic.interpreter_role.as_str()]);
    let link = appointment["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("Appointment.virtualService"))
        .unwrap();
    assert!(link["extension"][0]["valueUrl"].as_str().unwrap().starts_with("https://video.rex.example/consult/"));
    // The specialist's side: the booked slot is 09:00 in Los Angeles, daylight time.
    let specialist_slot = appointment["slot"][0]["reference"].as_str().unwrap();
    let slot = app.send_as(&clinic.coordinator, Method::GET, specialist_slot, None).await.body;
    assert_eq!((slot["start"].as_str(), slot["status"].as_str()), (Some("2027-03-15T09:00:00-07:00"), Some("busy")));
    // What rex wrote is valid R4.
    for resource in [&appointment, &slot] {
        let path = format!("{}/$validate", resource["resourceType"].as_str().unwrap());
        let outcome = app.send_as(&clinic.coordinator, Method::POST, &path, Some(resource)).await.body;
        let errors: Vec<&Value> =
            outcome["issue"].as_array().unwrap().iter().filter(|i| i["severity"] == "error").collect();
        assert!(errors.is_empty(), "{path}: {errors:?}");
    }
    let resumed = app.send_as(&clinic.specialist, Method::GET, &format!("Task/{task}"), None).await.body;
    assert_eq!(resumed["status"], "in-progress");
    // The booked slot is offered no more.
    let left = app.send_as(&dubai, Method::POST, "Appointment/$find", Some(&find)).await.body;
    assert!(!starts(&left).contains(&"2027-03-15T20:00:00+04:00".to_string()));

    assert_eq!(
        app.send_as(&mexico, Method::GET, &format!("Appointment/{id}"), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.send_as(&mexico, Method::GET, "Appointment", None).await.body["total"], 0);
    let cancel = app.send_as(&mexico, Method::POST, &format!("Appointment/{id}/$cancel"), Some(&parameters(&[]))).await;
    assert_eq!(cancel.status, StatusCode::NOT_FOUND);
    assert_eq!(app.send_as(&dubai, Method::GET, "Appointment", None).await.body["total"], 1);

    // Rescheduled to the Monday before the change: the old slots are free again.
    let earlier = parameters(&[("appointment-resource", left["entry"][0]["resource"].clone())]);
    let moved = app.send_as(&dubai, Method::POST, "Appointment/$book", Some(&earlier)).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!((moved.body["id"].as_str(), event(&moved.body)), (Some(id.as_str()), "rescheduled"));
    assert_eq!(moved.body["start"], "2027-03-08T21:00:00+04:00");
    assert_eq!(app.send_as(&clinic.coordinator, Method::GET, specialist_slot, None).await.body["status"], "free");
    let new_slot = moved.body["slot"][0]["reference"].as_str().unwrap();
    let slot = app.send_as(&clinic.coordinator, Method::GET, new_slot, None).await.body;
    assert_eq!(slot["start"], "2027-03-08T09:00:00-08:00", "standard time the week before");

    // The reminder goes out once, a day before.
    let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
    let day = std::time::Duration::from_secs(24 * 3600);
    assert!(remind_due(&app.state, at("2027-03-07T00:00:00Z"), day).await.unwrap().is_empty(), "too early");
    assert_eq!(remind_due(&app.state, at("2027-03-07T18:00:00Z"), day).await.unwrap(), vec![id.clone()]);
    assert!(remind_due(&app.state, at("2027-03-07T18:30:00Z"), day).await.unwrap().is_empty(), "sent once");

    let cancelled = app
        .send_as(
            &dubai,
            Method::POST,
            &format!("Appointment/{id}/$cancel"),
            Some(&parameters(&[("reason", json!("Patient admitted locally"))])),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!((cancelled.body["status"].as_str(), event(&cancelled.body)), (Some("cancelled"), "cancelled"));
    assert_eq!(app.send_as(&clinic.coordinator, Method::GET, new_slot, None).await.body["status"], "free");
    let twice = app.send_as(&dubai, Method::POST, &format!("Appointment/{id}/$cancel"), Some(&parameters(&[]))).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);

    // The partner heard every step of the consult through its Subscription.
    deliver_due(&app.state, &reqwest::Client::new(), Utc::now()).await.unwrap();
    let events: Vec<String> = endpoint_receiver
        .notifications()
        .iter()
        .map(|bundle| &bundle["entry"][1]["resource"])
        .filter(|resource| resource["resourceType"] == "Appointment")
        .map(|appointment| event(appointment).to_string())
        .collect();
    assert_eq!(events, ["proposed", "booked", "rescheduled", "reminder", "cancelled"]);
    let reminder = endpoint_receiver
        .notifications()
        .iter()
        .map(|bundle| bundle["entry"][1]["resource"].clone())
        .find(|resource| resource["resourceType"] == "Appointment" && event(resource) == "reminder")
        .unwrap();
    let text = reminder["comment"].as_str().unwrap();
    assert!(text.starts_with("تذكير") && text.contains("2027-03-08T21:00:00+04:00"), "Arabic, in its zone: {text}");
}

/// One hour of the specialist's: Wednesday 10 March 2027, 09:00 in Los Angeles.
async fn open_one_slot(app: &TestApp, clinic: &Clinic) {
    open_slots(
        app,
        &clinic.specialist,
        &clinic.specialist_role,
        &[
            ("timezone", json!("America/Los_Angeles")),
            ("start", json!("2027-03-10T09:00")),
            ("end", json!("2027-03-10T10:00")),
            ("slotMinutes", json!(60)),
        ],
    )
    .await;
}

async fn concurrent_bookings_of_one_slot_have_one_winner(app: &TestApp) {
    let clinic = clinic(app).await;
    open_one_slot(app, &clinic).await;
    let mut bookings = Vec::new();
    for (n, partner) in [PARTNER_A, PARTNER_A, PARTNER_B, PARTNER_B].into_iter().enumerate() {
        let (request, task) = claimed_referral(app, &clinic, partner, &format!("TH-C{n}"), "en").await;
        request_consult(app, &clinic, &task).await;
        let token = app.partner_token(partner, ALL).await;
        let found = app
            .send_as(&token, Method::POST, "Appointment/$find", Some(&parameters(&[("referral", json!(request))])))
            .await;
        assert_eq!(starts(&found.body).len(), 1, "{}", found.body);
        bookings.push((token, parameters(&[("appointment-resource", found.body["entry"][0]["resource"].clone())])));
    }
    let attempts =
        bookings.iter().map(|(token, body)| app.send_as(token, Method::POST, "Appointment/$book", Some(body)));
    let replies = futures::future::join_all(attempts).await;
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 3, "{statuses:?}");
    let loser = replies.iter().find(|r| r.status == StatusCode::CONFLICT).unwrap();
    assert_eq!(loser.issue_code(), "conflict");
    assert_eq!(app.send_as(&clinic.coordinator, Method::GET, "Appointment?status=booked", None).await.body["total"], 1);
}

/// The partner revokes a referral whose consult is booked: the consult is cancelled and its slot is
/// free for the next referral.
async fn a_revoked_referral_gives_its_booked_slot_back(app: &TestApp) {
    let clinic = clinic(app).await;
    open_one_slot(app, &clinic).await;
    let token = app.partner_token(PARTNER_A, ALL).await;
    let find_and_book = |request: String| {
        let token = token.clone();
        async move {
            let find = parameters(&[("referral", json!(request))]);
            let found = app.send_as(&token, Method::POST, "Appointment/$find", Some(&find)).await;
            assert_eq!(starts(&found.body).len(), 1, "{}", found.body);
            let book = parameters(&[("appointment-resource", found.body["entry"][0]["resource"].clone())]);
            let booked = app.send_as(&token, Method::POST, "Appointment/$book", Some(&book)).await;
            assert_eq!(booked.status, StatusCode::OK, "{}", booked.body);
            booked.body["id"].as_str().unwrap().to_string()
        }
    };
    let (request, task) = claimed_referral(app, &clinic, PARTNER_A, "TH-R1", "en").await;
    request_consult(app, &clinic, &task).await;
    let consult = find_and_book(request).await;

    let revoke = message("referral-revoke", "TH-R1");
    let revoked = app.send_as(&token, Method::POST, "$process-message", Some(&revoke)).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let appointment = app.send_as(&clinic.coordinator, Method::GET, &format!("Appointment/{consult}"), None).await;
    assert_eq!(appointment.body["status"], "cancelled", "{}", appointment.body);
    assert_eq!(appointment.body["cancelationReason"]["text"], "The referring partner revoked the referral");
    let task = app.send_as(&clinic.coordinator, Method::GET, &format!("Task/{task}"), None).await.body;
    assert_eq!(task["status"], "cancelled");

    // The slot is free again: the next referral books it.
    let (request, task) = claimed_referral(app, &clinic, PARTNER_A, "TH-R2", "en").await;
    request_consult(app, &clinic, &task).await;
    find_and_book(request).await;
}

async fn slots_are_opened_and_blocked_by_their_owner_only(app: &TestApp) {
    let clinic = clinic(app).await;
    let auth = app.auth.as_ref().unwrap();
    let other = auth.staff_token(StaffRole::Specialist, Some("PractitionerRole/someone-else"), &["cardiology"]);
    let one_off = [
        ("timezone", json!("Europe/Madrid")),
        ("start", json!("2027-11-01T09:00")),
        ("end", json!("2027-11-01T12:00")),
    ];
    let refused = app
        .send_as(&other, Method::POST, &format!("{}/$open-slots", clinic.specialist_role), Some(&parameters(&one_off)))
        .await;
    assert_eq!((refused.status, refused.issue_code()), (StatusCode::FORBIDDEN, "forbidden"));
    let partner = app.partner_token(PARTNER_A, ALL).await;
    let refused = app
        .send_as(
            &partner,
            Method::POST,
            &format!("{}/$open-slots", clinic.specialist_role),
            Some(&parameters(&one_off)),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Mistakes name their parameter.
    for (values, at) in [
        (vec![("start", json!("2027-11-01T09:00")), ("end", json!("2027-11-01T12:00"))], "timezone"),
        (
            vec![
                ("timezone", json!("Mars/Olympus")),
                ("start", json!("2027-11-01T09:00")),
                ("end", json!("2027-11-01T12:00")),
            ],
            "timezone",
        ),
        (
            vec![("timezone", json!("Europe/Madrid")), ("start", json!("1 Nov")), ("end", json!("2027-11-01T12:00"))],
            "start",
        ),
        (
            vec![
                ("timezone", json!("Europe/Madrid")),
                ("weekday", json!("funday")),
                ("from", json!("2027-11-01")),
                ("until", json!("2027-11-05")),
                ("startTime", json!("09:00")),
                ("endTime", json!("10:00")),
            ],
            "weekday",
        ),
    ] {
        let reply = app
            .send_as(
                &clinic.specialist,
                Method::POST,
                &format!("{}/$open-slots", clinic.specialist_role),
                Some(&parameters(&values)),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.issue_expression(), format!("Parameters.parameter.where(name='{at}')"));
    }
    let opened = open_slots(app, &clinic.specialist, &clinic.specialist_role, &one_off).await;
    assert_eq!(parameter(&opened, "opened")["valueInteger"], 6);
    let blocked = app
        .send_as(
            &clinic.specialist,
            Method::POST,
            &format!("{}/$block-time", clinic.specialist_role),
            Some(&parameters(&[
                ("start", json!("2027-11-01T10:00")),
                ("end", json!("2027-11-01T11:00")),
                ("reason", json!("Tumour board")),
            ])),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::OK, "{}", blocked.body);
    assert_eq!(parameter(&blocked.body, "blocked")["valueInteger"], 2);
    let schedule = parameter(&opened, "schedule")["valueReference"]["reference"].as_str().unwrap().to_string();
    let free =
        app.send_as(&clinic.coordinator, Method::GET, &format!("Slot?schedule={schedule}&status=free"), None).await;
    assert_eq!(free.body["total"], 4);
    // The block stays: opening the hours again skips it.
    let again = open_slots(app, &clinic.specialist, &clinic.specialist_role, &one_off).await;
    assert_eq!(parameter(&again, "opened")["valueInteger"], 0);
}

/// The worklist side: a specialist opens slots on their page, asks for a consult on the referral
/// page, and after the partner booked sees it there (both clocks, interpreter, link) and among
/// the upcoming consults of the worklist.
#[tokio::test]
async fn the_worklist_opens_slots_and_shows_the_booked_consult() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::sqlite_with_ui(true).await;
    let origin = app.base.trim_end_matches("/fhir").to_string();
    let clinic = clinic(&app).await;
    browser.sign_in(&origin, &clinic.specialist).await;

    // Weekly slots on Mondays, one Monday, in Los Angeles; then an hour of it blocked.
    browser.go(&format!("{origin}/ui/slots")).await;
    browser.wait_for("Open weekly slots in your time zone").await;
    browser
        .fill(&[
            ("slots-zone", "America/Los_Angeles"),
            ("slots-from", "2027-03-15"),
            ("slots-until", "2027-03-15"),
            ("slots-start", "09:00"),
            ("slots-end", "11:00"),
            ("slots-minutes", "60"),
        ])
        .await;
    let monday = browser.find("input[name=weekday][value=mon]").await;
    browser.click(&monday).await;
    browser.press("Open slots").await;
    let slots = browser.wait_for("Your slots are open.").await;
    assert!(slots.contains("Mon 15 Mar 2027, 09:00") && slots.contains("Mon 15 Mar 2027, 10:00"), "{slots}");
    browser.fill(&[("block-start", "2027-03-15T10:00"), ("block-end", "2027-03-15T11:00")]).await;
    browser.type_into("#block-reason", "Ward round").await;
    browser.press("Block").await;
    let slots = browser.wait_for("The time is blocked.").await;
    assert!(slots.contains("busy-unavailable"), "{slots}");
    open_slots(
        &app,
        &clinic.coordinator,
        &clinic.interpreter_role,
        &[
            ("timezone", json!("Asia/Dubai")),
            ("start", json!("2027-03-15T19:00")),
            ("end", json!("2027-03-15T23:00")),
            ("slotMinutes", json!(120)),
        ],
    )
    .await;

    // The specialist asks for a consult on the referral page.
    let (request, task) = claimed_referral(&app, &clinic, PARTNER_B, "TH-UI", "ar-AE").await;
    browser.go(&format!("{origin}/ui/referral/{task}")).await;
    browser.wait_for("Ask the partner to book a video consult").await;
    browser
        .fill(&[("consult-minutes", "45"), ("consult-earliest", "2027-03-08"), ("consult-latest", "2027-03-19")])
        .await;
    browser.press("Request consult").await;
    browser.wait_for("waiting for the partner to book").await;

    // The partner in Dubai books over the API.
    let dubai = app.partner_token(PARTNER_B, ALL).await;
    let found = app
        .send_as(&dubai, Method::POST, "Appointment/$find", Some(&parameters(&[("referral", json!(request))])))
        .await;
    assert_eq!(starts(&found.body), vec!["2027-03-15T20:00:00+04:00"], "10:00 in Los Angeles is blocked");
    let offer = found.body["entry"][0]["resource"].clone();
    let booked = app
        .send_as(&dubai, Method::POST, "Appointment/$book", Some(&parameters(&[("appointment-resource", offer)])))
        .await;
    assert_eq!(booked.status, StatusCode::OK, "{}", booked.body);

    browser.go(&format!("{origin}/ui/referral/{task}")).await;
    let page = browser.wait_for("Mon 15 Mar 2027, 09:00 (America/Los_Angeles)").await;
    for shown in
        ["Mon 15 Mar 2027, 20:00 (UTC+04:00)", "Arabic (United Arab Emirates)", "https://video.rex.example/consult/"]
    {
        assert!(page.contains(shown), "the referral page shows {shown}");
    }
    browser.script("document.getElementById('h-consult').scrollIntoView();").await;
    browser.screenshot(&screenshots().join("consult.png")).await;
    browser.go(&format!("{origin}/ui/worklist")).await;
    let worklist = browser.wait_for("Upcoming telehealth consults").await;
    assert!(worklist.contains("Mon 15 Mar 2027, 20:00 (UTC+04:00)"), "{worklist}");
    assert!(worklist.contains(&format!("/ui/referral/{task}")));
    browser.close().await;
    app.cleanup().await;
}
