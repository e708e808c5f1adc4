//! Create, update, delete and patch, as one executor shared by the REST routes and the entries of
//! transaction and batch Bundles, so both follow exactly the same rules.

use std::collections::HashSet;
use std::fmt::Write;

use axum::http::StatusCode;
use base64::Engine;
use rex_fhir::query::{Handling, SearchQuery};
use rex_fhir::search::{SearchRegistry, split_reference};
use rex_fhir::structure::StructureModel;
use rex_fhir::{Issue, IssueCode};
use rex_i18n::msg;
use rex_store::{Change, DeleteOutcome, Isolation, StoredResource, Tx};
use serde_json::Value;

use crate::access::{Caller, keep_owner};
use crate::error::ApiError;
use rex_auth::Interaction;

/// Which resource a write addresses: one id, or whatever a search matches (conditional interactions).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Id(String),
    /// The query string of a conditional update or delete (`identifier=http://x|1`).
    Search(String),
}

/// A write request, independent of how it arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Create {
        resource_type: String,
        resource: Value,
        /// The id to give the new resource; the server chooses one when `None`.
        id: Option<String>,
        if_none_exist: Option<String>,
    },
    Update {
        resource_type: String,
        target: Target,
        resource: Value,
        if_match: Option<i64>,
    },
    Delete {
        resource_type: String,
        target: Target,
        if_match: Option<i64>,
    },
}

impl WriteOp {
    /// Writes that search need serializable isolation; writes addressed by id only lock their row.
    pub fn isolation(&self) -> Isolation {
        match self {
            WriteOp::Create { if_none_exist: Some(_), .. } => Isolation::Serializable,
            WriteOp::Create { .. } => Isolation::RowLocking,
            WriteOp::Update { target, .. } | WriteOp::Delete { target, .. } => match target {
                Target::Id(_) => Isolation::RowLocking,
                Target::Search(_) => Isolation::Serializable,
            },
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Created(StoredResource),
    Updated(StoredResource),
    /// An update whose content equals the current version; nothing was written.
    Unchanged(StoredResource),
    /// A conditional create found this existing resource and created nothing.
    Existing(StoredResource),
    Deleted(Option<i64>),
    /// A delete found nothing to delete (already deleted, or no conditional match).
    NothingDeleted,
}

impl WriteOutcome {
    pub fn status(&self) -> StatusCode {
        match self {
            WriteOutcome::Created(_) => StatusCode::CREATED,
            WriteOutcome::Updated(_) | WriteOutcome::Unchanged(_) | WriteOutcome::Existing(_) => StatusCode::OK,
            WriteOutcome::Deleted(_) | WriteOutcome::NothingDeleted => StatusCode::NO_CONTENT,
        }
    }

    pub fn stored(&self) -> Option<&StoredResource> {
        match self {
            WriteOutcome::Created(stored)
            | WriteOutcome::Updated(stored)
            | WriteOutcome::Unchanged(stored)
            | WriteOutcome::Existing(stored) => Some(stored),
            WriteOutcome::Deleted(_) | WriteOutcome::NothingDeleted => None,
        }
    }
}

/// Whether `id` is a valid FHIR id: 1–64 of `A-Z a-z 0-9 - .`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// 404 unless `resource_type` is a concrete R4 resource type.
pub fn known_type(resource_type: &str) -> Result<(), ApiError> {
    if StructureModel::r4().is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(ApiError::one(StatusCode::NOT_FOUND, IssueCode::NotSupported, msg!("unknown-resource-type", resource_type)))
    }
}

/// Checks a resource a client sent: [`check_addressing`], and its structure must follow the R4
/// definitions (unknown elements, cardinality, JSON kinds), reported with locations.
pub fn check_resource(resource_type: &str, resource: &Value) -> Result<(), ApiError> {
    check_addressing(resource_type, resource)?;
    let issues: Vec<Issue> = StructureModel::r4().check(resource);
    if issues.iter().any(Issue::is_error) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, issues));
    }
    Ok(())
}

