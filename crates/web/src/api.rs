//! The UI's only way to data: FHIR requests dispatched in-process to the API router, with the
//! signed-in user's bearer token, so every read and action meets the same authentication, scopes,
//! visibility rules, validation and audit as a request from outside.

use axum::Router;
use axum::body::Body;
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tower::ServiceExt;

use crate::session::User;

/// Largest API answer the UI reads: a referral's attachments can be tens of megabytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Characters kept as they are in query values (RFC 3986 unreserved).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Why an API call gave no resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 401: the token is missing, expired or no longer accepted; the user must sign in again.
    SignIn(String),
    /// Any other refusal, with the OperationOutcome's message.
    Refused { status: StatusCode, message: String },
}

/// The FHIR API, reached in-process.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

impl Api {
    pub fn new(router: Router) -> Api {
        Api { router }
    }

    /// `GET /fhir/{path}` (a path relative to the base, with its query).
    pub async fn get(&self, user: &User, path: &str) -> Result<Value, Failure> {
        self.call(user, Method::GET, path, None).await
    }

    /// `POST /fhir/{path}` with a FHIR JSON body.
    pub async fn post(&self, user: &User, path: &str, body: &Value) -> Result<Value, Failure> {
        self.call(user, Method::POST, path, Some(body)).await
    }

    /// The resources of a search Bundle's entries with `search.mode` match, and the included ones.
    pub async fn search(&self, user: &User, path: &str) -> Result<SearchPage, Failure> {
        let bundle = self.get(user, path).await?;
        let mut page = SearchPage { total: bundle["total"].as_u64(), ..SearchPage::default() };
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "include" {
                page.included.push(entry["resource"].clone());
            } else {
                page.matches.push(entry["resource"].clone());
            }
        }
        page.has_next = bundle["link"].as_array().into_iter().flatten().any(|link| link["relation"] == "next");
        Ok(page)
    }

    async fn call(&self, user: &User, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let mut request =
            Request::builder().method(method).uri(format!("/fhir/{path}")).header(ACCEPT, "application/fhir+json");
        if let Some(token) = user.token() {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request.header(CONTENT_TYPE, "application/fhir+json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .map_err(|_| refused(StatusCode::BAD_REQUEST, "The request could not be built"))?;
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_RESPONSE_BYTES)
            .await
            .map_err(|_| refused(StatusCode::BAD_GATEWAY, "The answer of the FHIR API was too large to show"))?;
        let value: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or_default() };
        if status.is_success() {
            return Ok(value);
        }
        let message = outcome_message(&value).unwrap_or_else(|| format!("The FHIR API answered {status}"));
        if status == StatusCode::UNAUTHORIZED {
            return Err(Failure::SignIn(message));
        }
        Err(Failure::Refused { status, message })
    }
}

fn refused(status: StatusCode, message: &str) -> Failure {
    Failure::Refused { status, message: message.into() }
}

/// One page of search results.
#[derive(Debug, Default)]
pub struct SearchPage {
    pub matches: Vec<Value>,
    pub included: Vec<Value>,
    pub total: Option<u64>,
    pub has_next: bool,
}

impl SearchPage {
    /// A resource among the matches and the included ones, by `Type/id`.
    pub fn find(&self, reference: &str) -> Option<&Value> {
        let (resource_type, id) = reference.split_once('/')?;
        self.matches.iter().chain(&self.included).find(|r| r["resourceType"] == resource_type && r["id"] == id)
    }
}

/// The diagnostics (or details text) of every issue of an OperationOutcome, joined.
pub fn outcome_message(outcome: &Value) -> Option<String> {
    let messages: Vec<&str> = outcome["issue"]
        .as_array()?
        .iter()
        .filter_map(|issue| issue["diagnostics"].as_str().or(issue["details"]["text"].as_str()))
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

/// A query string from name/value pairs, values percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A FHIR Parameters resource of string, code and reference parameters, as the workflow
/// operations take them (`Type/id` values become references).
pub fn parameters(pairs: &[(&str, &str)]) -> Value {
    let parameter: Vec<Value> = pairs
        .iter()
        .map(|(name, value)| {
            if matches!(*name, "owner" | "opinion" | "reader" | "task") {
                serde_json::json!({"name": name, "valueReference": {"reference": value}})
            } else {
                serde_json::json!({"name": name, "valueString": value})
            }
        })
        .collect();
    serde_json::json!({"resourceType": "Parameters", "parameter": parameter})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcome_messages_join_every_issue() {
        let outcome = json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "business-rule", "diagnostics": "claim is not allowed here"},
            {"severity": "error", "code": "invalid", "details": {"text": "second"}}]});
        assert_eq!(outcome_message(&outcome).as_deref(), Some("claim is not allowed here; second"));
        assert_eq!(outcome_message(&json!({})), None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            query(&[("owner", "HealthcareService/a,b"), ("x", "é ü")]),
            "owner=HealthcareService%2Fa%2Cb&x=%C3%A9%20%C3%BC"
        );
    }

    #[test]
    fn references_become_reference_parameters() {
        let body = parameters(&[("owner", "PractitionerRole/1"), ("reason", "not ours")]);
        assert_eq!(body["parameter"][0]["valueReference"]["reference"], "PractitionerRole/1");
        assert_eq!(body["parameter"][1]["valueString"], "not ours");
    }
}
