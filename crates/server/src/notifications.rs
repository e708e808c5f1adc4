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
//! A partner's `notification_endpoint` in the security configuration is kept as the Subscription
//! `partner-<id>` in its compartment, created or updated at start.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use rex_fhir::IssueCode;
use rex_fhir::query::{Handling, SearchQuery};
use rex_fhir::search::SearchRegistry;
use rex_store::{OutboxItem, StoredResource, Tx};
use serde_json::{Value, json};

use crate::AppState;
use crate::access::{owner, set_owner};
use crate::error::ApiError;
use crate::http::stored_json;

/// The topic rex notifies about: any change of a partner's referral Task.
pub const TASK_TOPIC: &str = "https://rex.example/fhir/SubscriptionTopic/referral-task";
/// Deliveries tried before a notification becomes a dead letter: with the backoff (10 s doubling to
/// an hour) that is a little over 24 hours of retries.
pub const MAX_ATTEMPTS: i64 = 32;
/// How long an instance holds a notification it is delivering before another may take it, unless
/// configured otherwise (`--delivery-lease`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Time allowed for one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Notifications leased per worker run.
const BATCH: usize = 50;

/// Checks a Subscription a caller writes and makes it active: rest-hook on `Task` criteria, an
/// `https` endpoint (`http` only to loopback, for tests and local development, or for test data:
/// a sandbox partner's configured endpoint).
pub fn accept_subscription(subscription: &mut Value) -> Result<(), ApiError> {
    let invalid = |message: &str, at: &str| {
        ApiError::one(StatusCode::UNPROCESSABLE_ENTITY, IssueCode::BusinessRule, message).at(at)
    };
    if subscription["channel"]["type"] != "rest-hook" {
        return Err(invalid("rex delivers notifications by rest-hook only", "Subscription.channel.type"));
    }
    let criteria = subscription["criteria"].as_str().unwrap_or_default();
    if criteria != "Task" && !criteria.starts_with("Task?") {
        return Err(invalid("rex notifies about referral Tasks: criteria must be 'Task'", "Subscription.criteria"));
    }
    let endpoint = subscription["channel"]["endpoint"].as_str().unwrap_or_default();
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"].iter().any(|p| endpoint.starts_with(p));
    let (test_system, test_code) = rex_referral::task::TEST_DATA_TAG;
    let test_data = subscription["meta"]["tag"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["system"] == test_system && t["code"] == test_code));
    let plain_allowed = loopback || (test_data && endpoint.starts_with("http://"));
    if !(endpoint.starts_with("https://") || plain_allowed) {
        return Err(invalid("channel.endpoint must be an https:// URL", "Subscription.channel.endpoint"));
    }
    subscription["status"] = json!("active");
    Ok(())
}

/// Keeps each configured partner `notification_endpoint` as the Subscription `partner-<id>`.
pub fn configured_subscriptions(state: &AppState) -> Vec<Value> {
    let Some(security) = &state.security else { return Vec::new() };
    security
        .partners()
        .iter()
        .filter_map(|partner| {
            let endpoint = partner.notification_endpoint.as_deref()?;
            let mut subscription = json!({
                "resourceType": "Subscription",
                "id": format!("partner-{}", partner.id),
                "status": "active",
                "reason": "Referral Task changes, from the partner's notification_endpoint",
                "criteria": "Task",
                "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
            });
            set_owner(&mut subscription, &partner.id);
            if partner.sandbox {
                let (system, code) = rex_referral::task::TEST_DATA_TAG;
                subscription["meta"]["tag"].as_array_mut()?.push(json!({"system": system, "code": code}));
            }
            Some(subscription)
        })
        .collect()
}

/// After a write of `task`: one notification per active Subscription of its partner.
pub async fn enqueue_task_change(tx: &mut Tx, task: &StoredResource, now: DateTime<Utc>) -> Result<(), ApiError> {
    let content = stored_json(task)?;
    let Some(partner) = owner(&content) else { return Ok(()) };
    let pairs = vec![
        ("_tag".to_string(), format!("{}|{partner}", crate::access::PARTNER_TAG_SYSTEM)),
        ("status".to_string(), "active".to_string()),
        ("_count".to_string(), "100".to_string()),
    ];
    let query = SearchQuery::parse(SearchRegistry::r4(), "Subscription", &pairs, Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, issues))?;
    for subscription in tx.search(&query).await?.matches {
        let subscription_json = stored_json(&subscription)?;
        let key = format!("Subscription/{}", subscription.id);
        let event_number = tx.next_event_number(&key).await?;
        let bundle = notification(&key, event_number, &content, now);
        let endpoint = subscription_json["channel"]["endpoint"].as_str().unwrap_or_default();
        let headers = json!(subscription_json["channel"]["header"].as_array().cloned().unwrap_or_default());
        tx.enqueue_notification(&key, endpoint, &headers.to_string(), event_number, &bundle.to_string(), micros(now))
            .await?;
    }
    Ok(())
}

