//! Transaction and batch Bundles POSTed to the base.
//!
//! A transaction is atomic: ids are assigned to the `urn:uuid:` (and other) fullUrls first, every
//! reference to them is rewritten, conditional references are resolved, then the entries run in the
//! order the spec gives (DELETE, POST, PUT/PATCH, GET) in one database transaction. Any failing entry
//! rolls everything back and the answer names the entry. A batch runs each entry on its own.

use std::collections::HashMap;
use std::fmt::Write;

use axum::http::StatusCode;
use rex_fhir::query::{Handling, SearchQuery};
use rex_fhir::search::SearchRegistry;
use rex_fhir::{Issue, IssueCode};
use rex_i18n::{Message, msg};
use rex_store::{Isolation, StoredResource, Tx, format_instant};
use serde_json::{Value, json};

use super::write::{
    BundleTargets, Target, WriteOp, WriteOutcome, execute, execute_entry, known_type, matching_ids, multiple_matches,
    patch_from_binary, patched, single_match, valid_id,
};
use super::{in_transaction, query_pairs};
use crate::AppState;
use crate::access::Caller;
use crate::bundles::{AnswerBundle, AnswerEntry, bundle, full_url, search_entry};
use crate::error::ApiError;
use crate::http::{Prefer, ReturnPreference, etag, stored_json};
use crate::validation::require_valid;
use rex_auth::Interaction;
use rex_fhir::structure::StructureModel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Method {
    // Declared in the processing order the spec prescribes for transactions.
    Delete,
    Post,
    Put,
    Patch,
    Get,
    Head,
}

/// A Bundle entry as rex will run it.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) index: usize,
    pub(super) full_url: Option<String>,
    pub(super) method: Method,
    /// `request.url`, relative to the base.
    pub(super) url: String,
    pub(super) resource: Option<Value>,
    pub(super) if_none_exist: Option<String>,
    pub(super) if_match: Option<i64>,
}

impl Entry {
    /// Whether running the entry depends on a search (conditional create, update or delete, or a
    /// conditional reference), which needs serializable isolation to be race-free.
    pub(super) fn is_conditional(&self) -> bool {
        self.if_none_exist.is_some()
            || self.url.contains('?')
            || self.resource.as_ref().is_some_and(has_conditional_reference)
    }

    fn location(&self) -> String {
        format!("Bundle.entry[{}]", self.index)
    }

    fn resource_location(&self) -> String {
        format!("Bundle.entry[{}].resource", self.index)
    }

    /// Re-roots the locations of an entry's error under the entry, so the client sees where in
    /// the Bundle the problem is.
    fn locate(&self, mut err: ApiError) -> ApiError {
        let resource_type = self.resource.as_ref().and_then(|r| r.get("resourceType")).and_then(Value::as_str);
        err.issues = err
            .issues
            .into_iter()
            .map(|issue| match (&issue.expression, resource_type) {
                (Some(expr), Some(rt)) if expr == rt || expr.starts_with(&format!("{rt}.")) => {
                    issue.within(&self.resource_location())
                }
                (Some(expr), _) if expr.starts_with("Bundle.") => issue,
                _ => {
                    let mut issue = issue.at(self.location());
                    issue.diagnostics = format!("{}: {}", self.location(), issue.diagnostics);
                    issue
                }
            })
            .collect();
        err
    }
}

pub(super) fn parse_bundle(value: &Value) -> Result<(String, Vec<Entry>), ApiError> {
    if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::bad_request(msg!("bundle-not-bundle")));
    }
    let bundle_type = value.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    if bundle_type != "transaction" && bundle_type != "batch" {
        return Err(ApiError::bad_request(msg!("bundle-wrong-type", bundle_type)).at("Bundle.type"));
    }
    let raw_entries = match value.get("entry") {
        Some(Value::Array(entries)) if !entries.is_empty() => entries,
        // Nothing to run is a mistake worth hearing about, not an empty success.
        None | Some(Value::Array(_)) => {
            return Err(ApiError::one(StatusCode::BAD_REQUEST, IssueCode::Required, msg!("bundle-empty", bundle_type))
                .at("Bundle.entry"));
        }
        Some(_) => return Err(ApiError::bad_request(msg!("bundle-entry-array")).at("Bundle.entry")),
    };
    let mut issues = Vec::new();
    let mut entries = Vec::new();
    let mut full_urls = HashMap::new();
    for (index, raw) in raw_entries.iter().enumerate() {
        match parse_entry(index, raw) {
            Ok(entry) => {
                if let Some(full_url) = &entry.full_url
                    && let Some(first) = full_urls.insert(full_url.clone(), index)
                {
                    issues.push(
                        Issue::error(IssueCode::Duplicate, msg!("bundle-duplicate-full-url", full_url, first))
                            .at(format!("Bundle.entry[{index}].fullUrl")),
                    );
                }
                entries.push(entry);
            }
            Err(issue) => issues.push(issue),
        }
    }
    if !issues.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, issues));
    }
    Ok((bundle_type, entries))
}

