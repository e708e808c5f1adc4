//! The audit journal of reads and refusals: AuditEvents that record who read what (and who was
//! refused what), written in batches by one background task so a read costs the reader no write.
//! Writes are audited in their own transaction elsewhere (intake, workflow); this journal holds
//! what has no transaction of its own. Events hold references, never content.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rex_store::{Isolation, Store};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::access::Caller;
use crate::interactions::write::{WriteOp, execute};

/// Events waiting to be written; when full, readers wait (back-pressure) rather than lose events.
const CAPACITY: usize = 10_000;
/// Events written per database transaction at most.
const BATCH: usize = 200;
/// Entities listed in one event (a search page can be larger; the event then says how many more).
const MAX_ENTITIES: usize = 100;

enum Message {
    Event(Value),
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// Handle on the journal's writer task.
#[derive(Clone)]
pub struct AuditJournal {
    sender: mpsc::Sender<Message>,
}

impl AuditJournal {
    /// Starts the writer task on `store`.
    pub fn start(store: Store) -> AuditJournal {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        tokio::spawn(write_batches(store, receiver));
        AuditJournal { sender }
    }

    /// Records that `caller` read `entities` (`Type/id`) through `interaction` (read, vread,
    /// search-type, history-instance...). Development callers have no identity and are not audited.
    pub async fn read(&self, caller: &Caller, interaction: &str, entities: Vec<String>) {
        if *caller == Caller::Unrestricted || entities.is_empty() {
            return;
        }
        let action = if interaction.starts_with("search") { "E" } else { "R" };
        self.send(rest_event(caller, interaction, action, &entities)).await;
    }

    /// Records a refused request (401, 403, 429 or a hidden 404).
    pub async fn denied(&self, who: &str, method: &str, route: &str, entity: Option<&str>, reason: &str) {
        let action = match method {
            "POST" => "C",
            "PUT" | "PATCH" => "U",
            "DELETE" => "D",
            _ => "R",
        };
        let mut event = json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                     "display": "RESTful Operation"},
            "action": action,
            "recorded": now(),
            "outcome": "4",
            "outcomeDesc": format!("Access denied on {method} {route}: {reason}"),
            "agent": [{"who": {"display": who}, "altId": who, "requestor": true}],
            "source": {"observer": {"display": "rex"}},
        });
        if let Some(entity) = entity {
            event["entity"] = json!([{"what": {"reference": entity}}]);
        }
        self.send(event).await;
    }

    /// Records one delivery attempt of a notification (`failure` is why it failed, if it did).
    pub async fn notification(&self, item: &rex_store::OutboxItem, failure: Option<&str>) {
        let mut event = json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"},
            "subtype": [{"system": rex_referral::task::AUDIT_SYSTEM, "code": "notify"}],
            "action": "C",
            "recorded": now(),
            "outcome": if failure.is_some() { "4" } else { "0" },
            "agent": [{"who": {"reference": "Device/rex"}, "requestor": false}],
            "source": {"observer": {"display": "rex"}},
            "entity": [{"what": {"reference": item.subscription}, "detail": [
                {"type": "event-number", "valueString": item.event_number.to_string()},
                {"type": "attempt", "valueString": item.attempts.to_string()}]}],
        });
        if let Some(reason) = failure {
            event["outcomeDesc"] = json!(reason);
        }
        self.send(event).await;
    }

    /// An escalation alert about the referral `task` (`Task/{id}`) sent, or tried, to one of its
    /// queue's contacts (`alerts`).
    pub async fn escalation_alert(&self, item: &rex_store::OutboxItem, task: &str, failure: Option<&str>) {
        let mut event = json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"},
            "subtype": [{"system": rex_referral::task::AUDIT_SYSTEM, "code": "escalation-alert"}],
            "action": "C",
            "recorded": now(),
            "outcome": if failure.is_some() { "4" } else { "0" },
            "agent": [{"who": {"reference": "Device/rex"}, "requestor": false}],
            "source": {"observer": {"display": "rex"}},
            "entity": [{"what": {"reference": task}, "detail": [
                {"type": "recipient", "valueString": item.endpoint},
                {"type": "attempt", "valueString": item.attempts.to_string()}]}],
        });
        if let Some(reason) = failure {
            event["outcomeDesc"] = json!(reason);
        }
        self.send(event).await;
    }

    /// Waits until every event recorded so far is in the database (used at shutdown and by tests).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    async fn send(&self, event: Value) {
        if self.sender.send(Message::Event(event)).await.is_err() {
            tracing::error!("the audit journal has stopped; an AuditEvent was not recorded");
        }
    }
}

/// An AuditEvent of a RESTful interaction by `caller` on `entities` (`Type/id`), successful.
pub fn rest_event(caller: &Caller, interaction: &str, action: &str, entities: &[String]) -> Value {
    let more = entities.len().saturating_sub(MAX_ENTITIES);
    let mut event = json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": action,
        "recorded": now(),
        "outcome": "0",
        "agent": [{"who": {"display": caller.label()}, "altId": caller.label(), "requestor": true}],
        "source": {"observer": {"display": "rex"}},
        "entity": entities.iter().take(MAX_ENTITIES).map(|what| json!({"what": {"reference": what}})).collect::<Vec<_>>(),
    });
    if more > 0 {
        event["outcomeDesc"] = json!(format!("{more} more resources were involved and are not listed"));
    }
    event
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Takes what is waiting (up to a batch) and writes it in one transaction, retrying a failed
/// batch so no event is dropped while the database is briefly unavailable.
async fn write_batches(store: Store, mut receiver: mpsc::Receiver<Message>) {
    while let Some(first) = receiver.recv().await {
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Event(event) => events.push(event),
                Message::Flush(done) => flushes.push(done),
            }
            next = if events.len() < BATCH { receiver.try_recv().ok() } else { None };
        }
        while let Err(err) = write(&store, &events).await {
            tracing::error!(issue = ?err.issues.first().map(|i| &i.diagnostics), "cannot write audit events; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write(store: &Store, events: &[Value]) -> Result<(), crate::ApiError> {
    if events.is_empty() {
        return Ok(());
    }
    crate::interactions::in_transaction(store, Isolation::RowLocking, events, |tx, events| {
        Box::pin(async move {
            for event in events {
                let op = WriteOp::Create {
                    resource_type: "AuditEvent".into(),
                    resource: event.clone(),
                    id: None,
                    if_none_exist: None,
                };
                execute(tx, &Caller::Unrestricted, op).await?;
            }
            Ok(())
        })
    })
    .await
}
