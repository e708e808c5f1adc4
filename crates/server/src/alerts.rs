//! Escalation alerts: the people told when a queue's referral goes overdue. The routing
//! configuration names them per queue (`[escalate_to]`: `mailto:` addresses and webhook URLs).
//!
//! The escalation worker queues one alert per target in the outbox, in the transaction that flags
//! the Task, so an overdue referral is announced once however often the worker runs and however many
//! instances run it; the notification delivery worker sends them (mail through the SMTP relay,
//! `--smtp-relay`; webhooks as a JSON POST through the delivery client, under the same address
//! rules as partner notifications), with its retries, and records each attempt as an AuditEvent.
//!
//! An alert carries no health data: the referral's Task id, its queue, priority and due time, and
//! links to the worklist, where the coordinator signs in to see the rest.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rex_referral::RoutingConfig;
use rex_store::{OutboxItem, Tx};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::outbound::DeliveryTargets;

/// The outbox key of the alerts to one target (`{KEY_PREFIX}{target}`): a target's alerts go out in
/// order, and one failing target does not hold back another's.
pub const KEY_PREFIX: &str = "escalation-alert:";
/// Time allowed for handing one mail to the relay.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// How rex reaches the mail relay (`--smtp-tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on the same machine or a private link.
    None,
    /// SMTP upgraded with STARTTLS, which is required (submission, port 587).
    StartTls,
    /// SMTP inside TLS from the first byte (port 465).
    Tls,
}

impl std::str::FromStr for SmtpTls {
    type Err = String;
    fn from_str(text: &str) -> Result<SmtpTls, String> {
        match text {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Tls),
            _ => Err(format!("'{text}' is not one of none, starttls, tls")),
        }
    }
}

/// The mail relay settings (`--smtp-relay`, `--smtp-from`, `--smtp-tls`, `--smtp-user`,
/// `REX_SMTP_PASSWORD`).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `host:port`.
    pub relay: String,
    /// The sender address of alerts.
    pub from: String,
    pub tls: SmtpTls,
    /// User name and password, when the relay wants them (only over TLS: lettre refuses to send
    /// them in the clear).
    pub credentials: Option<(String, String)>,
}

/// Sends alerts by mail through the configured relay (TLS through OpenSSL, as everything else).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the relay's credentials.
        formatter.debug_struct("Mailer").field("from", &self.from).finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(settings: &SmtpSettings) -> Result<Mailer, String> {
        let (host, port) = settings
            .relay
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.trim_start_matches('[').trim_end_matches(']'), port.parse().ok()?)))
            .ok_or_else(|| format!("--smtp-relay must be host:port, not '{}'", settings.relay))?;
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|err| format!("--smtp-from '{}' is not a mail address: {err}", settings.from))?;
        let relay_error = |err: lettre::transport::smtp::Error| format!("cannot use the SMTP relay {host}: {err}");
        let mut builder = match settings.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(relay_error)?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(relay_error)?,
        }
        .port(port)
        .timeout(Some(SMTP_TIMEOUT));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer { transport: builder.build(), from })
    }

    async fn send(&self, to: &str, subject: String, body: String) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|err| format!("'{to}' is not a mail address: {err}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|err| format!("cannot build the mail: {err}"))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(err) if err.is_permanent() => Err(format!("the SMTP relay refused the mail: {err}")),
            Err(err) => Err(format!("the SMTP relay could not take the mail: {err}")),
        }
    }
}

/// Checks the configured alert targets at start: mail needs a relay, and a webhook must be a URL
/// rex may deliver to ([`crate::outbound`]).
pub async fn check_targets(
    routing: &RoutingConfig,
    mailer: Option<&Mailer>,
    targets: &DeliveryTargets,
) -> Result<(), String> {
    for target in routing.alert_targets() {
        if target.starts_with("mailto:") {
            if mailer.is_none() {
                return Err(format!("escalate_to names {target}, but no --smtp-relay is configured"));
            }
        } else {
            targets.check_endpoint(target, false).await.map_err(|reason| format!("escalate_to {target}: {reason}"))?;
        }
    }
    Ok(())
}

