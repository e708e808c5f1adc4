//! Notifications to partners: rest-hook Subscriptions (R4, in the style of the Subscriptions R5
//! Backport IG) on their referral Tasks, fed by a durable outbox.
//!
//! Every write of a referral Task in a partner's compartment enqueues, in the same database
//! transaction, one notification per active Subscription of that partner, numbered per
//! Subscription (`events-since-subscription-start`). A delivery worker on every instance leases
//! due notifications, POSTs them, and marks them delivered, or schedules a retry with exponential
//! backoff, or after [`MAX_ATTEMPTS`] moves them to the dead letters. A notification whose lease
//! expires (its instance died mid-delivery) is delivered again with the same event number, so the
//! partner sees each event exactly once by its number: delivery is at least once, and a partner may
//! receive an event twice (when an instance died after the POST and before marking it delivered).
//! An instance that shuts down gracefully releases the notifications it leased and has not yet
//! posted, so another instance takes them at once instead of after the lease.
//!
//! Activation follows the Backport IG: a Subscription whose channel is new or changed is stored
//! `requested` and its handshake (a notification of type `handshake`, event number 0) goes through
//! the same outbox; once the endpoint accepts it the Subscription becomes `active`, and if it never
//! does (after [`MAX_HANDSHAKE_ATTEMPTS`]) it becomes `error` and its waiting notifications dead
//! letters. Events of a `requested` Subscription wait behind its handshake.
//!
//! What a notification carries is the Subscription's choice (`backport-payload-content` on
//! `channel.payload`): `full-resource` (the default when a payload type is given), `id-only` (the
//! Task's URL only: no health data leaves rex, the partner reads the Task with its token) or
//! `empty` (no `channel.payload`, as R4 defines it). `criteria` may narrow the Tasks with a search
//! (`Task?status=completed`), directly or through `backport-filter-criteria` on the topic.
//! `Subscription/{id}/$status` reports the Subscription's delivery state.
//!
//! A partner's `notification_endpoint` in the security configuration is kept as the Subscription
//! `partner-<id>` in its compartment, created or updated at start.

use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use rex_fhir::IssueCode;
use rex_fhir::query::{Handling, SearchQuery};
use rex_fhir::search::SearchRegistry;
use rex_i18n::{Message, Text, msg};
use rex_store::{Isolation, OutboxItem, StoredResource, Tx};
use serde_json::{Value, json};

use crate::access::{Caller, owner, set_owner};
use crate::error::ApiError;
use crate::http::{fhir_json, stored_json};
use crate::interactions::write::WriteOp;
use crate::outbound::{DeliveryTargets, RefusedAddress};
use crate::{AppState, alerts};

/// The topic rex notifies about: any change of a partner's referral Task.
pub const TASK_TOPIC: &str = "https://rex.example/fhir/SubscriptionTopic/referral-task";
/// Deliveries tried before a notification becomes a dead letter: with the backoff (10 s doubling to
/// an hour) that is a little over 24 hours of retries.
pub const MAX_ATTEMPTS: i64 = 32;
/// Handshakes tried before a Subscription is given up as `error` (about two and a half minutes):
/// a partner setting up its endpoint wants to hear soon that it does not work.
pub const MAX_HANDSHAKE_ATTEMPTS: i64 = 5;
/// What a notification carries (Subscriptions Backport IG), an extension of `channel.payload`.
pub const PAYLOAD_CONTENT_URL: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
/// A search narrowing a topic-style `criteria` (Subscriptions Backport IG), an extension of `criteria`.
pub const FILTER_CRITERIA_URL: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
const STATUS_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";
/// How long an instance holds a notification it is delivering before another may take it, unless
/// configured otherwise (`--delivery-lease`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Time allowed for one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Notifications leased per worker run.
const BATCH: usize = 50;

/// What a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadContent {
    /// The SubscriptionStatus only.
    Empty,
    /// The SubscriptionStatus and the URL of the Task.
    IdOnly,
    /// The SubscriptionStatus and the Task as it is after the change.
    FullResource,
}

