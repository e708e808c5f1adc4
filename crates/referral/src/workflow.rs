//! The referral Task state machine: FHIR Task.status with BSeR business statuses, as one table.
//! Every write path (the workflow operations, and PUT/PATCH of a Task) goes through it.
//!
//! While a Task is `on-hold` it waits for the partner (whatever the reason: an answer to a request
//! for information, or any other on-hold business status), and its SLA clock is paused: see
//! [`hold_clock`].

use chrono::{DateTime, SecondsFormat, Utc};
use rex_i18n::{Arg, Message, msg};
use serde_json::{Value, json};

use crate::task::{BUSINESS_STATUS_SYSTEM, extension_url};

/// rex's business statuses that BSeR lacks (information requested from the partner).
pub const REX_BUSINESS_STATUS_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/task-business-status";

/// What happens to a referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A specialist takes the referral from the queue.
    Claim,
    /// The specialist puts it back on its queue.
    Release,
    /// Moved to another queue (with a reason).
    Redirect,
    /// Declined with a reason.
    Decline,
    /// The specialist asks the partner for more information.
    RequestInformation,
    /// The partner answered; work resumes.
    ReceiveInformation,
    /// The opinion is returned.
    Complete,
    /// The partner revoked the referral.
    Cancel,
    /// The specialist asks for a telehealth consult; the Task waits for the partner to book it.
    RequestConsult,
    /// The partner booked the consult; work resumes.
    ConsultBooked,
    /// The proposed consult was cancelled before it was booked; work resumes without it.
    ConsultCancelled,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Claim => "claim",
            Action::Release => "release",
            Action::Redirect => "redirect",
            Action::Decline => "decline",
            Action::RequestInformation => "request-information",
            Action::ReceiveInformation => "receive-information",
            Action::Complete => "complete",
            Action::Cancel => "cancel",
            Action::RequestConsult => "request-consult",
            Action::ConsultBooked => "consult-booked",
            Action::ConsultCancelled => "consult-cancelled",
        }
    }
}

/// A business status: system, code and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessStatus {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

const CREATED: BusinessStatus =
    BusinessStatus { system: BUSINESS_STATUS_SYSTEM, code: "2.0", display: "Service Request Created" };
const ACCEPTED: BusinessStatus =
    BusinessStatus { system: BUSINESS_STATUS_SYSTEM, code: "3.0", display: "Service Request Accepted" };
const DECLINED: BusinessStatus =
    BusinessStatus { system: BUSINESS_STATUS_SYSTEM, code: "4.0", display: "Service Request Declined" };
const CANCELLED: BusinessStatus =
    BusinessStatus { system: BUSINESS_STATUS_SYSTEM, code: "6.0", display: "Service Request Fulfillment Cancelled" };
const COMPLETED: BusinessStatus =
    BusinessStatus { system: BUSINESS_STATUS_SYSTEM, code: "7.0", display: "Service Request Fulfillment Completed" };
const INFORMATION_REQUESTED: BusinessStatus = BusinessStatus {
    system: REX_BUSINESS_STATUS_SYSTEM,
    code: "information-requested",
    display: "Information requested from the referring partner",
};
/// The business status of a Task waiting for the partner to book a proposed consult.
pub const CONSULT_PROPOSED: BusinessStatus = BusinessStatus {
    system: REX_BUSINESS_STATUS_SYSTEM,
    code: "consult-proposed",
    display: "Telehealth consult proposed to the referring partner",
};

/// The machine: (from Task.status, action, to Task.status, business status after).
pub const TRANSITIONS: &[(&str, Action, &str, BusinessStatus)] = &[
    ("requested", Action::Claim, "in-progress", ACCEPTED),
    ("in-progress", Action::Release, "requested", CREATED),
    ("requested", Action::Redirect, "requested", CREATED),
    ("in-progress", Action::Redirect, "requested", CREATED),
    ("requested", Action::Decline, "rejected", DECLINED),
    ("in-progress", Action::Decline, "rejected", DECLINED),
    ("in-progress", Action::RequestInformation, "on-hold", INFORMATION_REQUESTED),
    ("on-hold", Action::ReceiveInformation, "in-progress", ACCEPTED),
    // Waiting for the partner does not lock the specialist out: the referral can still be handed
    // back, sent elsewhere or declined (the partner's late answer is kept in the conversation).
    ("on-hold", Action::Release, "requested", CREATED),
    ("on-hold", Action::Redirect, "requested", CREATED),
    ("on-hold", Action::Decline, "rejected", DECLINED),
    ("in-progress", Action::RequestConsult, "on-hold", CONSULT_PROPOSED),
    ("on-hold", Action::ConsultBooked, "in-progress", ACCEPTED),
    ("on-hold", Action::ConsultCancelled, "in-progress", ACCEPTED),
    ("in-progress", Action::Complete, "completed", COMPLETED),
    ("requested", Action::Cancel, "cancelled", CANCELLED),
    ("in-progress", Action::Cancel, "cancelled", CANCELLED),
    ("on-hold", Action::Cancel, "cancelled", CANCELLED),
];