/// The checks every write repeats inside its transaction: the resource's type is the one
/// addressed and its id is a valid FHIR id. The structure was checked, outside the transaction,
/// where the content came in (REST bodies, validated Bundles, patches); doing it again here would
/// hold the SQLite writer for nothing.
fn check_addressing(resource_type: &str, resource: &Value) -> Result<(), ApiError> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(found) if found == resource_type => {}
        Some(found) => {
            return Err(ApiError::bad_request(msg!("wrong-resource-type", found, resource_type)).at(found));
        }
        None => {
            return Err(ApiError::one(StatusCode::BAD_REQUEST, IssueCode::Required, msg!("no-resource-type")));
        }
    }
    if let Some(id) = resource.get("id")
        && !id.as_str().is_some_and(valid_id)
    {
        return Err(ApiError::one(StatusCode::BAD_REQUEST, IssueCode::Value, msg!("invalid-id"))
            .at(&format!("{resource_type}.id")));
    }
    Ok(())
}

/// Parses the query of a conditional interaction; unknown parameters are errors, since a
/// condition silently ignored would match too much.
fn conditional_query(resource_type: &str, query: &str) -> Result<SearchQuery, ApiError> {
    let query = query.trim_start_matches('?');
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    if pairs.is_empty() {
        return Err(ApiError::bad_request(msg!("conditional-needs-search")));
    }
    let mut parsed = SearchQuery::parse(SearchRegistry::r4(), resource_type, &pairs, Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::BAD_REQUEST, issues))?;
    parsed.count = 2;
    parsed.total = rex_fhir::query::Total::None;
    Ok(parsed)
}

/// The ids a conditional query matches among what the caller may see (at most two: enough to
/// tell one from several).
pub async fn matching_ids(
    tx: &mut Tx,
    caller: &Caller,
    resource_type: &str,
    query: &str,
) -> Result<Vec<String>, ApiError> {
    let mut parsed = conditional_query(resource_type, query)?;
    caller.restrict(&mut parsed);
    Ok(tx.search(&parsed).await?.matches.into_iter().map(|r| r.id).collect())
}

/// Resolves a target to one id: `Ok(None)` when a conditional target matches nothing.
async fn resolve_target(
    tx: &mut Tx,
    caller: &Caller,
    resource_type: &str,
    target: &Target,
) -> Result<Option<String>, ApiError> {
    match target {
        Target::Id(id) => Ok(Some(id.clone())),
        Target::Search(query) => {
            let ids = matching_ids(tx, caller, resource_type, query).await?;
            single_match(ids, || multiple_matches(msg!("condition-multiple-matches", query, resource_type)))
        }
    }
}

/// The rule of conditional interactions (conditional create, update and delete, conditional
/// references): the search names nothing (`None`), one resource, or more than one, which is
/// refused with `too_many`.
pub(crate) fn single_match<E>(ids: Vec<String>, too_many: impl FnOnce() -> E) -> Result<Option<String>, E> {
    let mut ids = ids.into_iter();
    match (ids.next(), ids.next()) {
        (None, _) => Ok(None),
        (Some(id), None) => Ok(Some(id)),
        (Some(_), Some(_)) => Err(too_many()),
    }
}

/// The refusal (412) of a conditional interaction whose condition matches more than one resource;
/// `message` says which condition.
pub(crate) fn multiple_matches(message: rex_i18n::Message) -> ApiError {
    ApiError::one(StatusCode::PRECONDITION_FAILED, IssueCode::MultipleMatches, message)
}

/// The current version of the resource a write addresses, `None` when there is none; what the
/// caller may not see is refused as if it did not exist.
async fn current_for(
    tx: &mut Tx,
    caller: &Caller,
    resource_type: &str,
    id: &str,
) -> Result<Option<StoredResource>, ApiError> {
    match tx.read(resource_type, id).await? {
        Some(stored) if !caller.sees(&stored) => Err(ApiError::hidden(&format!("{resource_type}/{id}"))),
        found => Ok(found),
    }
}

/// `Type/id` of every resource a transaction Bundle writes. Ids are assigned before any entry
/// runs, so an entry may point at a resource an entry after it writes; those references are the
/// caller's own and need no lookup.
pub type BundleTargets = HashSet<String>;

/// Runs one write inside `tx` on behalf of `caller`: the SMART scope is checked, what the caller
/// may not see cannot be changed, a partner's writes land in its compartment and point only at
/// what it may see, and a change of a partner's referral Task or consult Appointment queues its
/// notifications (a Subscription left `requested`, its handshake) in the same transaction.
pub async fn execute(tx: &mut Tx, caller: &Caller, op: WriteOp) -> Result<WriteOutcome, ApiError> {
    execute_entry(tx, caller, op, &BundleTargets::new()).await
}