impl PayloadContent {
    /// The content a Subscription asks for: none without `channel.payload` (R4), else the
    /// `backport-payload-content` extension, `full-resource` when it is absent.
    fn of(subscription: &Value) -> Result<PayloadContent, Message> {
        let channel = &subscription["channel"];
        if channel.get("payload").is_none() {
            return Ok(PayloadContent::Empty);
        }
        let code = extension_value(&channel["_payload"], PAYLOAD_CONTENT_URL, "valueCode");
        match code.unwrap_or("full-resource") {
            "full-resource" => Ok(PayloadContent::FullResource),
            "id-only" => Ok(PayloadContent::IdOnly),
            "empty" => Ok(PayloadContent::Empty),
            other => Err(msg!("subscription-payload-content", content = other)),
        }
    }
}

/// The value (`value_key`, e.g. `valueCode`) of the extension `url` on an element's extensions.
fn extension_value<'a>(element: &'a Value, url: &str, value_key: &str) -> Option<&'a str> {
    element["extension"].as_array()?.iter().find(|e| e["url"] == url)?[value_key].as_str()
}

/// The search a Subscription narrows its Tasks with (`status=completed`), if any: the query of
/// `criteria` (`Task?status=completed`), or the `backport-filter-criteria` of a topic-style one.
fn criteria_filter(subscription: &Value) -> Result<Option<String>, Message> {
    let criteria = subscription["criteria"].as_str().unwrap_or_default();
    let filter = if criteria == TASK_TOPIC {
        extension_value(&subscription["_criteria"], FILTER_CRITERIA_URL, "valueString").unwrap_or("Task")
    } else {
        criteria
    };
    match filter.split_once('?') {
        _ if filter == "Task" => Ok(None),
        Some(("Task", query)) if !query.is_empty() => Ok(Some(query.to_string())),
        _ => Err(msg!("subscription-criteria-tasks", topic = TASK_TOPIC)),
    }
}

/// The search that matches the Task `id` when it meets the Subscription's filter.
fn filter_query(filter: &str, task_id: &str) -> Result<SearchQuery, Vec<rex_fhir::Issue>> {
    let mut pairs = crate::interactions::query_pairs(Some(filter));
    pairs.push(("_id".to_string(), task_id.to_string()));
    SearchQuery::parse(SearchRegistry::r4(), "Task", &pairs, Handling::Strict)
}

/// Headers a Subscription's `channel.header` may not set: rex frames the request itself (`Host`,
/// the body's length and type), and hop-by-hop headers concern the connection, not the partner.
const RESERVED_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Whether a `channel.header` entry (`Name: value`) may be sent: a valid header that rex does not
/// set itself.
fn allowed_header(header: &str) -> bool {
    let Some((name, value)) = header.split_once(':') else { return false };
    let name = name.trim();
    reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
        && reqwest::header::HeaderValue::from_str(value.trim()).is_ok()
        && !RESERVED_HEADERS.iter().any(|reserved| reserved.eq_ignore_ascii_case(name))
}

/// Checks the endpoint of a Subscription a caller writes, before the write's transaction (it
/// resolves the host): see [`crate::outbound`]; `http` only for a sandbox partner.
pub async fn check_endpoint(state: &AppState, caller: &Caller, op: &WriteOp) -> Result<(), ApiError> {
    let (WriteOp::Create { resource_type, resource, .. } | WriteOp::Update { resource_type, resource, .. }) = op else {
        return Ok(());
    };
    if resource_type != "Subscription" {
        return Ok(());
    }
    let endpoint = resource["channel"]["endpoint"].as_str().unwrap_or_default();
    let sandbox = caller.partner().is_some_and(|partner| crate::interactions::intake::is_sandbox(state, partner));
    state.config.delivery_targets.check_endpoint(endpoint, sandbox).await.map_err(|reason| {
        ApiError::one(StatusCode::UNPROCESSABLE_ENTITY, IssueCode::BusinessRule, msg!("endpoint-refused", reason))
            .at("Subscription.channel.endpoint")
    })
}

