//! Escalation alerts: when a referral goes overdue, the people its queue's `[escalate_to]` names get
//! one mail (through a real SMTP server, Python's aiosmtpd, started here) and one webhook POST,
//! however often the escalation and delivery workers run, across a restart, and after a failed
//! delivery is retried; each sending is audited and no mail carries the patient's data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use rex_referral::RoutingConfig;
use rex_server::alerts::{Mailer, SmtpSettings, SmtpTls};
use rex_server::interactions::escalation::escalate_overdue;
use rex_server::notifications::deliver_due;
use rex_server::{AppState, Config};
use serde_json::json;

use crate::intake::referral;
use crate::notifications::Receiver;
use crate::support::{TestApp, VALIDATOR, backend_tests, partner_profiles, skipped};

backend_tests!(an_overdue_referral_alerts_its_queue_once);

/// aiosmtpd listening on a free loopback port, keeping what it receives in a Maildir.
struct SmtpServer {
    process: Child,
    port: u16,
    maildir: PathBuf,
}

impl SmtpServer {
    /// Starts it, or says why it cannot and returns `None` (in CI it fails instead: `.ci/run`
    /// installs aiosmtpd).
    fn start() -> Option<SmtpServer> {
        let found = Command::new("python3").args(["-c", "import aiosmtpd"]).output();
        if !found.is_ok_and(|o| o.status.success()) {
            skipped("the escalation mail test needs python3 with aiosmtpd (pip install aiosmtpd)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The Mailbox handler creates the Maildir itself, and fails on an existing plain folder.
        let maildir = std::env::temp_dir().join(format!("rex-smtp-{}", uuid::Uuid::new_v4()));
        let process = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 starts aiosmtpd");
        let server = SmtpServer { process, port, maildir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("aiosmtpd did not listen on port {port}");
    }

    /// The mails received, as text.
    fn mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else { return Vec::new() };
        entries.map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap()).collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// An instance of rex on `app`'s database whose routing sends the cardiology queue's alerts to
/// `targets`, mailing through the SMTP server on `smtp_port`: each call is a restart.
async fn alerting_instance(app: &TestApp, smtp_port: u16, targets: &[&str]) -> AppState {
    let listed: Vec<String> = targets.iter().map(|target| format!("{target:?}")).collect();
    let rules =
        format!("{}\n[escalate_to]\ncardiology = [{}]\n", include_str!("../../config/routing.toml"), listed.join(", "));
    let routing = RoutingConfig::from_toml(&rules).expect("the routing rules with escalate_to load");
    let smtp = SmtpSettings {
        relay: format!("127.0.0.1:{smtp_port}"),
        from: "rex <rex@hospital.example>".into(),
        tls: SmtpTls::None,
        credentials: None,
    };
    let config = Config {
        delivery_targets: rex_server::outbound::DeliveryTargets::allowing(["127.0.0.1"]),
        mailer: Some(Mailer::new(&smtp).unwrap()),
        ..Config::for_address(app.base.trim_start_matches("http://").split('/').next().unwrap().parse().unwrap())
    };
    AppState::start(app.store.clone(), config, routing, VALIDATOR.clone(), partner_profiles(), None).await.unwrap()
}

async fn an_overdue_referral_alerts_its_queue_once(app: &TestApp) {
    let Some(smtp) = SmtpServer::start() else { return };
    // The webhook refuses the first alert: it is sent again after the backoff.
    let (webhook, webhook_url) = Receiver::start(1).await;
    let targets = ["mailto:cardiology-lead@hospital.example", webhook_url.as_str()];
    let sent = app.post("", &referral("ESC-1", "I25.10", "stat", "es", false)).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let link = sent.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "https://rex.example/fhir/referral-task");
    let task = link.and_then(|l| l["url"].as_str()).unwrap().rsplit('/').next().unwrap().to_string();
    // Claimed, its owner is the specialist: the alert still goes to the queue it came from.
    let owner = json!({"resourceType": "Parameters", "parameter": [{"name": "owner", "valueReference": {"reference": "PractitionerRole/dr-lee"}}]});
    let claimed = app.post(&format!("Task/{task}/$claim"), &owner).await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    let client = reqwest::Client::new();
    let overdue = Utc::now() + Duration::hours(5);

    // The workers run several times, on two instances one after the other (a restart), with the
    // clock moving on past the webhook's retry.
    for (run, minutes) in [0, 1, 2].into_iter().enumerate().map(|(run, step)| (run, step * 2)) {
        let state = alerting_instance(app, smtp.port, &targets).await;
        let now = overdue + Duration::minutes(minutes);
        let escalated = escalate_overdue(&state, now).await.unwrap();
        assert_eq!(escalated, if run == 0 { vec![task.clone()] } else { vec![] }, "escalated once");
        for _ in 0..2 {
            deliver_due(&state, &client, now).await.unwrap();
        }
        state.audit.flush().await;
    }

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "exactly one mail: {mails:?}");
    let mail = &mails[0];
    for expected in [
        "To: cardiology-lead@hospital.example",
        "Subject: Overdue STAT referral in queue cardiology",
        &format!("Referral: Task/{task}"),
        "Priority: stat",
        "Overdue since: ",
        // (Short lines, as these links are here, go as plain 7-bit text, not quoted-printable.)
        &format!("\n{}/ui/worklist?queue=cardiology\n", app.base.trim_end_matches("/fhir")),
        &format!("\n{}/ui/referral/{task}\n", app.base.trim_end_matches("/fhir")),
    ] {
        assert!(mail.contains(expected), "the mail lacks {expected:?}:\n{mail}");
    }
    // Nothing about the patient: not the name, the birth date, the record number or the diagnosis.
    for phi in ["Ram", "Sof", "1958", "MRN-ESC-1", "I25"] {
        assert!(!mail.contains(phi), "the mail carries {phi:?}:\n{mail}");
    }

    let hooks = webhook.received();
    assert_eq!(hooks.len(), 1, "one webhook alert delivered: {hooks:?}");
    assert_eq!(hooks[0]["event"], "referral-overdue");
    assert_eq!(hooks[0]["referral"], format!("Task/{task}"));
    assert_eq!(hooks[0]["queue"], "cardiology");
    assert_eq!(hooks[0]["priority"], "stat");

    // Audited: the mail once, the webhook refused once and then delivered.
    let audited = format!("AuditEvent?entity=Task/{task}&subtype=escalation-alert&_count=50");
    let events = app.get(&audited).await.body;
    let mut outcomes: Vec<(String, String)> = events["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let event = &entry["resource"];
            let recipient = event["entity"][0]["detail"][0]["valueString"].as_str().unwrap().to_string();
            (recipient, event["outcome"].as_str().unwrap().to_string())
        })
        .collect();
    outcomes.sort();
    let mut expected = vec![
        ("mailto:cardiology-lead@hospital.example".to_string(), "0".to_string()),
        (webhook_url.clone(), "0".to_string()),
        (webhook_url.clone(), "4".to_string()),
    ];
    expected.sort();
    assert_eq!(outcomes, expected);
}