/// A refused transition, naming what is allowed instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message().english())]
pub struct TransitionError {
    pub from: String,
    pub action: Refused,
    pub allowed: Vec<&'static str>,
}

/// What a refused transition tried: a workflow action, or a direct write to another status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Action(&'static str),
    Become(String),
}

impl TransitionError {
    /// The refusal in the catalogue, for the reader's language.
    pub fn message(&self) -> Message {
        let action = match &self.action {
            Refused::Action(name) => Arg::Text(name.to_string()),
            Refused::Become(status) => Arg::Message(msg!("transition-become", status)),
        };
        let allowed = match self.allowed.as_slice() {
            [] => Arg::Message(msg!("transition-finished")),
            allowed => Arg::Text(allowed.join(", ")),
        };
        msg!("transition-refused", from = self.from, action, allowed)
    }
}

/// The actions allowed from a Task.status.
pub fn allowed_actions(from: &str) -> Vec<&'static str> {
    TRANSITIONS.iter().filter(|(f, ..)| *f == from).map(|(_, action, ..)| action.name()).collect()
}

/// The status and business status after `action` on a Task in status `from`.
pub fn transition(from: &str, action: Action) -> Result<(&'static str, BusinessStatus), TransitionError> {
    TRANSITIONS
        .iter()
        .find(|(f, a, ..)| *f == from && *a == action)
        .map(|(_, _, to, business)| (*to, *business))
        .ok_or_else(|| TransitionError {
            from: from.to_string(),
            action: Refused::Action(action.name()),
            allowed: allowed_actions(from),
        })
}

/// Whether a direct write (PUT or PATCH) may change a referral Task's status from `from` to `to`:
/// only along the table. Keeping the status is always allowed.
pub fn check_status_change(from: &str, to: &str) -> Result<(), TransitionError> {
    if from == to || TRANSITIONS.iter().any(|(f, _, t, _)| *f == from && *t == to) {
        return Ok(());
    }
    Err(TransitionError {
        from: from.to_string(),
        action: Refused::Become(to.to_string()),
        allowed: allowed_statuses(from),
    })
}

fn allowed_statuses(from: &str) -> Vec<&'static str> {
    let mut statuses: Vec<&'static str> =
        TRANSITIONS.iter().filter(|(f, _, t, _)| *f == from && *t != from).map(|(_, _, to, _)| *to).collect();
    statuses.dedup();
    statuses
}

/// The Task extension holding when the Task went on hold (a `valueDateTime`), while it is.
pub const ON_HOLD_SINCE: &str = "task-on-hold-since";

/// The SLA clock of a referral Task changing from status `from` to the status `task` now has.
/// Programmes measure the time a referral waits for the hospital, not for the partner: entering
/// `on-hold` records the time in the [`ON_HOLD_SINCE`] extension, and leaving it (to any status)
/// moves the due time (`restriction.period.end`) later by the time spent on hold and removes the
/// extension. A Task staying on hold keeps the start of its hold from `current` (a PUT cannot
/// restart or drop it). It depends on Task.status only, so every reason for a hold pauses the clock.
pub fn hold_clock(current: &Value, task: &mut Value, now: DateTime<Utc>) {
    let from = current["status"].as_str().unwrap_or_default();
    let to = task["status"].as_str().unwrap_or_default().to_string();
    let since = |t: &Value| hold_start(t).map(str::to_string);
    match (from == "on-hold", to == "on-hold") {
        (false, true) => set_hold_start(task, Some(instant(now))),
        (true, true) => set_hold_start(task, since(current).or_else(|| since(task))),
        (true, false) => {
            let started = since(current).and_then(|s| DateTime::parse_from_rfc3339(&s).ok());
            set_hold_start(task, None);
            let due = task["restriction"]["period"]["end"].as_str().and_then(|d| DateTime::parse_from_rfc3339(d).ok());
            if let (Some(started), Some(due)) = (started, due) {
                let held = now - started.with_timezone(&Utc);
                if held > chrono::Duration::zero() {
                    task["restriction"]["period"]["end"] = json!(instant(due.with_timezone(&Utc) + held));
                }
            }
        }
        (false, false) => {}
    }
}

/// When the Task went on hold (its [`ON_HOLD_SINCE`] extension).
pub fn hold_start(task: &Value) -> Option<&str> {
    let url = extension_url(ON_HOLD_SINCE);
    task["extension"].as_array()?.iter().find(|e| e["url"] == url.as_str())?["valueDateTime"].as_str()
}