/// Checks a Subscription a caller writes and sets its status: rest-hook on `Task` criteria, a
/// JSON payload type, headers rex may send (its endpoint is checked before, by [`check_endpoint`],
/// which needs the network). A Subscription the caller turns
/// `off` stays off; one whose channel is unchanged keeps the status of `previous` (its current
/// version) when that is `active`; any other is `requested` and its handshake is queued
/// ([`enqueue_handshake_if_requested`]).
pub fn accept_subscription(subscription: &mut Value, previous: Option<&StoredResource>) -> Result<(), ApiError> {
    fn invalid(message: impl Into<Text>, at: &str) -> ApiError {
        ApiError::one(StatusCode::UNPROCESSABLE_ENTITY, IssueCode::BusinessRule, message).at(at)
    }
    if subscription["channel"]["type"] != "rest-hook" {
        return Err(invalid(msg!("subscription-rest-hook-only"), "Subscription.channel.type"));
    }
    let filter = criteria_filter(subscription).map_err(|message| invalid(message, "Subscription.criteria"))?;
    if let Some(filter) = filter {
        filter_query(&filter, "x").map_err(|issues| {
            let reasons: Vec<String> = issues.iter().map(|issue| issue.diagnostics.clone()).collect();
            invalid(msg!("subscription-criteria-invalid", reasons = reasons.join("; ")), "Subscription.criteria")
        })?;
    }
    for (index, header) in subscription["channel"]["header"].as_array().into_iter().flatten().enumerate() {
        if !header.as_str().is_some_and(allowed_header) {
            return Err(invalid(msg!("subscription-header-refused"), &format!("Subscription.channel.header[{index}]")));
        }
    }
    if let Some(payload) = subscription["channel"].get("payload") {
        let mime = payload.as_str().unwrap_or_default();
        if !(mime.starts_with("application/fhir+json") || mime.starts_with("application/json")) {
            return Err(invalid(msg!("subscription-json-only"), "Subscription.channel.payload"));
        }
    }
    PayloadContent::of(subscription).map_err(|message| invalid(message, "Subscription.channel.payload"))?;
    let previous = previous.filter(|stored| !stored.deleted).map(stored_json).transpose()?;
    let status = match previous {
        _ if subscription["status"] == "off" => "off",
        Some(previous) if previous["channel"] == subscription["channel"] && previous["status"] == "active" => "active",
        _ => "requested",
    };
    subscription["status"] = json!(status);
    if let Some(fields) = subscription.as_object_mut() {
        fields.remove("error");
    }
    Ok(())
}

/// Keeps each configured partner `notification_endpoint` as the Subscription `partner-<id>`; an
/// endpoint rex may not deliver to ([`crate::outbound`]) is a configuration error.
pub async fn configured_subscriptions(state: &AppState) -> Result<Vec<Value>, String> {
    let Some(security) = &state.security else { return Ok(Vec::new()) };
    for partner in security.partners().iter() {
        if let Some(endpoint) = partner.notification_endpoint.as_deref() {
            state.config.delivery_targets.check_endpoint(endpoint, partner.sandbox).await.map_err(|reason| {
                format!("the notification_endpoint of partner '{}' is refused: {reason}", partner.id)
            })?;
        }
    }
    Ok(security
        .partners()
        .iter()
        .filter_map(|partner| {
            let endpoint = partner.notification_endpoint.as_deref()?;
            let mut subscription = json!({
                "resourceType": "Subscription",
                "id": format!("partner-{}", partner.id),
                "status": "requested",
                "reason": msg!("subscription-configured-reason").render(partner.language.unwrap_or_default()),
                "criteria": "Task",
                "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
                            "_payload": {"extension": [{"url": PAYLOAD_CONTENT_URL,
                                                        "valueCode": partner.notification_payload.as_str()}]}},
            });
            set_owner(&mut subscription, &partner.id);
            if partner.sandbox {
                let (system, code) = rex_referral::task::TEST_DATA_TAG;
                subscription["meta"]["tag"].as_array_mut()?.push(json!({"system": system, "code": code}));
            }
            Some(subscription)
        })
        .collect())
}

/// After a write that left a Subscription `requested`: its handshake, due at once. It replaces
/// the handshake of an earlier activation and follows the notifications already queued.
pub async fn enqueue_handshake_if_requested(
    tx: &mut Tx,
    subscription: &StoredResource,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let content = stored_json(subscription)?;
    if content["status"] != "requested" {
        return Ok(());
    }
    let key = format!("Subscription/{}", subscription.id);
    let status = subscription_status(&key, "requested", "handshake", 0, None);
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "entry": [status_entry(&key, status)]
    });
    let (endpoint, headers) = channel_address(&content);
    tx.enqueue_handshake(&key, endpoint, &headers, &bundle.to_string(), micros(now)).await?;
    Ok(())
}

/// Where a Subscription's notifications go: its endpoint and its headers (a JSON list).
fn channel_address(subscription: &Value) -> (&str, String) {
    let endpoint = subscription["channel"]["endpoint"].as_str().unwrap_or_default();
    let headers = json!(subscription["channel"]["header"].as_array().cloned().unwrap_or_default());
    (endpoint, headers.to_string())
}

