//! Large attachments as raw Binary content. `POST /fhir/Binary` with the content's own
//! Content-Type (a PDF, a DICOM report, an image) streams the body to a temporary file, then stores
//! it in chunks beside a Binary resource that carries no `data` (only `contentType` and the tag
//! [`CHUNKED_TAG`]); `GET /fhir/Binary/{id}` with an `Accept` that is not JSON streams it back chunk
//! by chunk. Neither way holds the whole content in memory.

use axum::body::{Body, Bytes};
use axum::http::header::{ACCEPT, CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rex_fhir::IssueCode;
use rex_i18n::msg;
use rex_store::{Isolation, StoredResource};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::http::etag;
use crate::interactions::write::{WriteOp, WriteOutcome, execute};

/// `meta.tag` (system, code) of a Binary whose content is stored in chunks.
pub const CHUNKED_TAG: (&str, &str) = ("https://rex.example/fhir/CodeSystem/binary-storage", "chunked");
/// Bytes per stored chunk.
const CHUNK: usize = 256 * 1024;

/// The content type of a raw upload: a Content-Type that is not FHIR JSON, JSON Patch or a form.
pub fn raw_content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?.trim().to_string();
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let structured = mime.contains("json") || mime.contains("xml") || mime == "application/x-www-form-urlencoded";
    (!mime.is_empty() && !structured).then_some(value)
}

/// Whether a read asks for the content itself: an `Accept` that names no FHIR format (JSON, or
/// `application/fhir+xml`) and is not `*/*`.
pub fn wants_content(headers: &HeaderMap) -> bool {
    headers.get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| {
        !accept.contains("json") && !accept.contains("fhir+xml") && !accept.contains("*/*") && !accept.trim().is_empty()
    })
}

/// Whether a stored Binary keeps its content in chunks.
pub fn is_chunked(stored: &StoredResource) -> bool {
    let (system, code) = CHUNKED_TAG;
    stored.content.as_deref().is_some_and(|c| c.contains(system) && c.contains(code))
}

/// Streams the request body to a temporary file (refusing it past the body limit), then creates
/// the Binary and stores the file's chunks in one transaction.
pub async fn upload(
    state: &AppState,
    caller: &Caller,
    content_type: String,
    body: Body,
) -> Result<WriteOutcome, ApiError> {
    let path = std::env::temp_dir().join(format!("rex-upload-{}", uuid::Uuid::new_v4()));
    let received = receive(&path, body, state.config.limits.max_bytes).await;
    let outcome = match received {
        Ok(()) => store(state, caller, content_type, &path).await,
        Err(err) => Err(err),
    };
    let _ = tokio::fs::remove_file(&path).await;
    outcome
}

async fn receive(path: &std::path::Path, body: Body, limit: usize) -> Result<(), ApiError> {
    let failed = |_| ApiError::internal();
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request(msg!("upload-interrupted")))?;
        total += chunk.len();
        if total > limit {
            return Err(ApiError::one(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueCode::TooCostly,
                msg!("content-too-large", limit),
            ));
        }
        file.write_all(&chunk).await.map_err(failed)?;
    }
    file.flush().await.map_err(failed)
}

async fn store(
    state: &AppState,
    caller: &Caller,
    content_type: String,
    path: &std::path::Path,
) -> Result<WriteOutcome, ApiError> {
    let context = (caller, content_type, path);
    crate::interactions::in_transaction(&state.store, Isolation::RowLocking, &context, |tx, context| {
        let (caller, content_type, path) = context;
        Box::pin(async move {
            let (system, code) = CHUNKED_TAG;
            let binary = json!({"resourceType": "Binary", "contentType": content_type,
                                "meta": {"tag": [{"system": system, "code": code}]}});
            let op =
                WriteOp::Create { resource_type: "Binary".into(), resource: binary, id: None, if_none_exist: None };
            let created = execute(tx, caller, op).await?;
            let id = created.stored().map(|s| s.id.clone()).ok_or_else(ApiError::internal)?;
            let mut file = tokio::fs::File::open(path).await.map_err(|_| ApiError::internal())?;
            let mut buffer = vec![0u8; CHUNK];
            let mut seq = 0;
            loop {
                let filled = fill(&mut file, &mut buffer).await?;
                if filled == 0 {
                    break;
                }
                tx.put_binary_chunk(&id, seq, &buffer[..filled]).await?;
                seq += 1;
            }
            Ok(created)
        })
    })
    .await
}

/// Reads until `buffer` is full or the file ends; returns how many bytes it holds.
async fn fill(file: &mut tokio::fs::File, buffer: &mut [u8]) -> Result<usize, ApiError> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = file.read(&mut buffer[filled..]).await.map_err(|_| ApiError::internal())?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

/// The content of a chunked Binary, streamed a chunk at a time with its own Content-Type.
pub fn download(state: &AppState, stored: &StoredResource) -> Response {
    let content_type = crate::http::stored_json(stored)
        .ok()
        .and_then(|binary| binary["contentType"].as_str().map(str::to_string))
        .unwrap_or_else(|| "application/octet-stream".into());
    let (store, id) = (state.store.clone(), stored.id.clone());
    let chunks = futures_util::stream::unfold(Some(0i64), move |next| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let seq = next?;
            match store.binary_chunk(&id, seq).await {
                Ok(Some(data)) => Some((Ok(Bytes::from(data)), Some(seq + 1))),
                Ok(None) => None,
                Err(err) => Some((Err(std::io::Error::other(err.to_string())), None)),
            }
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag(stored.version_id)) {
        response.headers_mut().insert(ETAG, value);
    }
    response
}