/// The notification Bundle: a `history` Bundle whose first entry is the SubscriptionStatus
/// (a Parameters resource in R4), then the Task as it is after the change.
fn notification(subscription: &str, event_number: i64, task: &Value, now: DateTime<Utc>) -> Value {
    let task_ref = format!("Task/{}", task["id"].as_str().unwrap_or_default());
    let status = json!({
        "resourceType": "Parameters",
        "meta": {"profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"]},
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": subscription}},
            {"name": "topic", "valueCanonical": TASK_TOPIC},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": event_number.to_string()},
            {"name": "notification-event", "part": [
                {"name": "event-number", "valueString": event_number.to_string()},
                {"name": "timestamp", "valueInstant": now.to_rfc3339_opts(SecondsFormat::Millis, true)},
                {"name": "focus", "valueReference": {"reference": task_ref}}]}
        ]
    });
    json!({
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "entry": [
            {"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": status,
             "request": {"method": "GET", "url": format!("{subscription}/$status")}, "response": {"status": "200"}},
            {"fullUrl": task_ref, "resource": task, "request": {"method": "PUT", "url": task_ref},
             "response": {"status": "200"}}
        ]
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
        let outcome = post(client, &item).await;
        let when = micros(now);
        match &outcome {
            Ok(()) => {
                state.store.notification_delivered(item.id, when).await?;
                report.delivered += 1;
            }
            Err(reason) if item.attempts >= MAX_ATTEMPTS => {
                state.store.notification_failed(item.id, None, reason).await?;
                report.dead += 1;
            }
            Err(reason) => {
                state.store.notification_failed(item.id, Some(when + backoff(item.attempts)), reason).await?;
                held_back.insert(item.subscription.clone());
                report.retried += 1;
            }
        }
        state.audit.notification(&item, outcome.as_ref().err().map(String::as_str)).await;
    }
    Ok(report)
}

/// The wait before the next attempt after `attempts` failed ones: 10 s, 20 s, 40 s... at most an hour.
fn backoff(attempts: i64) -> i64 {
    let seconds = 10i64.saturating_mul(1 << (attempts - 1).clamp(0, 20)).min(3600);
    seconds * 1_000_000
}

async fn post(client: &reqwest::Client, item: &OutboxItem) -> Result<(), String> {
    let mut request = client
        .post(&item.endpoint)
        .timeout(DELIVERY_TIMEOUT)
        .header("content-type", "application/fhir+json")
        .body(item.payload.clone());
    let headers: Vec<String> = serde_json::from_str(&item.headers).unwrap_or_default();
    for header in headers {
        if let Some((name, value)) = header.split_once(':') {
            request = request.header(name.trim(), value.trim());
        }
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("the endpoint answered {}", response.status().as_u16())),
        Err(err) if err.is_timeout() => Err("the endpoint did not answer in time".into()),
        Err(_) => Err("the endpoint could not be reached".into()),
    }
}

/// Runs the delivery every `interval`, leasing for `lease`, until `stopping` turns true; the
/// handle ends once the run in progress has finished its current POST and released the rest.
pub fn spawn_worker(
    state: AppState,
    interval: Duration,
    lease: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
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
    fn subscriptions_must_be_rest_hooks_on_tasks_to_https() {
        let mut good = json!({"resourceType": "Subscription", "status": "requested", "criteria": "Task",
                              "channel": {"type": "rest-hook", "endpoint": "https://partner.example/notify"}});
        accept_subscription(&mut good).unwrap();
        assert_eq!(good["status"], "active");
        let mut email = good.clone();
        email["channel"]["type"] = json!("email");
        assert!(accept_subscription(&mut email).is_err());
        let mut plain = good.clone();
        plain["channel"]["endpoint"] = json!("http://partner.example/notify");
        assert!(accept_subscription(&mut plain).is_err());
        let mut sandbox = plain.clone();
        sandbox["meta"] = json!({"tag": [{"system": rex_referral::task::TEST_DATA_TAG.0, "code": "HTEST"}]});
        assert!(accept_subscription(&mut sandbox).is_ok(), "a sandbox partner's test endpoint may be http");
        let mut patients = good.clone();
        patients["criteria"] = json!("Patient");
        assert!(accept_subscription(&mut patients).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), 10_000_000);
        assert_eq!(backoff(2), 20_000_000);
        assert_eq!(backoff(12), 3_600_000_000);
    }
}