/// After a write of a Task or a consult Appointment: one notification per active (or `requested`,
/// waiting for its handshake) Subscription of its partner; a Task only to those whose criteria it
/// meets (criteria search Tasks, so every Subscription hears of its partner's consults).
pub async fn enqueue_change(tx: &mut Tx, task: &StoredResource, now: DateTime<Utc>) -> Result<(), ApiError> {
    let content = stored_json(task)?;
    let Some(partner) = owner(&content) else { return Ok(()) };
    let pairs = vec![
        ("_tag".to_string(), format!("{}|{partner}", crate::access::PARTNER_TAG_SYSTEM)),
        ("status".to_string(), "active,requested".to_string()),
        ("_count".to_string(), "100".to_string()),
        // Only the matches are needed; counting them is a second query on every Task write.
        ("_total".to_string(), "none".to_string()),
    ];
    let query = SearchQuery::parse(SearchRegistry::r4(), "Subscription", &pairs, Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, issues))?;
    for subscription in tx.search(&query).await?.matches {
        let subscription_json = stored_json(&subscription)?;
        if task.resource_type == "Task" && !meets_criteria(tx, &subscription_json, &task.id).await? {
            continue;
        }
        let content_kind = PayloadContent::of(&subscription_json).unwrap_or(PayloadContent::FullResource);
        let key = format!("Subscription/{}", subscription.id);
        let event_number = tx.next_event_number(&key).await?;
        let bundle = notification(&key, event_number, &content, content_kind, now);
        let (endpoint, headers) = channel_address(&subscription_json);
        tx.enqueue_notification(&key, endpoint, &headers, event_number, &bundle.to_string(), micros(now)).await?;
    }
    Ok(())
}

/// Whether the Task `task_id`, as written in `tx`, meets the Subscription's criteria.
async fn meets_criteria(tx: &mut Tx, subscription: &Value, task_id: &str) -> Result<bool, ApiError> {
    let Ok(Some(filter)) = criteria_filter(subscription) else { return Ok(true) };
    // Criteria were checked when the Subscription was written; one that no longer parses (rex
    // changed its search parameters since) matches nothing rather than everything.
    let Ok(query) = filter_query(&filter, task_id) else { return Ok(false) };
    Ok(!tx.search(&query).await?.matches.is_empty())
}

/// A SubscriptionStatus (a Parameters resource in R4) of the given `kind` (`handshake`,
/// `event-notification`, `query-status`), with the event `event` (number, timestamp, focus) if any.
fn subscription_status(
    subscription: &str,
    status: &str,
    kind: &str,
    events_since_start: i64,
    event: Option<Value>,
) -> Value {
    let mut parameters = vec![
        json!({"name": "subscription", "valueReference": {"reference": subscription}}),
        json!({"name": "topic", "valueCanonical": TASK_TOPIC}),
        json!({"name": "status", "valueCode": status}),
        json!({"name": "type", "valueCode": kind}),
        json!({"name": "events-since-subscription-start", "valueString": events_since_start.to_string()}),
    ];
    parameters.extend(event);
    json!({"resourceType": "Parameters", "meta": {"profile": [STATUS_PROFILE]}, "parameter": parameters})
}

fn status_entry(subscription: &str, status: Value) -> Value {
    json!({"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": status,
           "request": {"method": "GET", "url": format!("{subscription}/$status")}, "response": {"status": "200"}})
}

/// The notification Bundle: a `history` Bundle whose first entry is the SubscriptionStatus, then
/// the Task (or Appointment) as the payload content asks (nothing, its URL, or the resource after
/// the change).
fn notification(
    subscription: &str,
    event_number: i64,
    task: &Value,
    content: PayloadContent,
    now: DateTime<Utc>,
) -> Value {
    let task_ref =
        format!("{}/{}", task["resourceType"].as_str().unwrap_or("Task"), task["id"].as_str().unwrap_or_default());
    let mut event = vec![
        json!({"name": "event-number", "valueString": event_number.to_string()}),
        json!({"name": "timestamp", "valueInstant": now.to_rfc3339_opts(SecondsFormat::Millis, true)}),
    ];
    if content != PayloadContent::Empty {
        event.push(json!({"name": "focus", "valueReference": {"reference": task_ref}}));
    }
    let event = json!({"name": "notification-event", "part": event});
    let status = subscription_status(subscription, "active", "event-notification", event_number, Some(event));
    let mut entries = vec![status_entry(subscription, status)];
    match content {
        PayloadContent::Empty => {}
        PayloadContent::IdOnly => entries.push(json!({"fullUrl": task_ref,
            "request": {"method": "PUT", "url": task_ref}, "response": {"status": "200"}})),
        PayloadContent::FullResource => entries.push(json!({"fullUrl": task_ref, "resource": task,
            "request": {"method": "PUT", "url": task_ref}, "response": {"status": "200"}})),
    }
    json!({
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "entry": entries
    })
}

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// What one delivery run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
    /// Leased but given back unposted because the instance is shutting down.
    pub released: usize,
}

