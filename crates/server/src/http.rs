//! FHIR over HTTP: reading bodies with limits and content-type checks, the `Prefer` header,
//! conditional-read headers, and writing `application/fhir+json` responses (XML bodies and answers
//! are converted at the edge, in `xml.rs`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED, RETRY_AFTER, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rex_fhir::IssueCode;
use rex_fhir::json::parse_body;
use rex_fhir::query::Handling;
use rex_i18n::msg;
use rex_store::StoredResource;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AppState;
use crate::error::ApiError;

pub use crate::media::{FHIR_JSON, fhir_json};

/// What kind of body a request carries, judged from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    FhirJson,
    JsonPatch,
    Form,
}

/// Classifies the request's Content-Type; a missing one is taken as FHIR JSON. XML bodies arrive
/// here already converted to JSON (`xml::convert_request`); anything else is refused with 415.
pub fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else { return Ok(BodyKind::FhirJson) };
    let mime = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/fhir+json" | "application/json" | "application/json+fhir" | "text/json" => Ok(BodyKind::FhirJson),
        "application/json-patch+json" => Ok(BodyKind::JsonPatch),
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        other => Err(ApiError::unsupported_media(msg!("unsupported-content-type", content_type = other))),
    }
}

/// Refuses a `_format` rex cannot answer in with 406. rex answers FHIR JSON, and FHIR XML when
/// asked (`xml::convert_response`); an `Accept` naming something else falls back to JSON.
pub fn check_accept(format: Option<&str>) -> Result<(), ApiError> {
    let Some(format) = format else { return Ok(()) };
    let mime = format.split(';').next().unwrap_or_default().trim().to_ascii_lowercase().replace(' ', "+");
    let json = matches!(
        mime.as_str(),
        "json" | "application/json" | "application/fhir+json" | "application/json+fhir" | "text/json"
    );
    if !json && !rex_fhir::xml::is_xml_media_type(&mime) {
        return Err(ApiError::one(
            StatusCode::NOT_ACCEPTABLE,
            IssueCode::NotSupported,
            msg!("unsupported-format", format),
        )
        .at("_format"));
    }
    Ok(())
}

/// Limits applied to request bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

/// Default size from which a JSON request body is large: 1 MiB (a referral Bundle is 30-80 KB).
pub const DEFAULT_LARGE_BODY_BYTES: usize = 1024 * 1024;
/// Default number of large JSON bodies worked on at once.
pub const DEFAULT_LARGE_BODY_SLOTS: usize = 2;
/// What a client refused for want of a slot is told to wait, in seconds.
const LARGE_BODY_RETRY_SECONDS: u32 = 5;

/// Admission of large JSON request bodies. Parsing, checking and writing a Bundle takes about 50
/// times its size in memory (1.55 GB for a 30 MB Bundle, ARCHITECTURE.md), so only a few bodies
/// over the threshold are worked on at once; one more is answered 503 with `Retry-After` before
/// its body is read. Other bodies (raw Binary uploads are streamed to disk) are not counted.
#[derive(Debug, Clone)]
pub struct LargeBodies {
    threshold: usize,
    slots: Arc<Semaphore>,
}

impl LargeBodies {
    /// Bodies of more than `threshold` bytes need one of `slots`.
    pub fn new(threshold: usize, slots: usize) -> LargeBodies {
        LargeBodies { threshold, slots: Arc::new(Semaphore::new(slots)) }
    }

    /// The size from which a body is large (FHIR XML bodies may not be larger).
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// A slot for a JSON body of `length` bytes (`None`: not announced, so possibly large), held
    /// until the returned permit is dropped; `Ok(None)` when the body is small.
    pub fn admit(&self, length: Option<usize>) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        if length.is_some_and(|length| length <= self.threshold) {
            return Ok(None);
        }
        self.slots.clone().try_acquire_owned().map(Some).map_err(|_| {
            ApiError::one(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueCode::Throttled,
                msg!("large-bodies-busy", threshold = self.threshold, wait = LARGE_BODY_RETRY_SECONDS),
            )
        })
    }
}

