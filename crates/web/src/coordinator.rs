//! The coordinator view: every queue with its open referrals counted by SLA state, and the open
//! referrals rex escalated (its escalation worker flags those past their due time), most overdue
//! first.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::html::short_time;
use crate::html::{concept, escape};
use crate::sla::{SlaState, parse_instant, relative, sla_state};
use crate::worklist::{
    CONSENT_WITHDRAWN_TAG, Queue, consent_withdrawn, is_escalated, queue_of, status_text, task_extension,
};

/// Open referrals per queue and SLA state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub by_queue: BTreeMap<String, BTreeMap<SlaState, usize>>,
}

/// An escalated open referral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalated {
    pub task_id: String,
    pub queue: String,
    pub priority: String,
    pub status: String,
    pub due: Option<DateTime<Utc>>,
    /// When rex escalated it (the `task-escalated` extension).
    pub escalated_at: String,
    pub reason: String,
}

/// The open referrals flagged to the coordinator, each earliest due first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flagged {
    /// Past their due time.
    pub escalated: Vec<Escalated>,
    /// Their consent to share was withdrawn or has expired (`escalated_at` is empty).
    pub consent_withdrawn: Vec<Escalated>,
}

/// Counts the open Tasks by queue and SLA state, and lists the flagged ones, earliest due first.
/// `requests` are the Tasks' ServiceRequests (for the reason shown).
pub fn summarise(tasks: &[Value], requests: &[Value], now: DateTime<Utc>) -> (Counts, Flagged) {
    let mut counts = Counts::default();
    let mut flagged = Flagged::default();
    for task in tasks {
        let status = task["status"].as_str().unwrap_or_default();
        let due = task["restriction"]["period"]["end"].as_str().and_then(parse_instant);
        let authored = task["authoredOn"].as_str().and_then(parse_instant);
        let Some(state) = sla_state(status, authored, due, now) else { continue };
        let queue = queue_of(task).unwrap_or("unknown").to_string();
        *counts.by_queue.entry(queue.clone()).or_default().entry(state).or_default() += 1;
        let focus = task["focus"]["reference"].as_str().unwrap_or_default();
        let request = requests.iter().find(|r| format!("ServiceRequest/{}", r["id"].as_str().unwrap_or("-")) == focus);
        let item = Escalated {
            task_id: task["id"].as_str().unwrap_or_default().to_string(),
            queue,
            priority: task["priority"].as_str().unwrap_or("routine").to_string(),
            status: status.to_string(),
            due,
            escalated_at: task_extension(task, "task-escalated")
                .and_then(|e| e["valueDateTime"].as_str())
                .unwrap_or_default()
                .to_string(),
            reason: request.map(|r| concept(&r["reasonCode"][0])).unwrap_or_default(),
        };
        match (is_escalated(task), consent_withdrawn(task)) {
            (true, true) => {
                flagged.consent_withdrawn.push(Escalated { escalated_at: String::new(), ..item.clone() });
                flagged.escalated.push(item);
            }
            (true, false) => flagged.escalated.push(item),
            (false, true) => flagged.consent_withdrawn.push(Escalated { escalated_at: String::new(), ..item }),
            (false, false) => {}
        }
    }
    flagged.escalated.sort_by_key(|e| e.due);
    flagged.consent_withdrawn.sort_by_key(|e| e.due);
    (counts, flagged)
}

