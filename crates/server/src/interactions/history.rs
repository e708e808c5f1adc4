//! History at system, type and instance level, with `_since`, `_count` and `_offset`.

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use rex_fhir::datetime::parse_date_range;
use rex_fhir::query::{DEFAULT_COUNT, MAX_COUNT};
use rex_i18n::msg;
use rex_store::HistoryScope;

use super::query_pairs;
use super::write::known_type;
use crate::AppState;
use crate::access::Caller;
use crate::bundles::{bundle, history_entry, paging_links};
use crate::error::ApiError;
use crate::http::{check_accept, fhir_json};

pub async fn system(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    history(&state, &caller, HistoryScope::System, "_history", query).await
}

pub async fn of_type(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    let path = format!("{resource_type}/_history");
    history(&state, &caller, HistoryScope::Type(resource_type), &path, query).await
}

pub async fn of_instance(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    known_type(&resource_type)?;
    match state.store.read(&resource_type, &id).await? {
        Some(current) if caller.sees(&current) => {}
        Some(_) => return Err(ApiError::hidden(&format!("{resource_type}/{id}"))),
        None => {
            return Err(ApiError::not_found(msg!("resource-not-known", reference = format!("{resource_type}/{id}"))));
        }
    }
    let path = format!("{resource_type}/{id}/_history");
    history(&state, &caller, HistoryScope::Instance(resource_type, id), &path, query).await
}

async fn history(
    state: &AppState,
    caller: &Caller,
    scope: HistoryScope,
    path: &str,
    query: Option<String>,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref());
    check_accept(super::format_param(&pairs))?;
    let (mut since, mut count, mut offset) = (None, DEFAULT_COUNT, 0);
    for (key, value) in &pairs {
        let invalid = || ApiError::bad_request(msg!("history-invalid-value", value, key)).at(key);
        match key.as_str() {
            "_since" => since = Some(parse_date_range(value).ok_or_else(invalid)?.0),
            "_count" => count = value.parse::<usize>().map_err(|_| invalid())?.min(MAX_COUNT),
            "_offset" => offset = value.parse().map_err(|_| invalid())?,
            "_format" | "_pretty" => {}
            _ => {
                return Err(ApiError::one(
                    StatusCode::BAD_REQUEST,
                    rex_fhir::IssueCode::NotSupported,
                    msg!("history-unsupported-parameter", key),
                )
                .at(key));
            }
        }
    }
    let mut page = state.store.history(&scope, since, count, offset).await?;
    let base = &state.config.base_url;
    let has_more = ((offset + page.entries.len()) as i64) < page.total;
    let links = paging_links(base, path, &pairs, offset, count, has_more);
    let mut total = Some(page.total);
    if !matches!(scope, HistoryScope::Instance(..)) && *caller != Caller::Unrestricted {
        // Across resources, each version is shown only to a caller who may see and search its
        // resource; the page may then be short, and the total would count what was hidden.
        page.entries.retain(|entry| {
            caller.sees(&entry.resource)
                && caller.require(&entry.resource.resource_type, rex_auth::Interaction::Search).is_ok()
        });
        total = None;
    }
    let interaction = match scope {
        HistoryScope::Instance(..) => "history-instance",
        HistoryScope::Type(..) => "history-type",
        HistoryScope::System => "history-system",
    };
    let returned = page.entries.iter().map(|e| format!("{}/{}", e.resource.resource_type, e.resource.id));
    state.audit.read(caller, interaction, returned.collect()).await;
    let entries = page.entries.iter().map(|entry| history_entry(base, entry)).collect::<Result<Vec<_>, _>>()?;
    Ok(fhir_json(StatusCode::OK, &bundle("history", total, links, entries)))
}
