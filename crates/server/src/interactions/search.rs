//! Search on a resource type: `GET /fhir/{type}?...` and `POST /fhir/{type}/_search`.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rex_fhir::query::SearchQuery;
use rex_fhir::search::SearchRegistry;
use rex_i18n::msg;

use super::write::known_type;
use super::{format_param, query_pairs};
use crate::AppState;
use crate::access::Caller;
use crate::bundles::{AnswerBundle, paging_links, search_entry};
use crate::error::ApiError;
use crate::http::{BodyKind, Prefer, body_kind, check_accept, fhir_json, read_body};

/// `GET /fhir/{type}?params`.
pub async fn search_get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    run_search(&state, &caller, &resource_type, query_pairs(query.as_deref()), &headers).await
}

/// `POST /fhir/{type}/_search` with a form body (and possibly a query string too).
pub async fn search_post(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if body_kind(&headers)? != BodyKind::Form && headers.contains_key(axum::http::header::CONTENT_TYPE) {
        return Err(ApiError::unsupported_media(msg!("search-post-form")));
    }
    let bytes = read_body(body, state.config.limits).await?;
    let mut pairs = query_pairs(query.as_deref());
    pairs.extend(form_urlencoded::parse(&bytes).into_owned());
    run_search(&state, &caller, &resource_type, pairs, &headers).await
}

async fn run_search(
    state: &AppState,
    caller: &Caller,
    resource_type: &str,
    pairs: Vec<(String, String)>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    known_type(resource_type)?;
    check_accept(format_param(&pairs))?;
    let prefer = Prefer::from_headers(headers);
    let mut query = SearchQuery::parse(SearchRegistry::r4(), resource_type, &pairs, prefer.handling)
        .map_err(|issues| ApiError::new(StatusCode::BAD_REQUEST, issues))?;
    caller.restrict(&mut query);
    let mut result = state.store.search(&query).await?;
    caller.retain_visible(&mut result);
    let returned = result.matches.iter().chain(&result.included).map(|r| format!("{}/{}", r.resource_type, r.id));
    state.audit.read(caller, "search-type", returned.collect()).await;
    let base = &state.config.base_url;
    let has_more = match result.total {
        Some(total) => ((query.offset + result.matches.len()) as i64) < total,
        None => result.matches.len() == query.count,
    };
    let links = if query.summary_count {
        Vec::new()
    } else {
        paging_links(base, resource_type, &pairs, query.offset, query.count, has_more)
    };
    let mut entries = Vec::with_capacity(result.matches.len() + result.included.len());
    for stored in &result.matches {
        entries.push(search_entry(base, stored, "match")?);
    }
    for stored in &result.included {
        entries.push(search_entry(base, stored, "include")?);
    }
    Ok(fhir_json(StatusCode::OK, &AnswerBundle::new("searchset", result.total, links, entries)))
}