/// Delivers the notifications due at `now` (the clock is a parameter so tests drive it), with the
/// default lease and no shutdown to watch for.
pub async fn deliver_due(
    state: &AppState,
    client: &reqwest::Client,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, ApiError> {
    let (_never_sent, running) = tokio::sync::watch::channel(false);
    deliver(state, client, now, DEFAULT_LEASE, &running).await
}

/// Leases the notifications due at `now` for `lease` and posts them one by one. Stops early when
/// `stopping` turns true (the instance shuts down: the notifications not yet posted are released
/// for another instance) or when the lease has run out (another instance may have taken the rest).
async fn deliver(
    state: &AppState,
    client: &reqwest::Client,
    now: DateTime<Utc>,
    lease: Duration,
    stopping: &tokio::sync::watch::Receiver<bool>,
) -> Result<DeliveryReport, ApiError> {
    let started = std::time::Instant::now();
    let items = state.store.lease_notifications(micros(now), lease.as_micros() as i64, BATCH).await?;
    let mut report = DeliveryReport::default();
    // Subscriptions whose notification failed in this run: their later ones wait, in order.
    let mut held_back = std::collections::HashSet::new();
    for item in items {
        if started.elapsed() >= lease {
            break;
        }
        if held_back.contains(&item.subscription) {
            state.store.notification_untried(item.id).await?;
            continue;
        }
        if *stopping.borrow() {
            // Released as due now, so the next run of any instance takes it; the attempt counted
            // at the lease stays counted (it is recorded as this error).
            let when = micros(now);
            state.store.notification_failed(item.id, Some(when), "released at shutdown before delivery").await?;
            report.released += 1;
            continue;
        }
        let targets = &state.config.delivery_targets;
        let alert = item.subscription.starts_with(alerts::KEY_PREFIX);
        let base_url = &state.config.base_url;
        let outcome = match (alert, item.endpoint.strip_prefix("mailto:")) {
            (true, Some(address)) => alerts::mail(&item, address, base_url, state.config.mailer.as_ref()).await,
            (true, None) => {
                let body = alerts::with_links(&item, base_url).to_string();
                post(client, targets, &item, "application/json", body).await
            }
            (false, _) => {
                post(client, targets, &item, "application/fhir+json", with_absolute_full_urls(&item.payload, base_url))
                    .await
            }
        };
        let when = micros(now);
        let handshake = item.event_number == 0;
        let max_attempts = if handshake { MAX_HANDSHAKE_ATTEMPTS } else { MAX_ATTEMPTS };
        match &outcome {
            Ok(()) => {
                state.store.notification_delivered(item.id, when).await?;
                if handshake {
                    handshake_done(state, &item, None).await?;
                }
                report.delivered += 1;
            }
            Err(reason) if item.attempts >= max_attempts => {
                state.store.notification_failed(item.id, None, reason).await?;
                if handshake {
                    handshake_done(state, &item, Some(reason)).await?;
                }
                report.dead += 1;
            }
            Err(reason) => {
                state.store.notification_failed(item.id, Some(when + backoff(item.attempts)), reason).await?;
                held_back.insert(item.subscription.clone());
                report.retried += 1;
            }
        }
        let failure = outcome.as_ref().err().map(String::as_str);
        match alert {
            true => state.audit.escalation_alert(&item, &alerts::referral(&item), failure).await,
            false => state.audit.notification(&item, failure).await,
        }
    }
    Ok(report)
}

/// Ends a Subscription's activation: `active` when its endpoint accepted the handshake, else
/// `error` with the reason, and its waiting notifications become dead letters. Nothing changes when
/// the Subscription has moved on since the handshake was queued (another endpoint, turned off).
async fn handshake_done(state: &AppState, item: &OutboxItem, failure: Option<&str>) -> Result<(), ApiError> {
    let Some(id) = item.subscription.strip_prefix("Subscription/") else { return Ok(()) };
    let context = (state, id, item.endpoint.as_str(), failure);
    let changed = crate::interactions::in_transaction(&state.store, Isolation::RowLocking, &context, |tx, context| {
        let (state, id, endpoint, failure) = *context;
        Box::pin(async move {
            let Some(stored) = tx.read("Subscription", id).await?.filter(|s| !s.deleted) else { return Ok(false) };
            let mut subscription = stored_json(&stored)?;
            if subscription["status"] != "requested" || subscription["channel"]["endpoint"] != endpoint {
                return Ok(false);
            }
            match failure {
                None => subscription["status"] = json!("active"),
                Some(reason) => {
                    subscription["status"] = json!("error");
                    let lang = crate::language::of_partner(state, owner(&subscription));
                    subscription["error"] = json!(msg!("subscription-handshake-failed", reason).render(lang));
                }
            }
            tx.update("Subscription", id, subscription, Some(stored.version_id)).await?;
            Ok(true)
        })
    })
    .await?;
    if changed && let Some(reason) = failure {
        let reason = format!("the subscription's handshake failed: {reason}");
        state.store.dead_letter_pending(&item.subscription, &reason).await?;
    }
    Ok(())
}

/// `GET` (or `POST`) `/fhir/Subscription/{id}/$status`: a SubscriptionStatus of type
/// `query-status`, with the delivery state in a `delivery` parameter (waiting, delivered and dead
/// notifications, the last event delivered, the next attempt) and the last unresolved error.
pub async fn status_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let reference = format!("Subscription/{id}");
    let stored = match state.store.read("Subscription", &id).await? {
        Some(stored) if !caller.sees(&stored) => return Err(ApiError::hidden(&reference)),
        Some(stored) if !stored.deleted => stored,
        _ => return Err(ApiError::not_found(msg!("resource-not-known", reference))),
    };
    state.audit.read(&caller, "operation", vec![reference.clone()]).await;
    let subscription = stored_json(&stored)?;
    let delivery = state.store.subscription_delivery(&reference).await?;
    let status = subscription["status"].as_str().unwrap_or_default();
    let mut result = subscription_status(&reference, status, "query-status", delivery.last_event, None);
    let mut parts = vec![
        json!({"name": "pending", "valueInteger": delivery.pending}),
        json!({"name": "delivered", "valueInteger": delivery.delivered}),
        json!({"name": "dead", "valueInteger": delivery.dead}),
    ];
    if let Some(event) = delivery.last_delivered_event {
        parts.push(json!({"name": "last-delivered-event", "valueString": event.to_string()}));
    }
    if let Some(at) = delivery.next_attempt.and_then(DateTime::from_timestamp_micros) {
        parts.push(json!({"name": "next-attempt", "valueInstant": at.to_rfc3339_opts(SecondsFormat::Millis, true)}));
    }
    let parameters = result["parameter"].as_array_mut().ok_or_else(ApiError::internal)?;
    if let Some(error) = delivery.last_error.as_deref().or(subscription["error"].as_str()) {
        parameters.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
    }
    parameters.push(json!({"name": "delivery", "part": parts}));
    Ok(fhir_json(StatusCode::OK, &result))
}