fn set_hold_start(task: &mut Value, since: Option<String>) {
    let url = extension_url(ON_HOLD_SINCE);
    let mut extensions: Vec<Value> = task["extension"].as_array().cloned().unwrap_or_default();
    extensions.retain(|e| e["url"] != url.as_str());
    if let Some(since) = since {
        extensions.push(json!({"url": url, "valueDateTime": since}));
    }
    match task.as_object_mut() {
        Some(object) if extensions.is_empty() => {
            object.remove("extension");
        }
        Some(object) => {
            object.insert("extension".into(), Value::Array(extensions));
        }
        None => {}
    }
}

fn instant(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_path_follows_the_table() {
        let (status, business) = transition("requested", Action::Claim).unwrap();
        assert_eq!((status, business.code), ("in-progress", "3.0"));
        let (status, _) = transition(status, Action::RequestInformation).unwrap();
        assert_eq!(status, "on-hold");
        let (status, _) = transition(status, Action::ReceiveInformation).unwrap();
        let (status, business) = transition(status, Action::Complete).unwrap();
        assert_eq!((status, business.code), ("completed", "7.0"));
    }

    #[test]
    fn forbidden_transitions_name_the_allowed_ones() {
        let err = transition("requested", Action::Complete).unwrap_err();
        assert_eq!(err.allowed, vec!["claim", "redirect", "decline", "cancel"]);
        let (status, business) = transition("in-progress", Action::RequestConsult).unwrap();
        assert_eq!((status, business.code), ("on-hold", "consult-proposed"));
        assert_eq!(transition(status, Action::ConsultBooked).unwrap().0, "in-progress");
        assert!(err.to_string().contains("allowed here: claim, redirect, decline, cancel"));
        let finished = transition("completed", Action::Claim).unwrap_err();
        assert!(finished.to_string().contains("nothing"));
        assert!(check_status_change("requested", "completed").is_err());
        assert!(check_status_change("requested", "in-progress").is_ok());
        assert!(check_status_change("cancelled", "cancelled").is_ok());
    }

    #[test]
    fn a_task_on_hold_can_still_be_released_redirected_or_declined() {
        assert_eq!(
            allowed_actions("on-hold"),
            ["receive-information", "release", "redirect", "decline", "consult-booked", "consult-cancelled", "cancel"]
        );
        assert_eq!(transition("on-hold", Action::Release).unwrap().0, "requested");
        assert_eq!(transition("on-hold", Action::Decline).unwrap().0, "rejected");
        assert!(transition("on-hold", Action::Complete).is_err());
        assert!(transition("on-hold", Action::Claim).is_err());
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn task(status: &str) -> Value {
        json!({"resourceType": "Task", "status": status, "restriction": {"period": {"end": "2026-01-02T00:00:00Z"}}})
    }

    #[test]
    fn the_clock_pauses_on_hold_and_the_due_time_moves_by_the_time_held() {
        let mut held = task("on-hold");
        hold_clock(&task("in-progress"), &mut held, at("2026-01-01T10:00:00Z"));
        assert_eq!(hold_start(&held), Some("2026-01-01T10:00:00Z"));
        assert_eq!(held["restriction"]["period"]["end"], "2026-01-02T00:00:00Z");
        // A PUT keeping the Task on hold cannot restart its hold.
        let mut put = task("on-hold");
        hold_clock(&held, &mut put, at("2026-01-01T12:00:00Z"));
        assert_eq!(hold_start(&put), Some("2026-01-01T10:00:00Z"));
        // Resumed 26 hours later (after the old due time): due 26 hours later than it was.
        let mut resumed = held.clone();
        resumed["status"] = json!("in-progress");
        hold_clock(&held, &mut resumed, at("2026-01-02T12:00:00Z"));
        assert_eq!(hold_start(&resumed), None);
        assert!(resumed.get("extension").is_none());
        assert_eq!(resumed["restriction"]["period"]["end"], "2026-01-03T02:00:00Z");
        // Every way out of the hold ends the pause, a release as well as an answer.
        let mut released = held.clone();
        released["status"] = json!("requested");
        hold_clock(&held, &mut released, at("2026-01-01T11:00:00Z"));
        assert_eq!(released["restriction"]["period"]["end"], "2026-01-02T01:00:00Z");
        // Other changes leave the clock alone.
        let mut claimed = task("in-progress");
        hold_clock(&task("requested"), &mut claimed, at("2026-01-01T11:00:00Z"));
        assert_eq!(claimed, task("in-progress"));
    }

    #[test]
    fn every_from_state_of_the_table_is_a_task_status() {
        const STATUSES: &[&str] = &[
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        ];
        for (from, _, to, _) in TRANSITIONS {
            assert!(STATUSES.contains(from) && STATUSES.contains(to));
        }
    }
}
