//! FHIR XML at the HTTP edge. Handlers work on FHIR JSON only: an XML request body is converted to
//! JSON before the handler reads it ([`convert_request`]), and a JSON answer is converted to XML
//! when the client asked for XML ([`convert_response`]), error OperationOutcomes included. The
//! conversion itself, and the guards against hostile XML, are `rex_fhir::xml`.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rex_fhir::IssueCode;
use rex_fhir::xml::{from_xml, is_xml_media_type, to_xml};
use rex_i18n::msg;
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;
use crate::http::FHIR_JSON;

pub const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";

/// Middleware: an XML request body (`application/fhir+xml`, `application/xml`, `text/xml`) is read
/// up to the large-body size, checked and converted, and reaches the handler as FHIR JSON. XML
/// bodies are capped at the large-body size instead of taking a large-body slot: XML is for
/// partners whose systems cannot send JSON, and a referral is 30-80 KB.
pub async fn convert_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let is_xml =
        request.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(is_xml_media_type);
    if !is_xml {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let limit = state.config.large_bodies.threshold().min(state.config.limits.max_bytes);
    let bytes = match to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::one(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueCode::TooCostly,
                msg!("xml-body-too-large", limit),
            )
            .into_response();
        }
    };
    let json = match from_xml(&bytes, state.config.limits.max_depth) {
        Ok(json) => json.to_string(),
        Err(issue) => return ApiError::new(StatusCode::BAD_REQUEST, vec![issue]).into_response(),
    };
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(json.len()));
    next.run(Request::from_parts(parts, Body::from(json))).await
}

/// Middleware: a FHIR JSON answer goes out as FHIR XML when the request asked for XML (see
/// [`wants_xml`]); headers (ETag, Location...) and status stay as they are.
pub async fn convert_response(request: Request, next: Next) -> Response {
    let xml = wants_xml(request.headers(), request.uri().query());
    let response = next.run(request).await;
    let is_json =
        response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/fhir+json"));
    if !xml || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let converted = match to_bytes(body, usize::MAX).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes).map_err(|err| err.to_string()).and_then(|v| to_xml(&v)),
        Err(err) => Err(err.to_string()),
    };
    let text = match converted {
        Ok(text) => text,
        Err(err) => {
            // rex answers with resources it checked, so this is rex's fault; the detail is logged.
            tracing::error!(error = %err, "answer cannot be written as FHIR XML");
            let failure = ApiError::internal();
            parts.status = failure.status;
            parts.headers.remove(ETAG);
            parts.headers.remove(LOCATION);
            to_xml(&crate::language::outcome(&failure.issues)).expect("rex's own OperationOutcome is FHIR")
        }
    };
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_XML));
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}

/// Whether the client asked for XML: `_format` decides when present (`xml`, `text/xml`,
/// `application/xml`, `application/fhir+xml`); otherwise the `Accept` type with the highest
/// quality, JSON (and `*/*`) winning ties.
pub fn wants_xml(headers: &HeaderMap, query: Option<&str>) -> bool {
    let format = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "_format")
        .map(|(_, value)| value.into_owned());
    if let Some(format) = format {
        return is_xml_media_type(&format);
    }
    let Some(accept) = headers.get(ACCEPT).and_then(|value| value.to_str().ok()) else { return false };
    let (mut xml, mut other) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut fields = range.split(';');
        let media = fields.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = fields
            .filter_map(|field| field.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if is_xml_media_type(&media) {
            xml = xml.max(quality);
        } else if media.contains("json") || media == "*/*" || media == "application/*" {
            other = other.max(quality);
        }
    }
    xml > 0.0 && xml > other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn negotiates_xml() {
        assert!(wants_xml(&accept("application/fhir+xml"), None));
        assert!(wants_xml(&accept("application/xml"), None));
        assert!(wants_xml(&accept("application/fhir+xml;q=0.9, application/fhir+json;q=0.5"), None));
        assert!(!wants_xml(&accept("application/fhir+json, application/fhir+xml"), None));
        assert!(!wants_xml(&accept("application/fhir+xml, */*"), None));
        assert!(!wants_xml(&accept("application/pdf"), None));
        assert!(!wants_xml(&HeaderMap::new(), None));
        assert!(wants_xml(&HeaderMap::new(), Some("_format=xml")));
        assert!(wants_xml(&accept("application/fhir+json"), Some("a=1&_format=application%2Ffhir%2Bxml")));
        assert!(!wants_xml(&accept("application/fhir+xml"), Some("_format=json")));
    }
}