/// The wait before the next attempt after `attempts` failed ones: 10 s, 20 s, 40 s... at most an hour.
fn backoff(attempts: i64) -> i64 {
    let seconds = 10i64.saturating_mul(1 << (attempts - 1).clamp(0, 20)).min(3600);
    seconds * 1_000_000
}

/// The notification Bundle with its entries' `fullUrl`s absolute, as R4 requires of a resource's
/// URL: `Task/1` becomes `{base}/Task/1`. The outbox row holds the Bundle with server-relative
/// URLs (it is queued deep inside a write, where the public base URL is unknown); the base URL is
/// the delivering instance's setting, applied when the Bundle is posted. `urn:uuid:` stays.
fn with_absolute_full_urls(payload: &str, base: &str) -> String {
    let Ok(mut bundle) = serde_json::from_str::<Value>(payload) else { return payload.to_string() };
    for entry in bundle["entry"].as_array_mut().into_iter().flatten() {
        if let Some(url) = entry["fullUrl"].as_str().filter(|url| !url.contains(':')) {
            entry["fullUrl"] = json!(format!("{}/{url}", base.trim_end_matches('/')));
        }
    }
    bundle.to_string()
}

/// POSTs one notification (or escalation alert, `alerts`). The endpoint was checked when its
/// Subscription was written (an alert's at start); it is checked again here (an IP address) or by
/// the delivery client's resolver (a name), since what a name resolves to may change, and headers
/// rex reserves are not sent whatever is stored.
async fn post(
    client: &reqwest::Client,
    targets: &DeliveryTargets,
    item: &OutboxItem,
    content_type: &str,
    body: String,
) -> Result<(), String> {
    targets.check_literal(&item.endpoint)?;
    let mut request =
        client.post(&item.endpoint).timeout(DELIVERY_TIMEOUT).header("content-type", content_type).body(body);
    let headers: Vec<String> = serde_json::from_str(&item.headers).unwrap_or_default();
    for header in headers.iter().filter(|header| allowed_header(header)) {
        if let Some((name, value)) = header.split_once(':') {
            request = request.header(name.trim(), value.trim());
        }
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("the endpoint answered {}", response.status().as_u16())),
        Err(err) if err.is_timeout() => Err("the endpoint did not answer in time".into()),
        Err(err) => Err(refusal(&err).unwrap_or_else(|| "the endpoint could not be reached".into())),
    }
}

