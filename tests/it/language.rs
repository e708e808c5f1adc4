//! rex's own texts in the reader's language: `Accept-Language` first, then the partner's
//! configured `language`, then English; `details.text` always in English for support staff.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{PARTNER_A, PARTNER_CONSENT, Reply, TestApp, backend_tests};

backend_tests!(
    @on sqlite_secured, postgres_secured;
    accept_language_chooses_the_language_of_rex_diagnostics,
    a_partner_reads_its_configured_language_unless_it_asks_for_another,
);

fn first_issue(reply: &Reply) -> (&str, &str) {
    let issue = &reply.body["issue"][0];
    (issue["diagnostics"].as_str().unwrap_or_default(), issue["details"]["text"].as_str().unwrap_or_default())
}

async fn read_missing(app: &TestApp, headers: &[(&str, &str)]) -> Reply {
    let reply = app.send(Method::GET, "Patient/nope", headers, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    reply
}

/// As partner A, which has no configured language.
async fn accept_language_chooses_the_language_of_rex_diagnostics(app: &TestApp) {
    let token = app.partner_token(PARTNER_A, "system/*.cruds").await;
    let bearer = format!("Bearer {token}");
    let auth = ("authorization", bearer.as_str());
    let read_missing = |headers: &[(&'static str, &'static str)]| {
        let mut headers = headers.to_vec();
        headers.push(auth);
        async move { read_missing(app, &headers).await }
    };
    let english = "Patient/nope is not known";
    let spanish = read_missing(&[("accept-language", "es")]).await;
    assert_eq!(first_issue(&spanish), ("No se conoce Patient/nope", english));
    let arabic = read_missing(&[("accept-language", "ar-AE")]).await;
    assert_eq!(first_issue(&arabic), ("Patient/nope غير معروف", english));
    let chinese = read_missing(&[("accept-language", "zh-CN")]).await;
    assert_eq!(first_issue(&chinese), ("Patient/nope 不存在", english));
    let preferred = read_missing(&[("accept-language", "de-DE, fr;q=0.8, es;q=0.5")]).await;
    assert_eq!(first_issue(&preferred), ("Patient/nope est inconnu", english), "the best language rex writes");
    for unknown in ["de", "zh-TW", "*", "es;q=0"] {
        let reply = read_missing(&[("accept-language", unknown)]).await;
        assert_eq!(first_issue(&reply), (english, english), "{unknown}: English");
    }
    assert_eq!(first_issue(&read_missing(&[]).await), (english, english), "English without the header");

    // Refusals of the authentication layer too.
    let anonymous = app.send(Method::GET, "Patient/nope", &[("accept-language", "es")], None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        first_issue(&anonymous),
        ("no hay token de portador (Authorization: Bearer <token>)", "no bearer token (Authorization: Bearer <token>)")
    );

    // Parse errors, with their arguments, and the same rules in FHIR XML answers.
    let headers = [("accept-language", "es-MX"), ("content-type", "application/fhir+json"), auth];
    let broken = app.send(Method::POST, "Patient", &headers, Some("{\"resourceType\": ".into())).await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    let (diagnostics, details) = first_issue(&broken);
    assert!(diagnostics.starts_with("El cuerpo no es JSON válido: "), "{diagnostics}");
    assert!(details.starts_with("The body is not valid JSON: "), "{details}");
    let (_, _, xml) =
        app.send_text(Method::GET, "Patient/nope?_format=xml", &[("accept-language", "fr-CA"), auth], None).await;
    assert!(xml.contains("<diagnostics value=\"Patient/nope est inconnu\"/>"), "{xml}");
    assert!(xml.contains("<text value=\"Patient/nope is not known\"/>"), "{xml}");

    // OperationOutcomes of successful requests too; a profile's own words stay as written.
    let patient = json!({"resourceType": "Patient", "active": true}).to_string();
    let headers = [("accept-language", "zh-Hans"), ("content-type", "application/fhir+json"), auth];
    let valid = app.send(Method::POST, "Patient/$validate", &headers, Some(patient)).await;
    assert_eq!(valid.status, StatusCode::OK, "{}", valid.body);
    assert_eq!(first_issue(&valid), ("未发现问题", "No issues found"));
    // The validator's findings are told from their rule; the profile's own words inside stay as written.
    let invalid = json!({"resourceType": "Patient", "contact": [{"gender": "male"}]}).to_string();
    let headers = [("accept-language", "es"), ("content-type", "application/fhir+json"), auth];
    let refused = app.send(Method::POST, "Patient/$validate", &headers, Some(invalid)).await;
    let pat1 = refused.body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .find(|issue| issue["details"]["text"].as_str().is_some_and(|text| text.contains("pat-1")))
        .unwrap_or_else(|| panic!("pat-1 is reported: {}", refused.body));
    let diagnostics = pat1["diagnostics"].as_str().unwrap();
    assert!(diagnostics.starts_with("La restricción pat-1 no se cumple: SHALL at least contain"), "{diagnostics}");
    let headers = [
        ("accept-language", "ar"),
        ("content-type", "application/fhir+json"),
        ("prefer", "return=OperationOutcome"),
        auth,
    ];
    let created =
        app.send(Method::POST, "Patient", &headers, Some(json!({"resourceType": "Patient"}).to_string())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(first_issue(&created), ("تم الإنشاء", "Created"));
}

async fn a_partner_reads_its_configured_language_unless_it_asks_for_another(app: &TestApp) {
    let english = "Patient/nope is not known";
    let french = app.partner_token(PARTNER_CONSENT, "system/*.cruds").await;
    let bearer = format!("Bearer {french}");
    let configured = read_missing(app, &[("authorization", &bearer)]).await;
    assert_eq!(first_issue(&configured), ("Patient/nope est inconnu", english), "French without the header");
    let asked = read_missing(app, &[("authorization", &bearer), ("accept-language", "es")]).await;
    assert_eq!(first_issue(&asked), ("No se conoce Patient/nope", english), "the header wins");
    let unknown = read_missing(app, &[("authorization", &bearer), ("accept-language", "de")]).await;
    assert_eq!(
        first_issue(&unknown),
        ("Patient/nope est inconnu", english),
        "a language rex lacks: the configured one"
    );

    // A refusal with an argument.
    let claim =
        app.send_as(&french, Method::POST, "Task/nope/$claim", Some(&json!({"resourceType": "Parameters"}))).await;
    assert_eq!(claim.status, StatusCode::FORBIDDEN, "{}", claim.body);
    assert_eq!(
        first_issue(&claim),
        (
            "claim relève du personnel hospitalier ; les partenaires ne peuvent pas l'exécuter",
            "claim is done by hospital staff; partners cannot run it"
        )
    );
}