fn parse_entry(index: usize, raw: &Value) -> Result<Entry, Issue> {
    let at = |path: &str| format!("Bundle.entry[{index}]{path}");
    let invalid = |message: Message, path: &str| Issue::error(IssueCode::Invalid, message).at(at(path));
    let request =
        raw.get("request").ok_or_else(|| Issue::error(IssueCode::Required, msg!("bundle-entry-request")).at(at("")))?;
    let method = match request.get("method").and_then(Value::as_str) {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("PATCH") => Method::Patch,
        Some("DELETE") => Method::Delete,
        _ => return Err(invalid(msg!("bundle-entry-method"), ".request.method")),
    };
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .filter(|url| !url.is_empty())
        .ok_or_else(|| Issue::error(IssueCode::Required, msg!("bundle-entry-url")).at(at(".request.url")))?
        .trim_start_matches('/')
        .to_string();
    let resource = raw.get("resource").cloned();
    if matches!(method, Method::Post | Method::Put | Method::Patch) && !resource.as_ref().is_some_and(Value::is_object)
    {
        return Err(Issue::error(IssueCode::Required, msg!("bundle-entry-resource")).at(at(".resource")));
    }
    let text = |name: &str| request.get(name).and_then(Value::as_str).map(str::to_string);
    let if_match = match text("ifMatch") {
        Some(value) => Some(
            crate::http::parse_etag(&value)
                .ok_or_else(|| invalid(msg!("bundle-entry-if-match"), ".request.ifMatch"))?,
        ),
        None => None,
    };
    Ok(Entry {
        index,
        full_url: raw.get("fullUrl").and_then(Value::as_str).map(str::to_string),
        method,
        url,
        resource,
        if_none_exist: text("ifNoneExist"),
        if_match,
    })
}

/// Splits `Type`, `Type/id`, `Type?query` and `Type/id/_history/v` request URLs.
struct RequestUrl<'a> {
    resource_type: &'a str,
    id: Option<&'a str>,
    rest: Option<&'a str>,
    query: Option<&'a str>,
}

fn split_url(url: &str) -> RequestUrl<'_> {
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let mut parts = path.splitn(3, '/');
    RequestUrl { resource_type: parts.next().unwrap_or_default(), id: parts.next(), rest: parts.next(), query }
}

