//! Retention: the purge deletes scorecard submissions, dead notifications and AuditEvents past
//! their configured retention, nothing younger, and audits each run with its counts. The clock is
//! a parameter.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use rex_server::retention::{Purged, Retention, purge};
use rex_store::{Isolation, Submission, SubmissionIssue};

use crate::intake::referral;
use crate::support::{TestApp, backend_tests};

backend_tests!(the_purge_deletes_what_is_past_its_retention_and_audits_itself);

async fn the_purge_deletes_what_is_past_its_retention_and_audits_itself(app: &TestApp) {
    let now = Utc::now();
    // A referral: its routing AuditEvent.
    let reply = app.post("", &referral("K-1", "I25.10", "urgent", "en", false)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let audit_events = app.total("AuditEvent").await;
    assert!(audit_events >= 1);
    // Two submissions, and two notifications of which one is dead.
    for received in [now - Duration::days(5), now] {
        let issue = SubmissionIssue {
            severity: "error".into(),
            code: "required".into(),
            rule: "required@Patient.gender".into(),
            location: Some("Bundle.entry[1].resource.gender".into()),
            profile: None,
        };
        let submission = Submission {
            partner: "p".into(),
            received: received.timestamp_micros(),
            kind: "transaction".into(),
            accepted: false,
            status: 422,
            issue_count: 1,
            issues: vec![issue],
        };
        app.store.record_submission(&submission).await.unwrap();
    }
    let mut tx = app.store.begin(Isolation::RowLocking).await.unwrap();
    for (subscription, created) in
        [("Subscription/dead", now - Duration::days(2)), ("Subscription/live", now - Duration::days(2))]
    {
        tx.enqueue_notification(
            subscription,
            "https://partner.example/hook",
            "[]",
            1,
            "{}",
            created.timestamp_micros(),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let leased = app.store.lease_notifications(now.timestamp_micros(), 60_000_000, 10).await.unwrap();
    let dead = leased.iter().find(|item| item.subscription == "Subscription/dead").unwrap();
    app.store.notification_failed(dead.id, None, "gave up").await.unwrap();

    let retention = Retention::from_days(3, 30, 1);
    // Nothing is old enough yet for the AuditEvents; the older submission and the dead
    // notification are.
    let first = purge(&app.state, retention, now).await.unwrap();
    assert_eq!(first, Purged { submissions: 1, audit_events: 0, dead_notifications: 1 });
    assert_eq!(app.count_rows("submissions").await, 1);
    assert_eq!(app.count_rows("submission_issues").await, 1, "the purged submission's issues go with it");
    assert_eq!(app.count_rows("outbox").await, 1, "the pending notification stays");
    let runs = app.get("AuditEvent?subtype=purge&_count=10").await.body;
    assert_eq!(runs["total"], 1, "{runs}");
    let run = &runs["entry"][0]["resource"];
    let description = run["outcomeDesc"].as_str().unwrap();
    assert!(description.contains("1 submissions from before") && description.contains("1 dead notifications"), "{run}");
    assert_eq!(run["entity"][0]["detail"][1]["valueString"], "0");
    // Forever means forever.
    let forever = purge(&app.state, Retention::from_days(0, 0, 0), now + Duration::days(4000)).await.unwrap();
    assert_eq!(forever, Purged::default());
    assert_eq!(app.count_rows("submissions").await, 1);

    // Thirty-one days on, the AuditEvents written until now (the purge's own included) go, with
    // their history and index rows, but not the AuditEvent of this run.
    let rows_before = app.count_rows("resource_history").await;
    let later = purge(&app.state, retention, now + Duration::days(31)).await.unwrap();
    assert_eq!(later.audit_events as i64, audit_events + 2, "{later:?}");
    assert_eq!(later.submissions, 1);
    assert_eq!(app.total("AuditEvent").await, 1);
    assert_eq!(app.count_rows("resource_history").await, rows_before - later.audit_events as i64 + 1);
    assert_eq!(app.total("Task").await, 1, "other resources stay");
}