/// [`execute`] for an entry of a transaction Bundle that writes `bundle_targets`.
pub async fn execute_entry(
    tx: &mut Tx,
    caller: &Caller,
    op: WriteOp,
    bundle_targets: &BundleTargets,
) -> Result<WriteOutcome, ApiError> {
    let outcome = write(tx, caller, op, bundle_targets).await?;
    if let WriteOutcome::Created(stored) | WriteOutcome::Updated(stored) = &outcome {
        match stored.resource_type.as_str() {
            "Task" | "Appointment" => crate::notifications::enqueue_change(tx, stored, chrono::Utc::now()).await?,
            "Subscription" => {
                crate::notifications::enqueue_handshake_if_requested(tx, stored, chrono::Utc::now()).await?
            }
            _ => {}
        }
    }
    Ok(outcome)
}

/// Takes the write by value: its resource becomes the stored one without a copy.
async fn write(
    tx: &mut Tx,
    caller: &Caller,
    op: WriteOp,
    bundle_targets: &BundleTargets,
) -> Result<WriteOutcome, ApiError> {
    match op {
        WriteOp::Create { resource_type, mut resource, id, if_none_exist } => {
            let resource_type = resource_type.as_str();
            caller.require(resource_type, Interaction::Create)?;
            check_addressing(resource_type, &resource)?;
            if let Some(query) = &if_none_exist {
                let ids = matching_ids(tx, caller, resource_type, query).await?;
                let too_many = || multiple_matches(msg!("if-none-exist-multiple-matches", query, resource_type));
                if let Some(existing) = single_match(ids, too_many)? {
                    let stored = tx.read(resource_type, &existing).await?.ok_or_else(ApiError::internal)?;
                    return Ok(WriteOutcome::Existing(stored));
                }
            }
            super::consult::check_scheduling_write(caller, resource_type, Some(&resource), None)?;
            let id = id.unwrap_or_else(rex_store::new_id);
            check_references(tx, caller, resource_type, &resource, bundle_targets).await?;
            caller.stamp(&mut resource);
            if resource_type == "Subscription" {
                crate::notifications::accept_subscription(&mut resource, None)?;
            }
            Ok(WriteOutcome::Created(tx.create(resource_type, &id, resource).await?))
        }
        WriteOp::Update { resource_type, target, mut resource, if_match } => {
            let resource_type = resource_type.as_str();
            caller.require(resource_type, Interaction::Update)?;
            check_addressing(resource_type, &resource)?;
            let body_id = resource.get("id").and_then(Value::as_str);
            let id = match (resolve_target(tx, caller, resource_type, &target).await?, &target) {
                (Some(id), Target::Id(_)) if body_id != Some(id.as_str()) => {
                    return Err(match body_id {
                        Some(body_id) => ApiError::bad_request(msg!("id-mismatch", body_id, id)),
                        None => ApiError::bad_request(msg!("id-missing", id)),
                    }
                    .at(&format!("{resource_type}.id")));
                }
                (Some(id), Target::Search(_)) if body_id.is_some_and(|body_id| body_id != id) => {
                    return Err(ApiError::bad_request(msg!("id-differs-from-match")).at(&format!("{resource_type}.id")));
                }
                (Some(id), _) => id,
                (None, _) => body_id.map(str::to_string).unwrap_or_else(rex_store::new_id),
            };
            let current = current_for(tx, caller, resource_type, &id).await?;
            super::consult::check_scheduling_write(caller, resource_type, Some(&resource), current.as_ref())?;
            if let Some(current) = &current {
                keep_owner(current, &mut resource);
            }
            check_references(tx, caller, resource_type, &resource, bundle_targets).await?;
            caller.stamp(&mut resource);
            if resource_type == "Subscription" {
                crate::notifications::accept_subscription(&mut resource, current.as_ref())?;
            }
            if resource_type == "Task" {
                task_status_change(tx, &id, &mut resource).await?;
            }
            let (stored, change) = tx.update(resource_type, &id, resource, if_match).await?;
            Ok(match change {
                Change::Created => WriteOutcome::Created(stored),
                Change::Updated => WriteOutcome::Updated(stored),
                Change::Unchanged => WriteOutcome::Unchanged(stored),
            })
        }
        WriteOp::Delete { resource_type, target, if_match } => {
            let resource_type = resource_type.as_str();
            caller.require(resource_type, Interaction::Delete)?;
            let Some(id) = resolve_target(tx, caller, resource_type, &target).await? else {
                return Ok(WriteOutcome::NothingDeleted);
            };
            let current = current_for(tx, caller, resource_type, &id).await?;
            super::consult::check_scheduling_write(caller, resource_type, None, current.as_ref())?;
            match tx.delete(resource_type, &id, if_match).await? {
                DeleteOutcome::Deleted(version) => Ok(WriteOutcome::Deleted(Some(version))),
                DeleteOutcome::AlreadyDeleted => Ok(WriteOutcome::NothingDeleted),
                DeleteOutcome::NotFound => {
                    Err(ApiError::not_found(msg!("resource-not-known", reference = format!("{resource_type}/{id}"))))
                }
            }
        }
    }
}