/// Queues, in `tx`, one alert per target of the queue of the Task `id` (claimed or not) that has
/// just been flagged overdue at `now`.
pub async fn enqueue(
    tx: &mut Tx,
    routing: &RoutingConfig,
    id: &str,
    task: &Value,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let Some(queue) = rex_referral::task::queue_of(task) else { return Ok(()) };
    let alert = json!({
        "event": "referral-overdue",
        "referral": format!("Task/{id}"),
        "queue": queue,
        "priority": task["priority"],
        "overdueSince": task["restriction"]["period"]["end"],
    })
    .to_string();
    for target in routing.escalate_to(queue) {
        let key = format!("{KEY_PREFIX}{target}");
        tx.enqueue_notification(&key, target, "[]", 1, &alert, now.timestamp_micros()).await?;
    }
    Ok(())
}

/// The referral (`Task/{id}`) an alert is about, for its AuditEvent.
pub fn referral(item: &OutboxItem) -> String {
    let alert: Value = serde_json::from_str(&item.payload).unwrap_or_default();
    alert["referral"].as_str().unwrap_or_default().to_string()
}

/// The queued alert with its links (`worklist`, `referralPage`), which use the delivering
/// instance's public base URL, like notification Bundles' fullUrls: the JSON body of a webhook.
pub fn with_links(item: &OutboxItem, base_url: &str) -> Value {
    let mut alert: Value = serde_json::from_str(&item.payload).unwrap_or_default();
    let origin = base_url.strip_suffix("/fhir").unwrap_or(base_url);
    let queue = alert["queue"].as_str().unwrap_or_default().to_string();
    let id = alert["referral"].as_str().and_then(|task| task.strip_prefix("Task/")).unwrap_or_default().to_string();
    alert["worklist"] = json!(format!("{origin}/ui/worklist?queue={queue}"));
    alert["referralPage"] = json!(format!("{origin}/ui/referral/{id}"));
    alert
}

/// Mails one queued alert to `address` (its `mailto:` target).
pub async fn mail(item: &OutboxItem, address: &str, base_url: &str, mailer: Option<&Mailer>) -> Result<(), String> {
    let mailer = mailer.ok_or("no --smtp-relay is configured")?;
    let alert = with_links(item, base_url);
    let field = |name: &str| alert[name].as_str().unwrap_or_default();
    let (queue, priority) = (field("queue"), field("priority"));
    let subject = format!("Overdue {} referral in queue {queue}", priority.to_uppercase());
    let body = format!(
        "A referral in the queue {queue} is past its due time.\n\n\
         Referral: {}\nPriority: {priority}\nOverdue since: {}\n\n\
         The worklist:\n{}\n\nThe referral:\n{}\n\n\
         Sign in to the worklist for the details. This alert is sent once.\n",
        field("referral"),
        field("overdueSince"),
        field("worklist"),
        field("referralPage"),
    );
    mailer.send(address, subject, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(relay: &str, from: &str) -> SmtpSettings {
        SmtpSettings { relay: relay.into(), from: from.into(), tls: SmtpTls::StartTls, credentials: None }
    }

    #[test]
    fn the_relay_is_host_and_port_and_the_sender_an_address() {
        assert!(Mailer::new(&settings("smtp.hospital.example:587", "rex <rex@hospital.example>")).is_ok());
        assert!(Mailer::new(&settings("[::1]:25", "rex@hospital.example")).is_ok());
        assert!(
            Mailer::new(&settings("smtp.hospital.example", "rex@hospital.example")).unwrap_err().contains("host:port")
        );
        assert!(Mailer::new(&settings("smtp.hospital.example:587", "rex")).unwrap_err().contains("--smtp-from"));
        assert_eq!("none".parse(), Ok(SmtpTls::None));
        assert_eq!("tls".parse(), Ok(SmtpTls::Tls));
        assert!("ssl".parse::<SmtpTls>().is_err());
    }

    #[test]
    fn links_use_the_delivering_instance_base_url() {
        let payload = json!({"referral": "Task/t1", "queue": "cardiology", "priority": "stat"}).to_string();
        let item = OutboxItem {
            id: 1,
            subscription: format!("{KEY_PREFIX}https://pager.example/rex"),
            endpoint: "https://pager.example/rex".into(),
            headers: "[]".into(),
            event_number: 1,
            payload,
            attempts: 1,
        };
        let alert = with_links(&item, "https://rex.hospital.example/fhir");
        assert_eq!(alert["worklist"], "https://rex.hospital.example/ui/worklist?queue=cardiology");
        assert_eq!(alert["referralPage"], "https://rex.hospital.example/ui/referral/t1");
        assert_eq!(referral(&item), "Task/t1");
    }
}