/// The page content.
pub fn render(queues: &[Queue], counts: &Counts, flagged: &Flagged, now: DateTime<Utc>) -> String {
    let escalated = &flagged.escalated;
    let mut html = String::from(
        r#"<h1>Coordinator view</h1>
<table class="counts"><caption>Open referrals per queue by SLA state</caption>
<thead><tr><th scope="col">Queue</th>"#,
    );
    for state in SlaState::ALL {
        html.push_str(&format!(
            r#"<th scope="col"><span class="badge {}">{}</span></th>"#,
            state.class(),
            state.label()
        ));
    }
    html.push_str(r#"<th scope="col">Open</th></tr></thead><tbody>"#);
    let empty = BTreeMap::new();
    for queue in queues {
        let counted = counts.by_queue.get(&queue.code).unwrap_or(&empty);
        html.push_str(&format!(
            r#"<tr><th scope="row"><a href="/ui/worklist?queue={}">{}</a></th>"#,
            escape(&queue.code),
            escape(&queue.name)
        ));
        for state in SlaState::ALL {
            html.push_str(&format!("<td>{}</td>", counted.get(&state).copied().unwrap_or(0)));
        }
        html.push_str(&format!("<td>{}</td></tr>", counted.values().sum::<usize>()));
    }
    html.push_str("</tbody></table>\n");
    html.push_str(&render_consent_withdrawn(&flagged.consent_withdrawn, now));
    html.push_str("<h2 id=\"h-escalated\">Escalated referrals</h2>");
    if escalated.is_empty() {
        html.push_str("<p>None: no open referral has been escalated.</p>");
        return html;
    }
    html.push_str(
        r#"<table class="worklist" aria-labelledby="h-escalated"><thead><tr><th scope="col">Due</th><th scope="col">Escalated</th><th scope="col">Referral</th><th scope="col">Priority</th><th scope="col">Queue</th><th scope="col">Status</th></tr></thead><tbody>"#,
    );
    for item in escalated {
        html.push_str(&format!(
            r#"<tr class="sla-overdue"><td><span class="tag escalated">Escalated</span> {}</td><td>{}</td><td><a href="/ui/referral/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            item.due.map(|d| relative(d, now)).unwrap_or_default(),
            escape(&short_time(&item.escalated_at)),
            escape(&item.task_id),
            escape(if item.reason.is_empty() { "Referral" } else { &item.reason }),
            escape(&item.priority),
            escape(&item.queue),
            escape(status_text(&item.status)),
        ));
    }
    html.push_str("</tbody></table>\n");
    html
}

/// The open referrals whose consent to share was withdrawn or has expired: the coordinator
/// decides whether they go on.
fn render_consent_withdrawn(items: &[Escalated], now: DateTime<Utc>) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        r#"<h2 id="h-consent">Consent withdrawn</h2><table class="worklist" aria-labelledby="h-consent"><thead><tr><th scope="col">Due</th><th scope="col">Referral</th><th scope="col">Priority</th><th scope="col">Queue</th><th scope="col">Status</th></tr></thead><tbody>"#,
    );
    for item in items {
        html.push_str(&format!(
            r#"<tr><td>{CONSENT_WITHDRAWN_TAG} {}</td><td><a href="/ui/referral/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            item.due.map(|d| relative(d, now)).unwrap_or_default(),
            escape(&item.task_id),
            escape(if item.reason.is_empty() { "Referral" } else { &item.reason }),
            escape(&item.priority),
            escape(&item.queue),
            escape(status_text(&item.status)),
        ));
    }
    html.push_str("</tbody></table>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn open_tasks_are_counted_per_queue_and_escalated_ones_listed() {
        let now = parse_instant("2026-01-02T00:00:00Z").unwrap();
        let task = |id: &str, queue: &str, status: &str, due: &str| {
            json!({"id": id, "status": status, "owner": {"reference": format!("HealthcareService/{queue}")},
                   "authoredOn": "2026-01-01T00:00:00Z", "restriction": {"period": {"end": due}},
                   "focus": {"reference": format!("ServiceRequest/s{id}")}})
        };
        let without_consent = |mut task: Value| {
            task["meta"] = json!({"tag": [{"system": crate::worklist::FLAG_SYSTEM, "code": "consent-withdrawn"}]});
            task
        };
        let escalate = |mut task: Value| {
            task["meta"] = json!({"tag": [{"system": crate::worklist::FLAG_SYSTEM, "code": "escalated"}]});
            task["extension"] = json!([{"url": rex_referral::task::extension_url("task-escalated"),
                                         "valueDateTime": "2026-01-01T12:05:00Z"}]);
            task
        };
        let tasks = [
            escalate(task("1", "cardiology", "requested", "2026-01-01T12:00:00Z")),
            task("2", "cardiology", "in-progress", "2026-01-05T00:00:00Z"),
            task("3", "oncology", "on-hold", "2026-01-02T02:00:00Z"),
            escalate(task("4", "oncology", "completed", "2026-01-01T01:00:00Z")),
            escalate(task("5", "oncology", "requested", "2026-01-01T23:00:00Z")),
            task("6", "oncology", "requested", "2026-01-01T22:00:00Z"),
            without_consent(task("7", "dermatology", "requested", "2026-01-09T00:00:00Z")),
        ];
        let requests = [json!({"id": "s1", "reasonCode": [{"text": "NSTEMI"}]})];
        let (counts, flagged) = summarise(&tasks, &requests, now);
        let escalated = &flagged.escalated;
        assert_eq!(counts.by_queue["cardiology"][&SlaState::Overdue], 1);
        assert_eq!(counts.by_queue["cardiology"][&SlaState::OnTime], 1);
        // On hold, the clock is paused: counted apart, never due soon or overdue.
        assert_eq!(counts.by_queue["oncology"][&SlaState::Paused], 1);
        assert_eq!(counts.by_queue["oncology"].values().sum::<usize>(), 3);
        // Only flagged open referrals are escalated (6 is overdue but not yet flagged; 4 is closed).
        let ids: Vec<&str> = escalated.iter().map(|e| e.task_id.as_str()).collect();
        assert_eq!(ids, ["1", "5"]);
        assert_eq!(escalated[0].reason, "NSTEMI");
        assert_eq!(escalated[0].escalated_at, "2026-01-01T12:05:00Z");
        let queues = [Queue { code: "cardiology".into(), name: "Cardiology".into() }];
        let html = render(&queues, &counts, &flagged, now);
        assert!(html.contains("<td>1</td><td>0</td><td>1</td><td>0</td><td>2</td>"), "{html}");
        assert!(html.contains(r#"<a href="/ui/referral/1">NSTEMI</a>"#));
        // A referral whose consent was withdrawn is listed on its own.
        let ids: Vec<&str> = flagged.consent_withdrawn.iter().map(|e| e.task_id.as_str()).collect();
        assert_eq!(ids, ["7"]);
        assert!(
            html.contains(r#"<h2 id="h-consent">Consent withdrawn</h2>"#) && html.contains(r#"href="/ui/referral/7""#)
        );
    }
}