tokio::task_local! {
    /// The large-body slot of the request being worked on. Work the request hands to another
    /// thread (validation on the blocking pool) takes a share of it with [`large_body_slot`], so
    /// the slot is free only once that work has ended too: a client that gives up does not free
    /// the slot while its Bundle is still being validated, and the bound holds.
    static LARGE_BODY_SLOT: Arc<OwnedSemaphorePermit>;
}

/// A share of the current request's large-body slot, if it holds one: keep it as long as work
/// for the request goes on outside the request's own future.
pub fn large_body_slot() -> Option<Arc<OwnedSemaphorePermit>> {
    LARGE_BODY_SLOT.try_with(Arc::clone).ok()
}

/// Middleware: a request with a JSON body over the large-body threshold holds a slot until it is
/// answered, or is refused at once when none is free (see [`LargeBodies`]).
pub async fn admit_large_bodies(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|content_type| content_type.to_ascii_lowercase().contains("json"));
    let has_body = headers.contains_key(CONTENT_LENGTH) || headers.contains_key(TRANSFER_ENCODING);
    if !json || !has_body {
        return next.run(request).await;
    }
    let length = headers.get(CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse().ok());
    match state.config.large_bodies.admit(length) {
        Ok(Some(slot)) => LARGE_BODY_SLOT.scope(Arc::new(slot), next.run(request)).await,
        Ok(None) => next.run(request).await,
        Err(err) => {
            let mut response = err.into_response();
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(LARGE_BODY_RETRY_SECONDS));
            response
        }
    }
}

/// Reads the whole body, refusing with 413 past the size limit.
pub async fn read_body(body: Body, limits: BodyLimits) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limits.max_bytes).await.map_err(|_| {
        ApiError::one(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueCode::TooCostly,
            msg!("body-too-large", limit = limits.max_bytes),
        )
    })
}

/// Parses a FHIR JSON body (400 when it is not a JSON object within the depth limit, or repeats a
/// key in one object), on the
/// blocking pool (see [`off_runtime`]).
pub async fn parse_json(bytes: Bytes, limits: BodyLimits) -> Result<Value, ApiError> {
    off_runtime(move || {
        parse_body(&bytes, limits.max_depth).map_err(|issues| ApiError::new(StatusCode::BAD_REQUEST, issues))
    })
    .await
}

/// Runs `work`, CPU time in proportion to a request body (parsing, the structural check), on the
/// blocking pool: on the async workers, two large bodies at once held every worker of a two-core
/// machine, and nothing else was answered meanwhile, not even `/health/live`.
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|_| ApiError::internal())?
}

/// Parses a JSON Patch body (an array) with the same limits and checks as [`parse_json`].
pub fn parse_json_patch(bytes: &[u8], limits: BodyLimits) -> Result<Value, ApiError> {
    rex_fhir::json::parse(bytes, limits.max_depth).map_err(|issues| ApiError::new(StatusCode::BAD_REQUEST, issues))
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
            .ok_or_else(|| ApiError::bad_request(msg!("if-match-not-etag"))),
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

    #[tokio::test]
    async fn work_handed_to_another_thread_keeps_the_large_body_slot() {
        let bodies = LargeBodies::new(10, 1);
        let slot = bodies.admit(Some(100)).unwrap().unwrap();
        let (started, has_started) = tokio::sync::oneshot::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let request = LARGE_BODY_SLOT.scope(Arc::new(slot), async move {
            let share = large_body_slot();
            tokio::task::spawn_blocking(move || {
                let _share = share;
                let _ = started.send(());
                let _ = finished.recv();
            })
            .await
        });
        // The client goes away while its body is still being worked on elsewhere.
        let request = tokio::spawn(request);
        has_started.await.unwrap();
        request.abort();
        let _ = request.await;
        assert!(bodies.admit(Some(100)).is_err(), "the slot is held until the work ends");
        finish.send(()).unwrap();
        for _ in 0..100 {
            if bodies.admit(Some(100)).is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the slot was not freed when the work ended");
    }

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