/// The reason the delivery client's resolver refused the endpoint's addresses, if it did.
fn refusal(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<RefusedAddress>() {
            return Some(refused.to_string());
        }
        source = err.source();
    }
    None
}

/// Where rex's TLS identity toward partner endpoints comes from (`--delivery-client-cert`...).
#[derive(Debug, Clone, Default)]
pub struct DeliveryTls {
    /// rex's client certificate (PEM, the chain after it) and its private key (PEM), for partners
    /// whose endpoints ask for mutual TLS.
    pub client_identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Certificate authorities (PEM) trusted besides the system's, for partners with a private CA.
    pub extra_roots: Option<std::path::PathBuf>,
}

/// The HTTP client that delivers notifications (TLS through OpenSSL). It resolves names through
/// `targets` (only permitted addresses are connected to) and follows no redirect, which could
/// lead anywhere.
pub fn delivery_client(tls: &DeliveryTls, targets: &DeliveryTargets) -> Result<reqwest::Client, String> {
    let read =
        |path: &std::path::Path| std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()));
    let mut builder = reqwest::Client::builder()
        .use_native_tls()
        .dns_resolver(targets.resolver())
        .redirect(reqwest::redirect::Policy::none());
    if let Some((cert, key)) = &tls.client_identity {
        // OpenSSL reads any PEM key (PKCS#1, SEC1, PKCS#8); reqwest wants PKCS#8.
        let key = openssl::pkey::PKey::private_key_from_pem(&read(key)?)
            .and_then(|key| key.private_key_to_pem_pkcs8())
            .map_err(|err| format!("the delivery client key is not a PEM private key: {err}"))?;
        let identity = reqwest::Identity::from_pkcs8_pem(&read(cert)?, &key)
            .map_err(|err| format!("the delivery client certificate does not go with its key: {err}"))?;
        builder = builder.identity(identity);
    }
    if let Some(roots) = &tls.extra_roots {
        for root in reqwest::Certificate::from_pem_bundle(&read(roots)?)
            .map_err(|err| format!("{} is not a PEM certificate bundle: {err}", roots.display()))?
        {
            builder = builder.add_root_certificate(root);
        }
    }
    builder.build().map_err(|err| format!("cannot build the delivery client: {err}"))
}

