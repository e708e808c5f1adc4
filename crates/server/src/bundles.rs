//! Building the Bundles rex answers with: searchset and history.

use rex_store::{HistoryEntry, StoredResource, format_instant};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::http::{etag, stored_json};

/// `{base}/{type}/{id}`.
pub fn full_url(base: &str, stored: &StoredResource) -> String {
    format!("{base}/{}/{}", stored.resource_type, stored.id)
}

/// A paging link: `base/path?query&_offset=n`, with the caller's parameters kept in order.
pub fn page_link(base: &str, path: &str, pairs: &[(String, String)], offset: usize) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs.iter().filter(|(k, _)| k != "_offset") {
        serializer.append_pair(key, value);
    }
    if offset > 0 {
        serializer.append_pair("_offset", &offset.to_string());
    }
    let query = serializer.finish();
    if query.is_empty() { format!("{base}/{path}") } else { format!("{base}/{path}?{query}") }
}

/// `self`, `previous` and `next` links for a page at `offset` of `count` entries.
pub fn paging_links(
    base: &str,
    path: &str,
    pairs: &[(String, String)],
    offset: usize,
    count: usize,
    has_more: bool,
) -> Vec<Value> {
    let mut links = vec![json!({"relation": "self", "url": page_link(base, path, pairs, offset)})];
    if offset > 0 && count > 0 {
        links.push(json!({"relation": "previous", "url": page_link(base, path, pairs, offset.saturating_sub(count))}));
    }
    if has_more && count > 0 {
        links.push(json!({"relation": "next", "url": page_link(base, path, pairs, offset + count)}));
    }
    links
}

/// A Bundle of the given type with links, optional total and entries.
pub fn bundle(bundle_type: &str, total: Option<i64>, links: Vec<Value>, entries: Vec<Value>) -> Value {
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    bundle.insert("meta".into(), json!({"lastUpdated": format_instant(rex_store::now_micros())}));
    bundle.insert("type".into(), json!(bundle_type));
    if let Some(total) = total {
        bundle.insert("total".into(), json!(total));
    }
    if !links.is_empty() {
        bundle.insert("link".into(), Value::Array(links));
    }
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(bundle)
}

/// A searchset entry.
pub fn search_entry(base: &str, stored: &StoredResource, mode: &str) -> Result<Value, ApiError> {
    Ok(json!({
        "fullUrl": full_url(base, stored),
        "resource": stored_json(stored)?,
        "search": {"mode": mode},
    }))
}

/// A history entry: the version (absent for a deletion), the request that made it and its result.
pub fn history_entry(base: &str, entry: &HistoryEntry) -> Result<Value, ApiError> {
    let stored = &entry.resource;
    let url = match entry.method.as_str() {
        "POST" => stored.resource_type.clone(),
        _ => format!("{}/{}", stored.resource_type, stored.id),
    };
    let status = match entry.method.as_str() {
        "POST" => "201 Created",
        "DELETE" => "204 No Content",
        _ => "200 OK",
    };
    let mut value = json!({
        "fullUrl": full_url(base, stored),
        "request": {"method": entry.method, "url": url},
        "response": {
            "status": status,
            "etag": etag(stored.version_id),
            "lastModified": format_instant(stored.last_updated),
        },
    });
    if !stored.deleted {
        value["resource"] = stored_json(stored)?;
    }
    Ok(value)
}