/// Builds the write of a POST, PUT, PATCH or DELETE entry. A PATCH is held to the same profiles as
/// a PUT (and as a REST PATCH): it is applied to the current version, read in `tx`, the result is
/// validated, and it is written as an update of that version.
async fn write_op(
    tx: &mut Tx,
    state: &AppState,
    caller: &Caller,
    entry: &Entry,
    resource: Option<Value>,
    assigned_id: Option<String>,
) -> Result<WriteOp, ApiError> {
    let url = split_url(&entry.url);
    known_type(url.resource_type)?;
    let resource_type = url.resource_type.to_string();
    let target = || -> Result<Target, ApiError> {
        match (url.id, url.query, url.rest) {
            (Some(id), None, None) if valid_id(id) => Ok(Target::Id(id.to_string())),
            (None, Some(query), None) => Ok(Target::Search(query.to_string())),
            _ => Err(ApiError::bad_request(msg!("bundle-entry-url-form", url = entry.url))),
        }
    };
    let op = match entry.method {
        Method::Post => {
            if url.id.is_some() || url.query.is_some() {
                return Err(ApiError::bad_request(msg!("bundle-post-url", url = entry.url)));
            }
            WriteOp::Create {
                resource_type,
                resource: resource.unwrap_or_default(),
                id: assigned_id,
                if_none_exist: None,
            }
        }
        Method::Put => WriteOp::Update {
            resource_type,
            target: target()?,
            resource: resource.unwrap_or_default(),
            if_match: entry.if_match,
        },
        Method::Patch => {
            let patch = patch_from_binary(resource.as_ref().unwrap_or(&Value::Null))?;
            let (current, patched) = patched(tx, caller, &resource_type, &target()?, &patch, entry.if_match).await?;
            // The patched resource is not in the submitted Bundle, so its paths go into the text.
            let resource = require_valid(&state.checker(caller), patched, Vec::new()).await.map_err(|mut err| {
                for issue in &mut err.issues {
                    if let Some(at) = &issue.expression {
                        issue.diagnostics = format!("{at} after the patch: {}", issue.diagnostics);
                    }
                }
                err
            })?;
            WriteOp::Update {
                resource_type,
                target: Target::Id(current.id),
                resource,
                if_match: Some(current.version_id),
            }
        }
        Method::Delete => WriteOp::Delete { resource_type, target: target()?, if_match: entry.if_match },
        Method::Get | Method::Head => unreachable!("reads are not writes"),
    };
    // A Subscription's endpoint is resolved and checked here, inside the transaction: Subscriptions
    // rarely travel in Bundles, and a PATCH's result is known only here.
    crate::notifications::check_endpoint(state, caller, &op).await?;
    Ok(op)
}

/// Replaces every `reference` that names a Bundle fullUrl with the id it was given, and resolves
/// conditional references (`Patient?identifier=...`) to the single resource they match.
///
/// `path` is the location of `value` (`Patient.contact[0]`). It is one buffer, extended for each
/// child and cut back after it, because formatting a new path for every element of every resource
/// was a noticeable part of intake's CPU time; a path is copied only for an error or a pending
/// conditional reference.
fn rewrite_references(
    value: &mut Value,
    ids: &HashMap<String, String>,
    path: &mut String,
    pending: &mut Vec<(String, String)>,
) -> Result<(), Issue> {
    let parent_len = path.len();
    match value {
        Value::Object(map) => {
            // A Bundle carried as a resource (an IPS document) resolves its references among its own
            // entries; the transaction's fullUrls mean nothing there.
            let nested_bundle = map.get("resourceType").and_then(Value::as_str) == Some("Bundle");
            for (key, child) in map.iter_mut() {
                if (nested_bundle && key == "entry") || !(child.is_object() || child.is_array() || key == "reference") {
                    continue;
                }
                path.push('.');
                path.push_str(key);
                if key == "reference"
                    && let Value::String(reference) = child
                {
                    if let Some(resolved) = ids.get(reference.as_str()) {
                        *reference = resolved.clone();
                    } else if reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:") {
                        return Err(Issue::error(IssueCode::NotFound, msg!("bundle-reference-unknown", reference))
                            .at(path.clone()));
                    } else if reference.contains('?') {
                        pending.push((path.clone(), reference.clone()));
                    }
                } else {
                    rewrite_references(child, ids, path, pending)?;
                }
                path.truncate(parent_len);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                if !(item.is_object() || item.is_array()) {
                    continue;
                }
                // Writing to a String cannot fail.
                let _ = write!(path, "[{index}]");
                rewrite_references(item, ids, path, pending)?;
                path.truncate(parent_len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn has_conditional_reference(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, child)| {
            (key == "reference" && child.as_str().is_some_and(|r| r.contains('?'))) || has_conditional_reference(child)
        }),
        Value::Array(items) => items.iter().any(has_conditional_reference),
        _ => false,
    }
}

/// Sets the value at a simple dotted path with indexes (`a.b[0].reference`) below `root`.
fn set_at(root: &mut Value, path: &str, new_value: String) {
    let mut current = root;
    for segment in path.split('.').skip(1) {
        let (name, indexes) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        let Some(next) = current.get_mut(name) else { return };
        current = next;
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let Some(next) = index.parse::<usize>().ok().and_then(|i| current.get_mut(i)) else { return };
            current = next;
        }
    }
    *current = Value::String(new_value);
}

