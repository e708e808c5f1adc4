//! The FHIR JSON media type and responses in it: the one piece of HTTP that error responses
//! (`error.rs`) and every handler (through `http.rs`) share.

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// An `application/fhir+json` response.
pub fn fhir_json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(body).expect("JSON values and answer Bundles have string keys");
    (status, [(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))], text).into_response()
}
