//! The referral Task state machine: FHIR Task.status with BSeR business statuses, as one table.
//! Every write path (the workflow operations, and PUT/PATCH of a Task) goes through it.

use crate::task::BUSINESS_STATUS_SYSTEM;

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
#[error("a referral Task in status '{from}' cannot {action}; allowed here: {}", allowed_list(.allowed))]
pub struct TransitionError {
    pub from: String,
    pub action: String,
    pub allowed: Vec<&'static str>,
}

fn allowed_list(allowed: &[&'static str]) -> String {
    if allowed.is_empty() { "nothing (the referral is finished)".into() } else { allowed.join(", ") }
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
            action: action.name().to_string(),
            allowed: allowed_actions(from),
        })
}

/// Whether a direct write (PUT or PATCH) may change a referral Task's status from `from` to `to`:
/// only along the table. Keeping the status is always allowed.
pub fn check_status_change(from: &str, to: &str) -> Result<(), TransitionError> {
    if from == to || TRANSITIONS.iter().any(|(f, _, t, _)| *f == from && *t == to) {
        return Ok(());
    }
    Err(TransitionError { from: from.to_string(), action: format!("become '{to}'"), allowed: allowed_statuses(from) })
}

fn allowed_statuses(from: &str) -> Vec<&'static str> {
    let mut statuses: Vec<&'static str> =
        TRANSITIONS.iter().filter(|(f, _, t, _)| *f == from && *t != from).map(|(_, _, to, _)| *to).collect();
    statuses.dedup();
    statuses
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