/// A partner's write may point only at what [`Caller::may_reference`] allows. Every reference that
/// searches take for a resource on this server (`Type/id`, or an absolute URL ending in one: see
/// [`split_reference`]) must name a resource the partner sees or one of rex's shared ones; anything
/// else is refused exactly as a reference to a resource that does not exist, so the answer never
/// tells whether another partner's resource exists (the attempt is audited). References inside a
/// document Bundle the resource carries resolve among its own entries and are not looked up.
async fn check_references(
    tx: &mut Tx,
    caller: &Caller,
    resource_type: &str,
    resource: &Value,
    bundle_targets: &BundleTargets,
) -> Result<(), ApiError> {
    if !caller.checks_references() {
        return Ok(());
    }
    let mut references = Vec::new();
    collect_references(resource, &mut resource_type.to_string(), &mut references);
    let mut allowed = HashSet::new();
    for (path, reference) in references {
        let Some((target_type, id)) = split_reference(reference) else { continue };
        let target = format!("{target_type}/{id}");
        if bundle_targets.contains(&target) || allowed.contains(&target) {
            continue;
        }
        match tx.read(target_type, id).await? {
            Some(stored) if caller.may_reference(&stored) => {
                allowed.insert(target);
            }
            found => {
                let refused = ApiError::one(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    IssueCode::NotFound,
                    msg!("reference-unknown", reference),
                )
                .at(&path);
                return Err(if found.is_some_and(|stored| !stored.deleted) { refused.denied() } else { refused });
            }
        }
    }
    Ok(())
}