/// The result of one entry, for the response Bundle.
pub(super) struct EntryResult {
    pub(super) status: StatusCode,
    pub(super) stored: Option<StoredResource>,
    /// A read's or search's body (a resource or a searchset Bundle).
    pub(super) body: Option<Value>,
    /// Whether the entry wrote something (false for reads, matches and unchanged updates).
    pub(super) wrote: bool,
}

fn status_line(status: StatusCode) -> String {
    format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default())
}

pub(super) fn response_entry(state: &AppState, result: &EntryResult, prefer: Prefer) -> Result<AnswerEntry, ApiError> {
    let mut response = json!({ "status": status_line(result.status) });
    let mut entry = json!({});
    let mut representation = None;
    if let Some(stored) = &result.stored {
        response["location"] = json!(format!("{}/{}/_history/{}", stored.resource_type, stored.id, stored.version_id));
        response["etag"] = json!(etag(stored.version_id));
        response["lastModified"] = json!(format_instant(stored.last_updated));
        entry["fullUrl"] = json!(full_url(&state.config.base_url, stored));
        match prefer.return_ {
            ReturnPreference::Representation if result.body.is_none() && stored.content.is_some() => {
                entry["resource"] = Value::Null;
                representation = Some(stored);
            }
            ReturnPreference::OperationOutcome => {
                response["outcome"] = crate::language::success(status_line(result.status))
            }
            _ => {}
        }
    }
    if let Some(body) = &result.body {
        entry["resource"] = body.clone();
    }
    entry["response"] = response;
    match representation {
        Some(stored) => AnswerEntry::with_stored(entry, stored),
        None => Ok(AnswerEntry::json(entry)),
    }
}

fn write_result(outcome: WriteOutcome) -> EntryResult {
    let wrote = matches!(outcome, WriteOutcome::Created(_) | WriteOutcome::Updated(_) | WriteOutcome::Deleted(_));
    EntryResult { status: outcome.status(), stored: outcome.stored().cloned(), body: None, wrote }
}

/// Runs a GET or HEAD entry: read, vread, search or instance history.
async fn read_entry(tx: &mut Tx, state: &AppState, caller: &Caller, entry: &Entry) -> Result<EntryResult, ApiError> {
    let url = split_url(&entry.url);
    known_type(url.resource_type)?;
    let resource_type = url.resource_type;
    caller.require(resource_type, if url.id.is_some() { Interaction::Read } else { Interaction::Search })?;
    let found = |stored: Option<StoredResource>, what: &str| -> Result<EntryResult, ApiError> {
        match stored {
            Some(stored) if !caller.sees(&stored) => Err(ApiError::hidden(what)),
            Some(stored) if stored.deleted => Err(ApiError::gone(msg!("resource-deleted", reference = what))),
            Some(stored) => Ok(EntryResult {
                status: StatusCode::OK,
                body: Some(stored_json(&stored)?),
                stored: Some(stored),
                wrote: false,
            }),
            None => Err(ApiError::not_found(msg!("resource-not-known", reference = what))),
        }
    };
    let body = match (url.id, url.rest) {
        (Some(id), None) => return found(tx.read(resource_type, id).await?, &format!("{resource_type}/{id}")),
        (Some(id), Some(rest)) => match rest.strip_prefix("_history/").map(str::parse::<i64>) {
            Some(Ok(version)) => {
                let what = format!("{resource_type}/{id}/_history/{version}");
                if !tx.read(resource_type, id).await?.is_some_and(|current| caller.sees(&current)) {
                    return Err(ApiError::hidden(&what));
                }
                return found(tx.vread(resource_type, id, version).await?, &what);
            }
            _ => return Err(ApiError::bad_request(format!("Unsupported request.url '{}'", entry.url))),
        },
        (None, _) => {
            let pairs = query_pairs(url.query);
            let mut query = SearchQuery::parse(SearchRegistry::r4(), resource_type, &pairs, Handling::Strict)
                .map_err(|issues| ApiError::new(StatusCode::BAD_REQUEST, issues))?;
            caller.restrict(&mut query);
            let mut result = tx.search(&query).await?;
            caller.retain_visible(&mut result);
            let mut entries = Vec::new();
            for stored in &result.matches {
                entries.push(search_entry(&state.config.base_url, stored, "match")?.into_json()?);
            }
            for stored in &result.included {
                entries.push(search_entry(&state.config.base_url, stored, "include")?.into_json()?);
            }
            bundle("searchset", result.total, Vec::new(), entries)
        }
    };
    Ok(EntryResult { status: StatusCode::OK, stored: None, body: Some(body), wrote: false })
}

