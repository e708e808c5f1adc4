//! Building the Bundles rex answers with: searchset, history and transaction-response.

use rex_fhir::Issue;
use rex_store::{HistoryEntry, StoredResource, format_instant};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
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
pub fn search_entry(base: &str, stored: &StoredResource, mode: &str) -> Result<AnswerEntry, ApiError> {
    let json = json!({"fullUrl": full_url(base, stored), "resource": null, "search": {"mode": mode}});
    AnswerEntry::with_stored(json, stored)
}

/// An entry of a Bundle rex answers with, whose `resource` may be a stored resource's JSON text.
///
/// The stored text is written into the response as it is. Parsing it into a `Value` only to
/// serialize it again cost about a twentieth of the server's CPU per referral Bundle (whose
/// transaction-response returns every resource it created) and per search page.
pub struct AnswerEntry {
    /// The entry; its `resource` is `null` where a stored text takes its place.
    json: Value,
    resource: Option<Box<RawValue>>,
}

impl AnswerEntry {
    /// An entry that is all JSON.
    pub fn json(json: Value) -> AnswerEntry {
        AnswerEntry { json, resource: None }
    }

    /// An entry whose `resource` (a `null` in `json`, which keeps the field's place) is `stored`.
    pub fn with_stored(json: Value, stored: &StoredResource) -> Result<AnswerEntry, ApiError> {
        let text = stored.content.clone().ok_or_else(ApiError::internal)?;
        let resource = RawValue::from_string(text).map_err(|_| ApiError::internal())?;
        Ok(AnswerEntry { json, resource: Some(resource) })
    }

    /// The entry as JSON, for a Bundle nested in another one.
    pub fn into_json(self) -> Result<Value, ApiError> {
        let mut json = self.json;
        if let Some(resource) = self.resource {
            json["resource"] = serde_json::from_str(resource.get()).map_err(|_| ApiError::internal())?;
        }
        Ok(json)
    }
}

/// A Bundle rex answers with, whose entries may hold stored resources' JSON texts; it is written
/// out by its [`Serialize`] implementation.
pub struct AnswerBundle {
    /// The Bundle, with `null` in place of each stored resource.
    json: Value,
    /// Per entry, in order: the stored text of its `resource`, if it has one.
    resources: Vec<Option<Box<RawValue>>>,
    /// The issues written into the entries' `response.outcome` (failed batch entries, warnings),
    /// kept with their rules for readers of the answer such as the scorecard.
    entry_issues: Vec<Issue>,
}

impl AnswerBundle {
    /// A Bundle of the given type with links, optional total and entries (see [`bundle`]).
    pub fn new(bundle_type: &str, total: Option<i64>, links: Vec<Value>, entries: Vec<AnswerEntry>) -> AnswerBundle {
        let (json, resources) = entries.into_iter().map(|entry| (entry.json, entry.resource)).unzip();
        AnswerBundle { json: bundle(bundle_type, total, links, json), resources, entry_issues: Vec::new() }
    }

    /// Keeps `issues`, already written into the entries' `response.outcome`, as [`Self::entry_issues`].
    pub fn with_entry_issues(mut self, issues: Vec<Issue>) -> AnswerBundle {
        self.entry_issues.extend(issues);
        self
    }

    /// Adds each issue located in an entry (`Bundle.entry[2].resource.meta.profile[0]`) to that
    /// entry's `response.outcome`, an OperationOutcome of hints and warnings.
    pub fn add_entry_warnings(&mut self, issues: &[Issue]) {
        let mut by_entry: std::collections::BTreeMap<usize, Vec<Issue>> = std::collections::BTreeMap::new();
        for issue in issues {
            let index = issue.expression.as_deref().and_then(|e| e.strip_prefix("Bundle.entry[")?.split_once(']'));
            if let Some(index) = index.and_then(|(index, _)| index.parse().ok()) {
                by_entry.entry(index).or_default().push(issue.clone());
            }
        }
        for (index, issues) in by_entry {
            let entry = self.json.get_mut("entry").and_then(|entries| entries.get_mut(index));
            if let Some(response) = entry.and_then(|e| e.get_mut("response")) {
                response["outcome"] = rex_fhir::outcome::operation_outcome(&issues);
                self.entry_issues.extend(issues);
            }
        }
    }

    /// The issues of the entries' `response.outcome`, other than success messages.
    pub fn entry_issues(&self) -> &[Issue] {
        &self.entry_issues
    }

    /// The Bundle without its stored resources (`null` in their place): its type, links, responses.
    pub fn json(&self) -> &Value {
        &self.json
    }
}

impl Serialize for AnswerBundle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Value::Object(fields) = &self.json else { return self.json.serialize(serializer) };
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (key, value) in fields {
            match value {
                Value::Array(entries) if key == "entry" => {
                    map.serialize_entry(key, &Entries { entries, resources: &self.resources })?
                }
                _ => map.serialize_entry(key, value)?,
            }
        }
        map.end()
    }
}

struct Entries<'a> {
    entries: &'a [Value],
    resources: &'a [Option<Box<RawValue>>],
}

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.entries.len()))?;
        for (entry, resource) in self.entries.iter().zip(self.resources) {
            match (entry, resource) {
                (Value::Object(fields), Some(resource)) => seq.serialize_element(&WithResource { fields, resource })?,
                _ => seq.serialize_element(entry)?,
            }
        }
        seq.end()
    }
}

/// An entry's fields with the stored text written in place of its `resource`.
struct WithResource<'a> {
    fields: &'a Map<String, Value>,
    resource: &'a RawValue,
}

impl Serialize for WithResource<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, value) in self.fields {
            if key == "resource" {
                map.serialize_entry(key, self.resource)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(content: &str) -> StoredResource {
        StoredResource {
            resource_type: "Patient".into(),
            id: "p1".into(),
            version_id: 1,
            last_updated: 0,
            deleted: false,
            content: Some(content.into()),
        }
    }

    #[test]
    fn answer_bundles_write_stored_resources_in_place_and_as_stored() {
        let content = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Ñúñez \"Jr\""}]}"#;
        let entries = vec![
            search_entry("http://rex/fhir", &stored(content), "match").unwrap(),
            AnswerEntry::json(json!({"response": {"status": "404 Not Found"}})),
        ];
        let answer = AnswerBundle::new("searchset", Some(1), Vec::new(), entries);
        let text = serde_json::to_string(&answer).unwrap();
        assert!(
            text.contains(&format!(r#"{{"fullUrl":"http://rex/fhir/Patient/p1","resource":{content},"search":"#)),
            "{text}"
        );
        // The same document as a Bundle built of parsed values.
        let mut expected = answer.json().clone();
        expected["entry"][0]["resource"] = serde_json::from_str(content).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        let nested = search_entry("http://rex/fhir", &stored(content), "include").unwrap().into_json().unwrap();
        assert_eq!(nested["resource"]["name"][0]["family"], "Ñúñez \"Jr\"");
    }
}