/// Every `reference` string below `value` with its location (`Observation.subject.reference`),
/// except inside the entries of a Bundle carried as a resource. `path` is extended for each child
/// and cut back after it; it is copied only for a reference.
fn collect_references<'a>(value: &'a Value, path: &mut String, out: &mut Vec<(String, &'a str)>) {
    let parent_len = path.len();
    match value {
        Value::Object(map) => {
            let nested_bundle = map.get("resourceType").and_then(Value::as_str) == Some("Bundle");
            for (key, child) in map {
                match child {
                    Value::String(reference) if key == "reference" => {
                        out.push((format!("{path}.reference"), reference.as_str()));
                    }
                    Value::Object(_) | Value::Array(_) if !(nested_bundle && key == "entry") => {
                        path.push('.');
                        path.push_str(key);
                        collect_references(child, path, out);
                        path.truncate(parent_len);
                    }
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate().filter(|(_, item)| item.is_object() || item.is_array()) {
                // Writing to a String cannot fail.
                let _ = write!(path, "[{index}]");
                collect_references(item, path, out);
                path.truncate(parent_len);
            }
        }
        _ => {}
    }
}

/// What a PATCH makes, read in `tx`: the current version of its target (visible to the caller, not
/// deleted, the version `if_match` names when given) and the patched resource, structurally checked.
pub(super) async fn patched(
    tx: &mut Tx,
    caller: &Caller,
    resource_type: &str,
    target: &Target,
    patch: &Value,
    if_match: Option<i64>,
) -> Result<(StoredResource, Value), ApiError> {
    caller.require(resource_type, Interaction::Update)?;
    let Some(id) = resolve_target(tx, caller, resource_type, target).await? else {
        return Err(ApiError::not_found(msg!("condition-no-match", resource_type)));
    };
    let current = match current_for(tx, caller, resource_type, &id).await? {
        Some(stored) if stored.deleted => {
            return Err(ApiError::gone(msg!("resource-deleted", reference = format!("{resource_type}/{id}"))));
        }
        Some(stored) => stored,
        None => {
            return Err(ApiError::not_found(msg!("resource-not-known", reference = format!("{resource_type}/{id}"))));
        }
    };
    if let Some(expected) = if_match.filter(|v| *v != current.version_id) {
        return Err(ApiError::precondition_failed(msg!("version-conflict", expected, current = current.version_id)));
    }
    let resource = apply_patch(resource_type, &current, patch)?;
    Ok((current, resource))
}

/// The resource `patch` (a JSON Patch document) makes of `current`, structurally checked; a patch
/// may not change the id.
pub fn apply_patch(resource_type: &str, current: &StoredResource, patch: &Value) -> Result<Value, ApiError> {
    let mut resource = crate::http::stored_json(current)?;
    let patch: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|err| ApiError::bad_request(msg!("patch-invalid", error = err)))?;
    json_patch::patch(&mut resource, &patch).map_err(|err| {
        ApiError::one(StatusCode::UNPROCESSABLE_ENTITY, IssueCode::Processing, msg!("patch-failed", error = err))
    })?;
    check_resource(resource_type, &resource)?;
    if resource.get("id").and_then(Value::as_str) != Some(current.id.as_str()) {
        return Err(ApiError::one(StatusCode::UNPROCESSABLE_ENTITY, IssueCode::Processing, msg!("patch-changes-id")));
    }
    Ok(resource)
}

/// A referral Task's status changes only along the workflow table, whatever the write path, and
/// its SLA clock pauses while it is on hold (`rex_referral::workflow::hold_clock`).
async fn task_status_change(tx: &mut Tx, id: &str, new: &mut Value) -> Result<(), ApiError> {
    let Some(current) = tx.read("Task", id).await?.filter(|t| !t.deleted) else { return Ok(()) };
    let current = crate::http::stored_json(&current)?;
    let routed =
        current["extension"].as_array().into_iter().flatten().any(|e| {
            e["url"].as_str().is_some_and(|url| url == rex_referral::task::extension_url("task-routing-rule"))
        });
    let (from, to) = (current["status"].as_str().unwrap_or_default(), new["status"].as_str().unwrap_or_default());
    if routed {
        rex_referral::workflow::check_status_change(from, to).map_err(|err| {
            ApiError::one(StatusCode::CONFLICT, IssueCode::BusinessRule, err.message()).at("Task.status")
        })?;
        rex_referral::workflow::hold_clock(&current, new, chrono::Utc::now());
    }
    Ok(())
}

/// Decodes the JSON Patch carried by a Binary resource (how PATCH travels inside a Bundle).
pub fn patch_from_binary(binary: &Value) -> Result<Value, ApiError> {
    let content_type = binary.get("contentType").and_then(Value::as_str).unwrap_or_default();
    if binary.get("resourceType").and_then(Value::as_str) != Some("Binary")
        || !content_type.starts_with("application/json-patch+json")
    {
        return Err(ApiError::unsupported_media(msg!("patch-entry-binary")));
    }
    let data = binary.get("data").and_then(Value::as_str).unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| ApiError::bad_request(msg!("patch-entry-base64")).at("Binary.data"))?;
    rex_fhir::json::parse(&bytes, rex_fhir::json::DEFAULT_MAX_DEPTH)
        .map_err(|_| ApiError::bad_request(msg!("patch-entry-not-patch")).at("Binary.data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conditional_search_matches_nothing_one_resource_or_too_many() {
        let ids = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>();
        let too_many = || {
            multiple_matches(msg!("if-none-exist-multiple-matches", query = "identifier=x", resource_type = "Patient"))
        };
        assert_eq!(single_match(ids(&[]), too_many).unwrap(), None);
        assert_eq!(single_match(ids(&["a"]), too_many).unwrap().as_deref(), Some("a"));
        let refused = single_match(ids(&["a", "b"]), too_many).unwrap_err();
        assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(refused.issues[0].code, IssueCode::MultipleMatches);
        assert_eq!(refused.issues[0].diagnostics, "If-None-Exist 'identifier=x' matches more than one Patient");
    }
}
