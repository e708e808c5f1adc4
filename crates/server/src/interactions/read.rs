//! read and vread, with conditional reads (`If-None-Match`, `If-Modified-Since`).

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rex_i18n::msg;

use super::write::known_type;
use super::{format_param, query_pairs};
use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::http::{check_accept, not_modified, resource_response, stored_json};

/// `GET /fhir/{type}/{id}`.
pub async fn read(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    check_accept(format_param(&query_pairs(query.as_deref())))?;
    let stored = match state.store.read(&resource_type, &id).await? {
        Some(stored) if caller.sees(&stored) => stored,
        Some(_) => return Err(ApiError::hidden(&format!("{resource_type}/{id}"))),
        None => {
            return Err(ApiError::not_found(msg!("resource-not-known", reference = format!("{resource_type}/{id}"))));
        }
    };
    if stored.deleted {
        return Err(ApiError::gone(msg!("resource-deleted", reference = format!("{resource_type}/{id}"))));
    }
    state.audit.read(&caller, "read", vec![format!("{resource_type}/{id}")]).await;
    if resource_type == "Binary" && crate::binary::wants_content(&headers) && crate::binary::is_chunked(&stored) {
        return Ok(crate::binary::download(&state, &stored));
    }
    if not_modified(&headers, &stored) {
        return Ok(resource_response(StatusCode::NOT_MODIFIED, &stored, None).into_response());
    }
    Ok(resource_response(StatusCode::OK, &stored, Some(&stored_json(&stored)?)))
}

/// `GET /fhir/{type}/{id}/_history/{version}`.
pub async fn vread(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id, version)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    let not_found =
        || ApiError::not_found(msg!("version-not-known", reference = format!("{resource_type}/{id}"), version));
    let number: i64 = version.parse().map_err(|_| not_found())?;
    let stored = state.store.vread(&resource_type, &id, number).await?.ok_or_else(not_found)?;
    // A version is visible when the resource as it is now is: compartments do not change.
    let current = state.store.read(&resource_type, &id).await?;
    if !current.is_some_and(|current| caller.sees(&current)) {
        return Err(ApiError::hidden(&format!("{resource_type}/{id}/_history/{version}")));
    }
    state.audit.read(&caller, "vread", vec![format!("{resource_type}/{id}/_history/{version}")]).await;
    if stored.deleted {
        return Err(ApiError::gone(msg!("version-deleted", reference = format!("{resource_type}/{id}"), version)));
    }
    Ok(resource_response(StatusCode::OK, &stored, Some(&stored_json(&stored)?)))
}