/// Runs the delivery every `interval`, leasing for `lease`, until `stopping` turns true; the
/// handle ends once the run in progress has finished its current POST and released the rest.
pub fn spawn_worker(
    state: AppState,
    client: reqwest::Client,
    interval: Duration,
    lease: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            match deliver(&state, &client, Utc::now(), lease, &stopping).await {
                Ok(report) if report.released > 0 => {
                    tracing::info!(released = report.released, "notification leases released at shutdown");
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(issue = ?err.issues.first().map(|i| &i.diagnostics), "notification delivery failed")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_must_be_rest_hooks_on_tasks_with_allowed_headers() {
        let mut good = json!({"resourceType": "Subscription", "status": "active", "criteria": "Task",
                              "channel": {"type": "rest-hook", "endpoint": "https://partner.example/notify"}});
        accept_subscription(&mut good, None).unwrap();
        assert_eq!(good["status"], "requested", "active only after the handshake");
        let mut email = good.clone();
        email["channel"]["type"] = json!("email");
        assert!(accept_subscription(&mut email, None).is_err());
        let mut headers = good.clone();
        headers["channel"]["header"] = json!(["Authorization: Bearer abc", "X-Partner: 1"]);
        assert!(accept_subscription(&mut headers, None).is_ok());
        for refused in [
            "Host: internal",
            "content-length: 0",
            "Transfer-Encoding: chunked",
            "Connection: close",
            "Upgrade: h2c",
            "no colon",
            "X-Bad: a\r\nHost: x",
        ] {
            let mut reserved = good.clone();
            reserved["channel"]["header"] = json!(["X-Partner: 1", refused]);
            let err = accept_subscription(&mut reserved, None).unwrap_err();
            assert_eq!(err.issues[0].expression.as_deref(), Some("Subscription.channel.header[1]"), "{refused}");
        }
        let mut patients = good.clone();
        patients["criteria"] = json!("Patient");
        assert!(accept_subscription(&mut patients, None).is_err());
        let mut xml = good.clone();
        xml["channel"]["payload"] = json!("application/fhir+xml");
        assert!(accept_subscription(&mut xml, None).is_err());
        let mut off = good.clone();
        off["status"] = json!("off");
        accept_subscription(&mut off, None).unwrap();
        assert_eq!(off["status"], "off");
    }

    #[test]
    fn payload_content_follows_r4_and_the_backport_extension() {
        let with = |payload: Value| json!({"channel": payload});
        assert_eq!(PayloadContent::of(&with(json!({}))), Ok(PayloadContent::Empty), "no payload in R4: empty");
        let json_payload = with(json!({"payload": "application/fhir+json"}));
        assert_eq!(PayloadContent::of(&json_payload), Ok(PayloadContent::FullResource));
        let extension = |code: &str| {
            with(json!({"payload": "application/fhir+json",
                        "_payload": {"extension": [{"url": PAYLOAD_CONTENT_URL, "valueCode": code}]}}))
        };
        assert_eq!(PayloadContent::of(&extension("id-only")), Ok(PayloadContent::IdOnly));
        assert_eq!(PayloadContent::of(&extension("empty")), Ok(PayloadContent::Empty));
        assert!(PayloadContent::of(&extension("everything")).is_err());
    }

    #[test]
    fn criteria_are_task_searches_directly_or_through_the_topic() {
        let filter = |subscription: Value| criteria_filter(&subscription);
        assert_eq!(filter(json!({"criteria": "Task"})), Ok(None));
        assert_eq!(filter(json!({"criteria": "Task?status=completed"})), Ok(Some("status=completed".into())));
        assert_eq!(filter(json!({"criteria": TASK_TOPIC})), Ok(None));
        let topic = json!({"criteria": TASK_TOPIC, "_criteria": {"extension": [
            {"url": FILTER_CRITERIA_URL, "valueString": "Task?owner=HealthcareService/cardiology"}]}});
        assert_eq!(filter(topic), Ok(Some("owner=HealthcareService/cardiology".into())));
        assert!(filter(json!({"criteria": "Task?"})).is_err());
        assert!(filter(json!({"criteria": "Patient?name=x"})).is_err());
        assert!(filter_query("status=completed", "t1").is_ok());
        assert!(filter_query("no-such-parameter=1", "t1").is_err());
    }

    #[test]
    fn delivered_full_urls_are_absolute() {
        let task = json!({"resourceType": "Task", "id": "t1"});
        let bundle = notification("Subscription/s", 3, &task, PayloadContent::FullResource, Utc::now());
        let sent: Value =
            serde_json::from_str(&with_absolute_full_urls(&bundle.to_string(), "https://rex.example/fhir/")).unwrap();
        assert!(sent["entry"][0]["fullUrl"].as_str().unwrap().starts_with("urn:uuid:"));
        assert_eq!(sent["entry"][1]["fullUrl"], "https://rex.example/fhir/Task/t1");
        assert_eq!(sent["entry"][1]["request"]["url"], "Task/t1");
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), 10_000_000);
        assert_eq!(backoff(2), 20_000_000);
        assert_eq!(backoff(12), 3_600_000_000);
    }
}