/// The whole transaction inside one database transaction.
pub(super) async fn transaction_body(
    tx: &mut Tx,
    state: &AppState,
    caller: &Caller,
    entries: &[Entry],
) -> Result<Vec<EntryResult>, ApiError> {
    // Ids first, so that every reference can be rewritten before anything is written.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut existing: HashMap<usize, StoredResource> = HashMap::new();
    let mut assigned: HashMap<usize, String> = HashMap::new();
    let mut targets = BundleTargets::new();
    for entry in entries {
        let url = split_url(&entry.url);
        let target = match entry.method {
            Method::Post => {
                let id = match &entry.if_none_exist {
                    Some(query) => {
                        known_type(url.resource_type).map_err(|err| entry.locate(err))?;
                        let found = matching_ids(tx, caller, url.resource_type, query)
                            .await
                            .map_err(|err| entry.locate(err))?;
                        let too_many = || {
                            entry.locate(multiple_matches(msg!(
                                "if-none-exist-entry-multiple-matches",
                                query,
                                resource_type = url.resource_type
                            )))
                        };
                        match single_match(found, too_many)? {
                            None => rex_store::new_id(),
                            Some(id) => {
                                let stored = tx.read(url.resource_type, &id).await?.ok_or_else(ApiError::internal)?;
                                existing.insert(entry.index, stored);
                                id
                            }
                        }
                    }
                    None => rex_store::new_id(),
                };
                assigned.insert(entry.index, id.clone());
                Some(format!("{}/{id}", url.resource_type))
            }
            Method::Put => match (url.id, url.query) {
                (Some(id), None) => Some(format!("{}/{id}", url.resource_type)),
                (None, Some(query)) => {
                    known_type(url.resource_type).map_err(|err| entry.locate(err))?;
                    let found =
                        matching_ids(tx, caller, url.resource_type, query).await.map_err(|err| entry.locate(err))?;
                    let body_id = entry.resource.as_ref().and_then(|r| r.get("id")).and_then(Value::as_str);
                    let too_many = || {
                        entry.locate(multiple_matches(msg!(
                            "condition-multiple-matches",
                            query,
                            resource_type = url.resource_type
                        )))
                    };
                    let id = match single_match(found, too_many)? {
                        None => body_id.map(str::to_string).unwrap_or_else(rex_store::new_id),
                        Some(id) => id,
                    };
                    assigned.insert(entry.index, id.clone());
                    Some(format!("{}/{id}", url.resource_type))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(target) = target {
            targets.insert(target.clone());
            if let Some(full_url) = &entry.full_url {
                ids.insert(full_url.clone(), target);
            }
        }
    }

    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by_key(|entry| (entry.method, entry.index));
    let mut results: HashMap<usize, EntryResult> = HashMap::new();
    for entry in order {
        let result = match entry.method {
            Method::Get | Method::Head => read_entry(tx, state, caller, entry).await,
            _ if existing.contains_key(&entry.index) => {
                Ok(write_result(WriteOutcome::Existing(existing[&entry.index].clone())))
            }
            _ => {
                let resource = match entry.resource.clone() {
                    Some(mut resource) => {
                        let mut pending = Vec::new();
                        let mut path =
                            resource.get("resourceType").and_then(Value::as_str).unwrap_or("Resource").to_string();
                        rewrite_references(&mut resource, &ids, &mut path, &mut pending)
                            .map_err(|issue| entry.locate(ApiError::new(StatusCode::BAD_REQUEST, vec![issue])))?;
                        for (path, reference) in pending {
                            let (target_type, query) = reference.split_once('?').unwrap_or_default();
                            let resolve_err = |message: Message| {
                                entry.locate(ApiError::new(
                                    StatusCode::PRECONDITION_FAILED,
                                    vec![Issue::error(IssueCode::NotFound, message).at(path.clone())],
                                ))
                            };
                            known_type(target_type).map_err(|err| entry.locate(err))?;
                            let found =
                                matching_ids(tx, caller, target_type, query).await.map_err(|err| entry.locate(err))?;
                            let too_many = || resolve_err(msg!("conditional-reference-many", reference));
                            match single_match(found, too_many)? {
                                Some(id) => set_at(&mut resource, &path, format!("{target_type}/{id}")),
                                None => {
                                    return Err(resolve_err(msg!("conditional-reference-none", reference)));
                                }
                            }
                        }
                        if entry.method == Method::Put
                            && split_url(&entry.url).query.is_some()
                            && let (Some(id), Some(object)) = (assigned.get(&entry.index), resource.as_object_mut())
                        {
                            object.insert("id".into(), json!(id));
                        }
                        Some(resource)
                    }
                    None => None,
                };
                let mut op = write_op(tx, state, caller, entry, resource, assigned.get(&entry.index).cloned())
                    .await
                    .map_err(|err| if err.retryable { err } else { entry.locate(err) })?;
                if let (WriteOp::Update { target, .. }, Some(id)) = (&mut op, assigned.get(&entry.index)) {
                    *target = Target::Id(id.clone());
                }
                execute_entry(tx, caller, op, &targets).await.map(write_result)
            }
        };
        results.insert(entry.index, result.map_err(|err| if err.retryable { err } else { entry.locate(err) })?);
    }
    Ok((0..entries.len()).map(|index| results.remove(&index).expect("every entry ran")).collect())
}

pub(super) async fn run_transaction(
    state: &AppState,
    caller: &Caller,
    entries: &[Entry],
    prefer: Prefer,
) -> Result<AnswerBundle, ApiError> {
    let context = (state, caller, entries);
    let results = in_transaction(&state.store, Isolation::Serializable, &context, |tx, (state, caller, entries)| {
        Box::pin(transaction_body(tx, state, caller, entries))
    })
    .await?;
    let entries = results.iter().map(|result| response_entry(state, result, prefer)).collect::<Result<Vec<_>, _>>()?;
    Ok(AnswerBundle::new("transaction-response", None, Vec::new(), entries))
}

/// Each entry of a batch in its own database transaction; a failure is reported in its entry.
pub(super) async fn run_batch(state: &AppState, caller: &Caller, entries: &[Entry], prefer: Prefer) -> AnswerBundle {
    let mut response_entries = Vec::with_capacity(entries.len());
    let mut failures = Vec::new();
    for entry in entries {
        if let (Some(resource), Method::Post | Method::Put) = (&entry.resource, entry.method) {
            let structure = StructureModel::r4().check(resource);
            let checked = if structure.iter().any(Issue::is_error) {
                Err(ApiError::new(StatusCode::BAD_REQUEST, structure))
            } else {
                require_valid(&state.checker(caller), resource.clone(), Vec::new()).await.map(|_| ())
            };
            if let Err(err) = checked {
                response_entries.push(failed_entry(entry.locate(err), &mut failures));
                continue;
            }
        }
        let result = in_transaction(&state.store, Isolation::Serializable, &(state, entry), |tx, (state, entry)| {
            Box::pin(async move {
                match entry.method {
                    Method::Get | Method::Head => read_entry(tx, state, caller, entry).await,
                    _ => {
                        let op = write_op(tx, state, caller, entry, entry.resource.clone(), None).await?;
                        execute(tx, caller, op).await.map(write_result)
                    }
                }
            })
        })
        .await
        .and_then(|result| response_entry(state, &result, prefer));
        response_entries.push(result.unwrap_or_else(|err| failed_entry(entry.locate(err), &mut failures)));
    }
    AnswerBundle::new("batch-response", None, Vec::new(), response_entries).with_entry_issues(failures)
}

/// The response entry of a batch entry that failed; its issues are added to `failures`.
fn failed_entry(err: ApiError, failures: &mut Vec<Issue>) -> AnswerEntry {
    let entry = AnswerEntry::json(
        json!({"response": {"status": status_line(err.status), "outcome": crate::language::outcome(&err.issues)}}),
    );
    failures.extend(err.issues);
    entry
}
