//! FHIR over HTTP: reading bodies with limits and content-type checks, the `Prefer` header,
//! conditional-read headers, and writing `application/fhir+json` responses.

use axum::body::{Body, Bytes};
use axum::http::header::{ACCEPT, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rex_fhir::IssueCode;
use rex_fhir::json::parse_body;
use rex_fhir::query::Handling;
use rex_store::StoredResource;
use serde_json::Value;

use crate::error::ApiError;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// An `application/fhir+json` response.
pub fn fhir_json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(body).expect("JSON values and answer Bundles have string keys");
    (status, [(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))], text).into_response()
}

/// What kind of body a request carries, judged from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    FhirJson,
    JsonPatch,
    Form,
}

/// Classifies the request's Content-Type; a missing one is taken as FHIR JSON. XML and anything
/// else is refused with 415.
pub fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else { return Ok(BodyKind::FhirJson) };
    let mime = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/fhir+json" | "application/json" | "application/json+fhir" | "text/json" => Ok(BodyKind::FhirJson),
        "application/json-patch+json" => Ok(BodyKind::JsonPatch),
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        "application/fhir+xml" | "application/xml" | "text/xml" | "application/xml+fhir" => {
            Err(ApiError::unsupported_media("rex accepts FHIR JSON only (application/fhir+json); XML is not supported"))
        }
        other => {
            Err(ApiError::unsupported_media(format!("Unsupported Content-Type '{other}': send application/fhir+json")))
        }
    }
}

/// Refuses requests that ask for XML only (through `_format` or `Accept`) with 406.
pub fn check_accept(headers: &HeaderMap, format: Option<&str>) -> Result<(), ApiError> {
    let wants_xml_only = match format {
        Some(format) => format.contains("xml"),
        None => headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("xml") && !accept.contains("json") && !accept.contains("*/*")),
    };
    if wants_xml_only {
        return Err(ApiError::one(
            StatusCode::NOT_ACCEPTABLE,
            IssueCode::NotSupported,
            "rex answers in FHIR JSON only (application/fhir+json); XML is not supported",
        ));
    }
    Ok(())
}

/// Limits applied to request bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

/// Reads the whole body, refusing with 413 past the size limit.
pub async fn read_body(body: Body, limits: BodyLimits) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limits.max_bytes).await.map_err(|_| {
        ApiError::one(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueCode::TooCostly,
            format!("The request body is larger than the limit of {} bytes", limits.max_bytes),
        )
    })
}

/// Parses a FHIR JSON body (400 when it is not a JSON object within the depth limit).
pub fn parse_json(bytes: &[u8], limits: BodyLimits) -> Result<Value, ApiError> {
    parse_body(bytes, limits.max_depth).map_err(|issue| ApiError::new(StatusCode::BAD_REQUEST, vec![issue]))
}

/// What the client asked to get back after a write (`Prefer: return=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnPreference {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// The parts of the `Prefer` header rex honours.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prefer {
    pub return_: ReturnPreference,
    pub handling: Handling,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Prefer {
        let mut prefer = Prefer::default();
        for value in headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
            for token in value.split([',', ';']).map(str::trim) {
                match token.split_once('=').map(|(k, v)| (k.trim(), v.trim().trim_matches('"'))) {
                    Some(("return", "minimal")) => prefer.return_ = ReturnPreference::Minimal,
                    Some(("return", "representation")) => prefer.return_ = ReturnPreference::Representation,
                    Some(("return", "OperationOutcome")) => prefer.return_ = ReturnPreference::OperationOutcome,
                    Some(("handling", "lenient")) => prefer.handling = Handling::Lenient,
                    Some(("handling", "strict")) => prefer.handling = Handling::Strict,
                    _ => {}
                }
            }
        }
        prefer
    }
}

/// `W/"3"` for version 3.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version in an `If-Match` / `If-None-Match` value (`W/"3"`, `"3"` or `3`).
pub fn parse_etag(value: &str) -> Option<i64> {
    value.trim().trim_start_matches("W/").trim_matches('"').parse().ok()
}

/// The version required by `If-Match`, or 400 when the header is malformed.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    match headers.get("if-match") {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(parse_etag)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("If-Match must be a version ETag such as W/\"3\"")),
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) for `Last-Modified`.
pub fn http_date(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Whether the client's cached copy is still current (`If-None-Match` / `If-Modified-Since`).
pub fn not_modified(headers: &HeaderMap, stored: &StoredResource) -> bool {
    if let Some(value) = headers.get("if-none-match").and_then(|v| v.to_str().ok()) {
        return value.split(',').filter_map(parse_etag).any(|v| v == stored.version_id);
    }
    if let Some(value) = headers.get("if-modified-since").and_then(|v| v.to_str().ok())
        && let Ok(since) = chrono::DateTime::parse_from_rfc2822(value)
    {
        // HTTP dates have whole seconds; compare at that precision.
        return stored.last_updated / 1_000_000 <= since.timestamp();
    }
    false
}

/// A response carrying one stored resource with its ETag and Last-Modified headers.
pub fn resource_response(status: StatusCode, stored: &StoredResource, body: Option<&Value>) -> Response {
    let mut response = match body {
        Some(body) => fhir_json(status, body),
        None => status.into_response(),
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag(stored.version_id)) {
        headers.insert(ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&http_date(stored.last_updated)) {
        headers.insert(LAST_MODIFIED, value);
    }
    response
}

/// Parses a stored resource's JSON; stored content was written by rex, so failure is a server fault.
pub fn stored_json(stored: &StoredResource) -> Result<Value, ApiError> {
    let content = stored.content.as_deref().ok_or_else(ApiError::internal)?;
    serde_json::from_str(content).map_err(|_| ApiError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etags() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("x"), None);
    }

    #[test]
    fn reads_prefer() {
        let mut headers = HeaderMap::new();
        headers.insert("prefer", HeaderValue::from_static("return=minimal, handling=lenient"));
        let prefer = Prefer::from_headers(&headers);
        assert_eq!(prefer.return_, ReturnPreference::Minimal);
        assert_eq!(prefer.handling, Handling::Lenient);
    }
}
