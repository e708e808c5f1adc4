//! The referral view: the request, the patient summary (with IPS documents), attachments, the
//! conversation with the partner, the Task's history and routing, and the actions the Task's state
//! allows. [`load`] gathers it through the API; [`render`] is pure.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rex_referral::workflow::{Action, transition};
use serde_json::Value;

use crate::api::{Api, Failure, query};
use crate::consult::language_name;
use crate::html::{codings, concept, escape, observation_value, short_time};
use crate::session::User;
use crate::sla::{age, parse_instant, relative, sla_state};
use crate::worklist::{
    CONSENT_WITHDRAWN_TAG, Kind, Partner, Queue, clinical_question, consent_withdrawn, is_escalated, partner_of,
    partners_of, queue_of, sla_badge, status_text, task_extension,
};

/// Everything the referral page shows.
#[derive(Debug, Default)]
pub struct Referral {
    pub task: Value,
    pub service_request: Value,
    pub patient: Value,
    /// Who referred: names of the requester's Practitioner and Organization.
    pub requester: Vec<String>,
    pub partner: Partner,
    /// The referral's supporting resources (problems, medications, allergies, results, reports).
    pub clinical: Vec<Value>,
    /// IPS documents (document Bundles) sent with the referral.
    pub documents: Vec<Value>,
    /// DocumentReferences: the attachments.
    pub attachments: Vec<Value>,
    /// Requests for information and the partner's answers, oldest first.
    pub conversation: Vec<Value>,
    /// Task versions, newest first.
    pub history: Vec<Value>,
    /// AuditEvents about the Task, oldest first.
    pub audit: Vec<Value>,
    /// The returned opinion (Task.output).
    pub opinion: Option<Value>,
    /// The Consent the referral is shared under (the Task's `task-consent`), as it is now.
    pub consent: Option<Value>,
}

/// Reads the referral of Task `id` with the user's rights; what the user may not see is missing.
pub async fn load(api: &Api, user: &User, id: &str) -> Result<Referral, Failure> {
    let task = api.get(user, &format!("Task/{id}")).await?;
    let mut referral = Referral::default();
    if let Some(reference) = task["focus"]["reference"].as_str() {
        referral.service_request = api.get(user, reference).await?;
    }
    if let Some(reference) = task["for"]["reference"].as_str() {
        referral.patient = api.get(user, reference).await.unwrap_or_default();
    }
    referral.requester = requester_names(api, user, &referral.service_request["requester"]).await;
    if let Some(partner) = partner_of(&task) {
        let search = format!(
            "Organization?{}",
            query(&[("identifier", &format!("{}|{partner}", rex_referral::PARTNER_SYSTEM))])
        );
        let organizations = api.search(user, &search).await.map(|p| p.matches).unwrap_or_default();
        referral.partner = partners_of(&organizations)
            .remove(partner)
            .unwrap_or(Partner { name: partner.into(), country: String::new() });
    }
    // The resources the ServiceRequest names, fetched per type with one `_id` search each.
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let named = referral.service_request["supportingInfo"].as_array().into_iter().flatten();
    for reference in named.chain(referral.service_request["reasonReference"].as_array().into_iter().flatten()) {
        if let Some((resource_type, id)) = reference["reference"].as_str().and_then(|r| r.split_once('/')) {
            by_type.entry(resource_type.to_string()).or_default().push(id.to_string());
        }
    }
    for (resource_type, ids) in &by_type {
        let search = format!("{resource_type}?{}", query(&[("_id", &ids.join(",")), ("_count", "200")]));
        for resource in api.search(user, &search).await.map(|p| p.matches).unwrap_or_default() {
            match resource_type.as_str() {
                "Bundle" if resource["type"] == "document" => referral.documents.push(resource),
                "DocumentReference" => referral.attachments.push(resource),
                "Bundle" | "Composition" | "RelatedPerson" | "Coverage" => {}
                _ => referral.clinical.push(resource),
            }
        }
    }
    referral.conversation = conversation(api, user, &referral.service_request, partner_of(&task)).await;
    let history = api.search(user, &format!("Task/{id}/_history?_count=100")).await?;
    referral.history = history.matches;
    let audit = format!(
        "AuditEvent?{}",
        query(&[("entity", &format!("Task/{id}")), ("_sort", "_lastUpdated"), ("_count", "200")])
    );
    referral.audit = api.search(user, &audit).await.map(|p| p.matches).unwrap_or_default();
    if let Some(reference) = task["output"][0]["valueReference"]["reference"].as_str() {
        referral.opinion = api.get(user, reference).await.ok();
    }
    if let Some(reference) =
        task_extension(&task, "task-consent").and_then(|e| e["valueReference"]["reference"].as_str())
    {
        referral.consent = api.get(user, reference).await.ok();
    }
    referral.task = task;
    Ok(referral)
}

/// "Practitioner name, Organization name" of a requester reference (a PractitionerRole names both).
async fn requester_names(api: &Api, user: &User, requester: &Value) -> Vec<String> {
    let Some(reference) = requester["reference"].as_str() else {
        return requester["display"].as_str().map(String::from).into_iter().collect();
    };
    let Ok(resource) = api.get(user, reference).await else { return Vec::new() };
    let mut names = Vec::new();
    let mut targets = vec![resource.clone()];
    if resource["resourceType"] == "PractitionerRole" {
        targets.clear();
        for field in ["practitioner", "organization"] {
            if let Some(reference) = resource[field]["reference"].as_str()
                && let Ok(found) = api.get(user, reference).await
            {
                targets.push(found);
            }
        }
    }
    for target in targets {
        names.push(name_of(&target));
    }
    names.retain(|n| !n.is_empty());
    names
}

/// The requests for information about the ServiceRequest and the partner's answers: the answers
/// name their request in `inResponseTo` and may lack `basedOn`, so the partner's Communications
/// are searched too.
async fn conversation(api: &Api, user: &User, service_request: &Value, partner: Option<&str>) -> Vec<Value> {
    let Some(id) = service_request["id"].as_str() else { return Vec::new() };
    let search =
        format!("Communication?{}", query(&[("based-on", &format!("ServiceRequest/{id}")), ("_count", "200")]));
    let mut messages = api.search(user, &search).await.map(|p| p.matches).unwrap_or_default();
    if let Some(partner) = partner {
        let tag = format!("{}|{partner}", crate::worklist::PARTNER_TAG_SYSTEM);
        let search =
            format!("Communication?{}", query(&[("_tag", &tag), ("_sort", "-_lastUpdated"), ("_count", "500")]));
        let requests: BTreeSet<String> =
            messages.iter().filter_map(|m| m["id"].as_str()).map(|id| format!("Communication/{id}")).collect();
        for candidate in api.search(user, &search).await.map(|p| p.matches).unwrap_or_default() {
            let answers = candidate["inResponseTo"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["reference"].as_str().is_some_and(|r| requests.contains(r)));
            if answers && !messages.iter().any(|m| m["id"] == candidate["id"]) {
                messages.push(candidate);
            }
        }
    }
    messages.sort_by_key(|m| message_time(m).to_string());
    messages
}

fn message_time(message: &Value) -> &str {
    message["sent"].as_str().or(message["meta"]["lastUpdated"].as_str()).unwrap_or_default()
}

/// A person's or organisation's name.
fn name_of(resource: &Value) -> String {
    match resource["name"].as_str() {
        Some(name) => name.to_string(),
        None => human_name(&resource["name"][0]),
    }
}

/// A HumanName as written: its text, else prefix, given names and family.
fn human_name(name: &Value) -> String {
    if let Some(text) = name["text"].as_str() {
        return text.to_string();
    }
    let words = |field: &str| -> String {
        name[field].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")
    };
    [words("prefix"), words("given"), name["family"].as_str().unwrap_or_default().to_string()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

const LANGUAGE_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/language";

/// Every name the partner sent for the patient (an Arabic and a Latin one, Chinese characters and
/// pinyin...), each isolated for bidirectional text and labelled with its language when the name
/// carries the `language` extension, one per line.
fn patient_names_html(patient: &Value) -> String {
    let mut seen = Vec::new();
    for name in patient["name"].as_array().into_iter().flatten() {
        let text = human_name(name);
        let language = name["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"] == LANGUAGE_EXTENSION)
            .and_then(|e| e["valueCode"].as_str());
        let html = match language {
            Some(tag) => format!(
                r#"<bdi lang="{}">{}</bdi> <span class="muted">({})</span>"#,
                escape(tag),
                escape(&text),
                escape(&language_name(tag))
            ),
            None => format!("<bdi>{}</bdi>", escape(&text)),
        };
        if !text.is_empty() && !seen.contains(&html) {
            seen.push(html);
        }
    }
    seen.join("<br>")
}

/// The attachments of a resource, in order: DocumentReference contents, Communication payloads,
/// a DiagnosticReport's presented forms, a Binary itself. Their index is their download address.
pub fn attachments(resource: &Value) -> Vec<&Value> {
    let list = |field: &str, inner: Option<&str>| -> Vec<&Value> {
        resource[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| inner.map_or(item, |inner| &item[inner]))
            .filter(|a| a.is_object())
            .collect()
    };
    match resource["resourceType"].as_str() {
        Some("DocumentReference") => list("content", Some("attachment")),
        Some("Communication") => list("payload", Some("contentAttachment")),
        Some("DiagnosticReport") => list("presentedForm", None),
        _ => Vec::new(),
    }
}

/// The actions the page offers: those the state machine allows from the Task's status, that the
/// user can carry out (a claim needs their PractitionerRole; a specialist works only on referrals
/// they claimed, also while they wait on hold for the partner).
pub fn offered(task: &Value, user: &User) -> Vec<Action> {
    let status = task["status"].as_str().unwrap_or_default();
    let owner = task["owner"]["reference"].as_str().unwrap_or_default();
    let claimed_by_user = user.practitioner_role.as_deref() == Some(owner);
    [Action::Claim, Action::Release, Action::Redirect, Action::Decline, Action::RequestInformation, Action::Complete]
        .into_iter()
        .filter(|action| transition(status, *action).is_ok())
        .filter(|action| match action {
            Action::Claim => user.practitioner_role.is_some(),
            _ if status == "in-progress" || status == "on-hold" => claimed_by_user || user.is_coordinator(),
            _ => true,
        })
        .collect()
}

/// One line of clinical data: what it is, its value or status, and when.
pub fn clinical_line(resource: &Value) -> String {
    let when =
        |field: &str| resource[field].as_str().map(|t| format!(" · {}", t.get(..10).unwrap_or(t))).unwrap_or_default();
    match resource["resourceType"].as_str().unwrap_or_default() {
        "Condition" => format!(
            "{} ({}){}",
            concept(&resource["code"]),
            concept(&resource["clinicalStatus"]).to_lowercase(),
            when("onsetDateTime")
        ),
        "MedicationStatement" | "MedicationRequest" => {
            let dosage = resource["dosage"][0]["text"].as_str().or(resource["dosageInstruction"][0]["text"].as_str());
            let medication = concept(&resource["medicationCodeableConcept"]);
            match dosage {
                Some(dosage) => format!("{medication}: {dosage}"),
                None => medication,
            }
        }
        "AllergyIntolerance" => {
            let criticality =
                resource["criticality"].as_str().map(|c| format!(", criticality {c}")).unwrap_or_default();
            let reaction = resource["reaction"][0]["manifestation"][0].clone();
            let reaction = if reaction.is_null() { String::new() } else { format!(" → {}", concept(&reaction)) };
            format!("{}{criticality}{reaction}", concept(&resource["code"]))
        }
        "Observation" => {
            let value = observation_value(resource).unwrap_or_else(|| {
                let parts: Vec<String> = resource["component"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| Some(format!("{} {}", concept(&c["code"]), observation_value(c)?)))
                    .collect();
                parts.join(", ")
            });
            format!("{}: {value}{}", concept(&resource["code"]), when("effectiveDateTime"))
        }
        "DiagnosticReport" => {
            let conclusion = resource["conclusion"].as_str().map(|c| format!(": {c}")).unwrap_or_default();
            format!("{}{conclusion}{}", concept(&resource["code"]), when("effectiveDateTime"))
        }
        "Procedure" => format!("{}{}", concept(&resource["code"]), when("performedDateTime")),
        other => format!("{other} {}", concept(&resource["code"])),
    }
}

/// The IPS sections of a group of clinical resources.
fn section_of(resource_type: &str) -> &'static str {
    match resource_type {
        "Condition" => "Problems",
        "MedicationStatement" | "MedicationRequest" => "Medications",
        "AllergyIntolerance" => "Allergies and intolerances",
        "Observation" => "Results",
        "DiagnosticReport" => "Reports",
        "Procedure" => "Procedures",
        _ => "Other",
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "<p>None recorded.</p>".into();
    }
    let items: String = items.iter().map(|i| format!("<li>{}</li>", escape(i))).collect();
    format!("<ul>{items}</ul>")
}

/// The page content. `queues` are the redirect choices; `csrf` goes into every form.
/// The referral page; `consult` is its telehealth consult section, shown right after the actions.
pub fn render(
    referral: &Referral,
    user: &User,
    queues: &[Queue],
    csrf: &str,
    consult: &str,
    now: DateTime<Utc>,
) -> String {
    let task = &referral.task;
    let sr = &referral.service_request;
    let id = escape(task["id"].as_str().unwrap_or_default());
    let status = task["status"].as_str().unwrap_or_default();
    let due = task["restriction"]["period"]["end"].as_str().and_then(parse_instant);
    let authored = task["authoredOn"].as_str().and_then(parse_instant);
    let reason = sr["reasonCode"].get(0).map(concept).filter(|r| !r.is_empty()).unwrap_or_else(|| concept(&sr["code"]));
    let mut html = format!(
        r#"<p><a href="/ui/worklist">← Back to the worklist</a></p>
<h1>{kind_label}: {reason}</h1>
<p class="summary">{kind} {sla}{escalated}{consent} <span class="priority priority-{priority}">{priority}</span> · {status_text} · due {due} · queue {queue}</p>
{question}"#,
        kind_label = Kind::of(sr).label(),
        kind = Kind::of(sr).badge(),
        question = clinical_question(sr)
            .map(|q| format!(
                r#"<section class="question" aria-labelledby="h-question"><h2 id="h-question">Clinical question</h2><p>{}</p></section>
"#,
                escape(&q)
            ))
            .unwrap_or_default(),
        reason = escape(&reason),
        sla = sla_badge(sla_state(status, authored, due, now)),
        escalated = if is_escalated(task) { r#" <span class="tag escalated">Escalated</span>"# } else { "" },
        consent = if consent_withdrawn(task) { format!(" {CONSENT_WITHDRAWN_TAG}") } else { String::new() },
        priority = escape(task["priority"].as_str().unwrap_or("routine")),
        status_text = escape(status_text(status)),
        due = due
            .map(|d| format!("{} ({})", short_time(&d.to_rfc3339()), relative(d, now)))
            .unwrap_or_else(|| "—".into()),
        queue = escape(queue_of(task).unwrap_or_default()),
    );
    html.push_str(&render_actions(task, user, queues, csrf, &id));
    html.push_str(consult);
    if let Some(opinion) = &referral.opinion {
        html.push_str(&render_opinion(opinion));
    }
    html.push_str(&render_request(referral));
    html.push_str(&render_patient(referral, now));
    html.push_str(&render_summary(referral));
    html.push_str(&render_attachments(referral));
    html.push_str(&render_conversation(referral));
    html.push_str(&render_consent(referral));
    html.push_str(&render_routing(referral));
    html.push_str(&render_history(referral));
    html
}

/// The consent the referral is shared under: its state now, what it covers and for how long.
fn render_consent(referral: &Referral) -> String {
    let mut html = String::from(r#"<section aria-labelledby="h-consent"><h2 id="h-consent">Consent to share</h2>"#);
    let Some(consent) = &referral.consent else {
        let text = if task_extension(&referral.task, "task-consent").is_some() {
            "The consent this referral was shared under is no longer readable (deleted)."
        } else {
            "No consent was sent with this referral."
        };
        html.push_str(&format!("<p>{text}</p></section>\n"));
        return html;
    };
    if consent_withdrawn(&referral.task) {
        html.push_str(&format!("<p>{CONSENT_WITHDRAWN_TAG} The referral's consent no longer holds: see the history. Decide whether to go on.</p>"));
    }
    let period = &consent["provision"]["period"];
    let categories: Vec<String> = consent["category"].as_array().into_iter().flatten().map(concept).collect();
    let rows = [
        ("Status", consent["status"].as_str().unwrap_or_default().to_string()),
        ("Scope", concept(&consent["scope"])),
        ("Category", categories.join(", ")),
        ("Given", short_time(consent["dateTime"].as_str().unwrap_or_default())),
        (
            "Permits sharing",
            format!("{} to {}", period["start"].as_str().unwrap_or("—"), period["end"].as_str().unwrap_or("open end")),
        ),
    ];
    html.push_str(r#"<table class="facts">"#);
    for (label, value) in rows {
        html.push_str(&format!(r#"<tr><th scope="row">{label}</th><td>{}</td></tr>"#, escape(&value)));
    }
    html.push_str("</table></section>\n");
    html
}

fn render_actions(task: &Value, user: &User, queues: &[Queue], csrf: &str, id: &str) -> String {
    let actions = offered(task, user);
    let waiting = if task["status"] == "on-hold" {
        let since = rex_referral::workflow::hold_start(task).map(short_time).unwrap_or_default();
        format!(
            r#"<p class="paused">Waiting for the partner since {}: the SLA clock is paused and the due time moves on by the time waited when the referral resumes.</p>"#,
            escape(&since)
        )
    } else {
        String::new()
    };
    if actions.is_empty() {
        let why = match task["status"].as_str() {
            Some("on-hold") => "No action available to you while the referral waits for the partner.",
            Some("requested") => "No action available to you on this referral.",
            _ => "This referral is closed.",
        };
        return format!(
            r#"<section aria-labelledby="h-actions"><h2 id="h-actions">Actions</h2>{waiting}<p>{why}</p></section>"#
        );
    }
    let csrf = format!(r#"<input type="hidden" name="csrf" value="{}">"#, escape(csrf));
    let form = |action: &str, body: &str, button: &str| {
        format!(
            r#"<form class="action" method="post" action="/ui/referral/{id}/{action}">{csrf}{body}<button type="submit">{button}</button></form>"#
        )
    };
    let mut html = format!(
        r#"<section aria-labelledby="h-actions"><h2 id="h-actions">Actions</h2>{waiting}<div class="actions">"#
    );
    let current_queue = queue_of(task).unwrap_or_default();
    for action in actions {
        html.push_str(&match action {
            Action::Claim => form("claim", "", "Claim this referral"),
            Action::Release => form("release", "", "Release to the queue"),
            Action::Redirect => {
                // Only queues a referral may be sent to: not its own, not the sandbox (test referrals only).
                let sandbox = rex_referral::task::sandbox_queue().code;
                let options: String = queues
                    .iter()
                    .filter(|q| q.code != current_queue && q.code != sandbox)
                    .map(|q| format!(r#"<option value="{}">{}</option>"#, escape(&q.code), escape(&q.name)))
                    .collect();
                form(
                    "redirect",
                    &format!(
                        r#"<fieldset><legend>Redirect</legend><label for="redirect-queue">To queue</label><select id="redirect-queue" name="queue" required>{options}</select>
<label for="redirect-reason">Reason</label><textarea id="redirect-reason" name="reason" required rows="2"></textarea></fieldset>"#
                    ),
                    "Redirect",
                )
            }
            Action::Decline => form(
                "decline",
                r#"<fieldset><legend>Decline</legend><label for="decline-reason">Reason</label><textarea id="decline-reason" name="reason" required rows="2"></textarea></fieldset>"#,
                "Decline",
            ),
            Action::RequestInformation => form(
                "request-information",
                r#"<fieldset><legend>Request information from the partner</legend><label for="info-message">Question</label><textarea id="info-message" name="message" required rows="3"></textarea>
<label for="info-document">Also ask for a document (optional)</label><select id="info-document" name="document"><option value="">No document</option><option>Imaging report</option><option>Laboratory results</option><option>Discharge summary</option><option>Pathology report</option><option>Current medication list</option></select></fieldset>"#,
                "Send request",
            ),
            Action::Complete => format!(
                r#"<form class="action opinion" method="post" action="/ui/referral/{id}/opinion" enctype="multipart/form-data">{csrf}
<fieldset><legend>Opinion</legend>
<label for="opinion-conclusion">Conclusion</label><textarea id="opinion-conclusion" name="conclusion" required rows="5"></textarea>
<label for="opinion-system">Coded conclusion: code system</label><select id="opinion-system" name="system"><option value="http://snomed.info/sct">SNOMED CT</option><option value="http://hl7.org/fhir/sid/icd-10">ICD-10</option></select>
<label for="opinion-code">Code (optional)</label><input id="opinion-code" name="code" pattern="[A-Za-z0-9.\-]{{1,20}}">
<label for="opinion-display">Code meaning</label><input id="opinion-display" name="display">
<label for="opinion-pdf">Signed report (PDF, optional)</label><input id="opinion-pdf" name="pdf" type="file" accept="application/pdf">
</fieldset><button type="submit">Submit opinion and complete</button></form>"#
            ),
            // Not offered here: the partner's answer, revocation and booking move these.
            Action::ReceiveInformation
            | Action::Cancel
            | Action::RequestConsult
            | Action::ConsultBooked
            | Action::ConsultCancelled => String::new(),
        });
    }
    html.push_str("</div></section>\n");
    html
}

fn render_opinion(opinion: &Value) -> String {
    let codes = codings(&opinion["conclusionCode"][0]);
    let files = attachment_links(opinion);
    format!(
        r#"<section aria-labelledby="h-opinion"><h2 id="h-opinion">Opinion returned</h2><p class="conclusion">{}</p>{}{files}<p><small>Issued {}</small></p></section>
"#,
        escape(opinion["conclusion"].as_str().unwrap_or_default()),
        if codes.is_empty() { String::new() } else { list(&codes) },
        escape(&short_time(opinion["issued"].as_str().unwrap_or_default())),
    )
}

fn render_request(referral: &Referral) -> String {
    let sr = &referral.service_request;
    let mut rows = vec![
        ("Category", sr["category"].as_array().into_iter().flatten().flat_map(codings).collect::<Vec<_>>()),
        ("Requested", [concept(&sr["code"])].into_iter().chain(codings(&sr["code"])).collect()),
        ("Reason", sr["reasonCode"].as_array().into_iter().flatten().flat_map(codings).collect()),
        ("Specialty", codings(&sr["performerType"])),
        ("Priority", sr["priority"].as_str().map(String::from).into_iter().collect()),
        ("Sent", sr["authoredOn"].as_str().map(short_time).into_iter().collect()),
        ("Requester", referral.requester.clone()),
        (
            "Partner",
            vec![if referral.partner.country.is_empty() {
                referral.partner.name.clone()
            } else {
                format!("{} ({})", referral.partner.name, referral.partner.country)
            }],
        ),
        (
            "Note",
            sr["note"].as_array().into_iter().flatten().filter_map(|n| n["text"].as_str().map(String::from)).collect(),
        ),
    ];
    rows.retain(|(_, values)| values.iter().any(|v| !v.is_empty()));
    let body: String = rows
        .iter()
        .map(|(name, values)| {
            let values: Vec<String> = values.iter().filter(|v| !v.is_empty()).map(|v| escape(v)).collect();
            format!("<tr><th scope=\"row\">{name}</th><td>{}</td></tr>", values.join("<br>"))
        })
        .collect();
    format!(
        r#"<section aria-labelledby="h-request"><h2 id="h-request">Request</h2><table class="facts">{body}</table></section>
"#
    )
}

fn render_patient(referral: &Referral, now: DateTime<Utc>) -> String {
    let patient = &referral.patient;
    let task = &referral.task;
    let age = patient["birthDate"].as_str().and_then(|b| age(b, now.date_naive()));
    let language = patient["communication"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["preferred"] == true)
        .or(patient["communication"].get(0))
        .map(|c| match c["language"]["coding"][0]["code"].as_str() {
            Some(tag) => language_name(tag),
            None => concept(&c["language"]),
        })
        .unwrap_or_default();
    let interpreter = task_extension(task, "task-interpreter-required").and_then(|e| e["valueBoolean"].as_bool());
    let rows = [
        ("Sex", patient["gender"].as_str().unwrap_or("unknown").to_string()),
        (
            "Born",
            match (patient["birthDate"].as_str(), age) {
                (Some(born), Some(age)) => format!("{born} ({age} years)"),
                (Some(born), None) => born.to_string(),
                _ => String::new(),
            },
        ),
        ("Preferred language", language),
        (
            "Interpreter",
            match interpreter {
                Some(true) => "Needed".into(),
                Some(false) => "Not needed".into(),
                None => String::new(),
            },
        ),
        ("Country", patient["address"][0]["country"].as_str().unwrap_or_default().to_string()),
    ];
    let body: String = std::iter::once(("Name", patient_names_html(patient)))
        .chain(rows.iter().filter(|(_, v)| !v.is_empty()).map(|(name, value)| (*name, escape(value))))
        .map(|(name, html)| format!("<tr><th scope=\"row\">{name}</th><td>{html}</td></tr>"))
        .collect();
    format!(
        r#"<section aria-labelledby="h-patient"><h2 id="h-patient">Patient</h2><table class="facts">{body}</table></section>
"#
    )
}

/// Clinical lines grouped by IPS section, in a fixed order.
fn grouped<'a>(resources: impl Iterator<Item = &'a Value>) -> BTreeMap<(usize, &'static str), Vec<String>> {
    const ORDER: [&str; 7] =
        ["Problems", "Medications", "Allergies and intolerances", "Results", "Reports", "Procedures", "Other"];
    let mut groups: BTreeMap<(usize, &'static str), Vec<String>> = BTreeMap::new();
    for resource in resources {
        let section = section_of(resource["resourceType"].as_str().unwrap_or_default());
        let position = ORDER.iter().position(|s| *s == section).unwrap_or(ORDER.len());
        groups.entry((position, section)).or_default().push(clinical_line(resource));
    }
    groups
}

fn render_summary(referral: &Referral) -> String {
    let mut html = String::from(r#"<section aria-labelledby="h-summary"><h2 id="h-summary">Clinical summary</h2>"#);
    if referral.clinical.is_empty() {
        html.push_str("<p>The referral names no clinical data.</p>");
    }
    for ((_, section), lines) in grouped(referral.clinical.iter()) {
        html.push_str(&format!("<h3>{section}</h3>{}", list(&lines)));
    }
    for document in &referral.documents {
        html.push_str(&render_ips(document));
    }
    html.push_str("</section>\n");
    html
}

/// An IPS document: each Composition section with its entries resolved inside the document.
fn render_ips(document: &Value) -> String {
    let entries: Vec<&Value> = document["entry"].as_array().into_iter().flatten().collect();
    let Some(composition) = entries.iter().map(|e| &e["resource"]).find(|r| r["resourceType"] == "Composition") else {
        return String::new();
    };
    let resolve = |reference: &str| {
        entries.iter().find(|e| {
            e["fullUrl"] == reference || {
                let r = &e["resource"];
                reference.ends_with(&format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap_or("-"),
                    r["id"].as_str().unwrap_or("-")
                ))
            }
        })
    };
    let mut html = format!(
        r#"<h3>International Patient Summary</h3><p><small>{} · {}</small></p>"#,
        escape(composition["title"].as_str().unwrap_or("Patient summary")),
        escape(&short_time(composition["date"].as_str().unwrap_or_default()))
    );
    for section in composition["section"].as_array().into_iter().flatten() {
        let lines: Vec<String> = section["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| resolve(r["reference"].as_str()?))
            .map(|e| clinical_line(&e["resource"]))
            .collect();
        html.push_str(&format!(
            "<h4>{}</h4>{}",
            escape(section["title"].as_str().unwrap_or_else(|| section_of(""))),
            list(&lines)
        ));
    }
    html
}

/// Image types shown inside the referral page (`<img>` from `/ui/file/...`, served with the stored
/// content type and `nosniff`, so a mislabelled file is no image and never a script).
pub const INLINE_IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An attachment's content type without parameters, lower case.
pub fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Links to view (inline, e.g. PDF) and download each attachment of a resource; images of the
/// [`INLINE_IMAGE_TYPES`] are shown in the page too.
fn attachment_links(resource: &Value) -> String {
    let (Some(resource_type), Some(id)) = (resource["resourceType"].as_str(), resource["id"].as_str()) else {
        return String::new();
    };
    let items: String = attachments(resource)
        .iter()
        .enumerate()
        .map(|(index, attachment)| {
            let title = attachment["title"].as_str().unwrap_or("Attachment");
            let kind = attachment["contentType"].as_str().unwrap_or("unknown type");
            let size = attachment["size"].as_u64().map(|s| format!(", {} KB", s.div_ceil(1024))).unwrap_or_default();
            let href = format!("/ui/file/{}/{}/{index}", escape(resource_type), escape(id));
            let image = if INLINE_IMAGE_TYPES.contains(&essence(kind).as_str()) {
                format!(r#"<br><img class="attachment" src="{href}" alt="{}" loading="lazy">"#, escape(title))
            } else {
                String::new()
            };
            format!(
                r#"<li>{} <small>({}{size})</small> <a href="{href}" target="_blank" rel="noopener">View<span class="visually-hidden"> {}</span></a> · <a href="{href}?download=1" download>Download<span class="visually-hidden"> {}</span></a>{image}</li>"#,
                escape(title),
                escape(kind),
                escape(title),
                escape(title),
            )
        })
        .collect();
    if items.is_empty() { String::new() } else { format!("<ul class=\"files\">{items}</ul>") }
}

fn render_attachments(referral: &Referral) -> String {
    let mut html = String::from(r#"<section aria-labelledby="h-attachments"><h2 id="h-attachments">Attachments</h2>"#);
    if referral.attachments.is_empty() {
        html.push_str("<p>No attachments.</p>");
    }
    for document in &referral.attachments {
        let label = document["description"].as_str().map(String::from).unwrap_or_else(|| concept(&document["type"]));
        html.push_str(&format!("<h3>{}</h3>{}", escape(&label), attachment_links(document)));
    }
    html.push_str("</section>\n");
    html
}

fn render_conversation(referral: &Referral) -> String {
    let mut html = String::from(
        r#"<section aria-labelledby="h-conversation"><h2 id="h-conversation">Conversation with the partner</h2>"#,
    );
    if referral.conversation.is_empty() {
        html.push_str("<p>No messages.</p>");
    } else {
        html.push_str(r#"<ol class="conversation">"#);
        for message in &referral.conversation {
            let asks = message["category"][0]["coding"][0]["code"] == "information-request";
            let who = if asks { "Request for information (to the partner)" } else { "Answer from the partner" };
            let texts: Vec<String> = message["payload"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["contentString"].as_str())
                .map(|t| format!("<p>{}</p>", escape(t)))
                .collect();
            html.push_str(&format!(
                r#"<li class="{}"><p class="meta"><strong>{who}</strong> · {}</p>{}{}</li>"#,
                if asks { "outgoing" } else { "incoming" },
                escape(&short_time(message_time(message))),
                texts.join(""),
                attachment_links(message),
            ));
        }
        html.push_str("</ol>");
    }
    html.push_str("</section>\n");
    html
}

fn render_routing(referral: &Referral) -> String {
    let task = &referral.task;
    let rule = task_extension(task, "task-routing-rule").and_then(|e| e["valueCode"].as_str()).unwrap_or("—");
    let routed = referral.audit.iter().find(|a| a["subtype"][0]["code"] == "routed");
    let explanation =
        routed.and_then(|a| a["outcomeDesc"].as_str()).or(task["note"][0]["text"].as_str()).unwrap_or_default();
    format!(
        r#"<section aria-labelledby="h-routing"><h2 id="h-routing">Routing decision</h2><table class="facts"><tr><th scope="row">Rule</th><td>{}</td></tr><tr><th scope="row">Queue</th><td>{}</td></tr><tr><th scope="row">Why</th><td>{}</td></tr><tr><th scope="row">When</th><td>{}</td></tr></table></section>
"#,
        escape(rule),
        escape(queue_of(task).unwrap_or_default()),
        escape(explanation),
        escape(&short_time(routed.and_then(|a| a["recorded"].as_str()).unwrap_or_default())),
    )
}

fn render_history(referral: &Referral) -> String {
    let mut html = String::from(
        r#"<section aria-labelledby="h-history"><h2 id="h-history">History</h2>
<table class="history"><caption>Who did what</caption><thead><tr><th scope="col">When</th><th scope="col">Action</th><th scope="col">Who</th><th scope="col">Change</th><th scope="col">Details</th></tr></thead><tbody>"#,
    );
    for event in &referral.audit {
        let agent = &event["agent"][0];
        let who = agent["altId"]
            .as_str()
            .map(String::from)
            .or_else(|| agent["who"]["reference"].as_str().map(String::from))
            .or_else(|| agent["who"]["identifier"]["value"].as_str().map(|v| format!("partner:{v}")))
            .or_else(|| agent["who"]["display"].as_str().map(String::from))
            .unwrap_or_default();
        let details: Vec<String> = event["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["detail"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| Some(format!("{}: {}", d["type"].as_str()?, d["valueString"].as_str()?)))
            .collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&short_time(event["recorded"].as_str().unwrap_or_default())),
            escape(event["subtype"][0]["code"].as_str().unwrap_or("access")),
            escape(&who),
            escape(event["outcomeDesc"].as_str().unwrap_or_default()),
            escape(&details.join("; ")),
        ));
    }
    html.push_str(
        r#"</tbody></table>
<table class="history"><caption>Task versions</caption><thead><tr><th scope="col">Version</th><th scope="col">When</th><th scope="col">Status</th><th scope="col">Business status</th><th scope="col">Owner</th></tr></thead><tbody>"#,
    );
    for version in &referral.history {
        let owner = version["owner"]["display"].as_str().or(version["owner"]["reference"].as_str()).unwrap_or_default();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(version["meta"]["versionId"].as_str().unwrap_or_default()),
            escape(&short_time(version["meta"]["lastUpdated"].as_str().unwrap_or_default())),
            escape(status_text(version["status"].as_str().unwrap_or_default())),
            escape(&concept(&version["businessStatus"])),
            escape(owner),
        ));
    }
    html.push_str("</tbody></table></section>\n");
    html
}

/// The DiagnosticReport of an opinion on the referral, as `rex-second-opinion-report` asks.
pub fn opinion_report(referral: &Referral, user: &User, form: &OpinionForm, now: DateTime<Utc>) -> Value {
    let mut report = serde_json::json!({
        "resourceType": "DiagnosticReport",
        "meta": {"profile": ["https://rex.example/fhir/StructureDefinition/rex-second-opinion-report"]},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}], "text": "Second opinion"},
        "basedOn": [{"reference": format!("ServiceRequest/{}", referral.service_request["id"].as_str().unwrap_or_default())}],
        "subject": referral.task["for"].clone(),
        "issued": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "conclusion": form.conclusion,
    });
    let specialist = match &user.practitioner_role {
        Some(role) => serde_json::json!({"reference": role}),
        None => serde_json::json!({"display": user.subject}),
    };
    report["performer"] = serde_json::json!([specialist]);
    report["resultsInterpreter"] = serde_json::json!([specialist]);
    if let Some(code) = form.code.as_deref().filter(|c| !c.is_empty()) {
        let mut coding = serde_json::json!({"system": form.system, "code": code});
        if let Some(display) = form.display.as_deref().filter(|d| !d.is_empty()) {
            coding["display"] = serde_json::json!(display);
        }
        report["conclusionCode"] = serde_json::json!([{"coding": [coding]}]);
    }
    if let Some(pdf) = &form.pdf {
        use base64::Engine;
        report["presentedForm"] = serde_json::json!([{
            "contentType": "application/pdf",
            "data": base64::engine::general_purpose::STANDARD.encode(&pdf.bytes),
            "size": pdf.bytes.len(),
            "title": pdf.name,
        }]);
    }
    report
}

/// The opinion form's fields.
#[derive(Debug, Default)]
pub struct OpinionForm {
    pub conclusion: String,
    pub system: String,
    pub code: Option<String>,
    pub display: Option<String>,
    pub pdf: Option<Upload>,
}

/// An uploaded file.
#[derive(Debug)]
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rex_auth::StaffRole;
    use serde_json::json;

    fn specialist() -> User {
        User::development(StaffRole::Specialist, Some("PractitionerRole/dr".into()), vec!["cardiology".into()])
    }

    #[test]
    fn every_name_of_the_patient_is_shown_in_its_script() {
        let language = |tag: &str| json!([{"url": LANGUAGE_EXTENSION, "valueCode": tag}]);
        let patient = json!({"name": [
            {"use": "official", "family": "العلي", "given": ["محمد"], "extension": language("ar")},
            {"use": "official", "family": "Al-Ali", "given": ["Mohammed"], "extension": language("ar-Latn")},
            {"text": "陈大文"},
            {"text": "Chan <Tai Man>"},
            {"text": "陈大文"}
        ]});
        let html = patient_names_html(&patient);
        assert_eq!(
            html,
            [
                r#"<bdi lang="ar">محمد العلي</bdi> <span class="muted">(Arabic)</span>"#,
                r#"<bdi lang="ar-Latn">Mohammed Al-Ali</bdi> <span class="muted">(Arabic)</span>"#,
                "<bdi>陈大文</bdi>",
                "<bdi>Chan &lt;Tai Man&gt;</bdi>",
            ]
            .join("<br>")
        );
    }

    #[test]
    fn only_actions_the_state_machine_allows_are_offered() {
        let task = |status: &str, owner: &str| json!({"status": status, "owner": {"reference": owner}});
        assert_eq!(
            offered(&task("requested", "HealthcareService/cardiology"), &specialist()),
            [Action::Claim, Action::Redirect, Action::Decline]
        );
        assert_eq!(
            offered(&task("in-progress", "PractitionerRole/dr"), &specialist()),
            [Action::Release, Action::Redirect, Action::Decline, Action::RequestInformation, Action::Complete]
        );
        // Someone else's claim: nothing for a specialist, everything but claim for a coordinator.
        assert!(offered(&task("in-progress", "PractitionerRole/other"), &specialist()).is_empty());
        let coordinator = User::development(StaffRole::Coordinator, None, vec![]);
        assert_eq!(offered(&task("in-progress", "PractitionerRole/other"), &coordinator).len(), 5);
        assert_eq!(
            offered(&task("requested", "HealthcareService/x"), &coordinator),
            [Action::Redirect, Action::Decline]
        );
        // On hold: the owner can still hand it back, send it elsewhere or decline it.
        assert_eq!(
            offered(&task("on-hold", "PractitionerRole/dr"), &specialist()),
            [Action::Release, Action::Redirect, Action::Decline]
        );
        assert!(offered(&task("on-hold", "PractitionerRole/other"), &specialist()).is_empty());
        assert!(offered(&task("completed", "PractitionerRole/dr"), &specialist()).is_empty());
    }

    #[test]
    fn clinical_lines_summarise_each_kind() {
        let condition = json!({"resourceType": "Condition", "code": {"text": "Aortic stenosis"},
            "clinicalStatus": {"coding": [{"code": "active", "display": "Active"}]}, "onsetDateTime": "2024-05-01T00:00:00Z"});
        assert_eq!(clinical_line(&condition), "Aortic stenosis (active) · 2024-05-01");
        let medication = json!({"resourceType": "MedicationStatement", "medicationCodeableConcept": {"text": "Amlodipine 5 mg"},
            "dosage": [{"text": "once daily"}]});
        assert_eq!(clinical_line(&medication), "Amlodipine 5 mg: once daily");
        let blood_pressure = json!({"resourceType": "Observation", "code": {"text": "Blood pressure"}, "component": [
            {"code": {"text": "Systolic"}, "valueQuantity": {"value": 150, "unit": "mmHg"}},
            {"code": {"text": "Diastolic"}, "valueQuantity": {"value": 90, "unit": "mmHg"}}]});
        assert_eq!(clinical_line(&blood_pressure), "Blood pressure: Systolic 150 mmHg, Diastolic 90 mmHg");
        // Whole numbers (scores) are shown, in the Observation and in its components.
        let ecog = json!({"resourceType": "Observation", "code": {"text": "ECOG performance status"}, "valueInteger": 1,
            "effectiveDateTime": "2026-11-20"});
        assert_eq!(clinical_line(&ecog), "ECOG performance status: 1 · 2026-11-20");
        let pain = json!({"resourceType": "Observation", "code": {"text": "Pain"}, "component": [
            {"code": {"text": "Rest"}, "valueInteger": 3}, {"code": {"text": "Walking"}, "valueInteger": 8}]});
        assert_eq!(clinical_line(&pain), "Pain: Rest 3, Walking 8");
    }

    #[test]
    fn the_page_escapes_partner_text_and_shows_ips_sections() {
        let referral = Referral {
            task: json!({"id": "t1", "status": "in-progress", "owner": {"reference": "PractitionerRole/dr"}, "focus": {"reference": "ServiceRequest/s"}}),
            service_request: json!({"id": "s", "reasonCode": [{"text": "<script>alert(1)</script>"}],
                "category": [{"coding": [{"code": "second-opinion"}]}],
                "note": [{"text": "Severe aortic stenosis. Clinical question: TAVI or surgery <b>now</b>? Thanks."}]}),
            documents: vec![json!({"resourceType": "Bundle", "type": "document", "entry": [
                {"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Composition", "title": "IPS",
                    "section": [{"title": "Allergies", "entry": [{"reference": "urn:uuid:a"}]}]}},
                {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "AllergyIntolerance", "code": {"text": "Penicillin"}}}]})],
            attachments: vec![json!({"resourceType": "DocumentReference", "id": "d1", "description": "ECG",
                "content": [{"attachment": {"contentType": "application/pdf", "title": "ECG report", "size": 2048}},
                            {"attachment": {"contentType": "image/jpeg", "title": "Lesion \"photo\""}},
                            {"attachment": {"contentType": "image/svg+xml", "title": "Drawing"}}]})],
            ..Referral::default()
        };
        let queues = [
            Queue { code: "cardiology".into(), name: "Cardiology".into() },
            Queue { code: "oncology".into(), name: "Oncology".into() },
            Queue { code: "sandbox".into(), name: "Sandbox".into() },
        ];
        let html = render(&referral, &specialist(), &queues, "csrf-1", "", Utc::now());
        // Redirect offers the queues a referral may go to: not the sandbox, not its own.
        assert!(html.contains(r#"<option value="oncology">"#) && html.contains(r#"<option value="cardiology">"#));
        assert!(!html.contains(r#"<option value="sandbox">"#));
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
        // The kind and the clinical question come first, before the actions.
        assert!(html.contains("<h1>Second opinion: &lt;script&gt;"));
        let question = html
            .find("<h2 id=\"h-question\">Clinical question</h2><p>TAVI or surgery &lt;b&gt;now&lt;/b&gt;?</p>")
            .unwrap();
        assert!(question < html.find("h-actions").unwrap());
        assert!(html.contains("<h4>Allergies</h4><ul><li>Penicillin</li></ul>"));
        assert!(html.contains(r#"href="/ui/file/DocumentReference/d1/0""#));
        // Photos are shown in the page; other types (SVG can carry script) only as links.
        assert!(html.contains(r#"<img class="attachment" src="/ui/file/DocumentReference/d1/1" alt="Lesion &quot;photo&quot;" loading="lazy">"#));
        assert!(
            !html.contains(r#"src="/ui/file/DocumentReference/d1/2""#)
                && !html.contains(r#"src="/ui/file/DocumentReference/d1/0""#)
        );
        assert!(html.contains(r#"action="/ui/referral/t1/opinion" enctype="multipart/form-data""#));
        assert!(html.contains(r#"name="csrf" value="csrf-1""#));
        assert!(!html.contains("Claim this referral"));
    }

    #[test]
    fn the_page_shows_the_consent_and_its_withdrawal() {
        let flag = json!({"system": crate::worklist::FLAG_SYSTEM, "code": "consent-withdrawn"});
        let referral = Referral {
            task: json!({"id": "t1", "status": "requested", "meta": {"tag": [flag]},
                "extension": [{"url": rex_referral::task::extension_url("task-consent"), "valueReference": {"reference": "Consent/c1"}}]}),
            consent: Some(
                json!({"resourceType": "Consent", "status": "inactive", "scope": {"text": "Privacy Consent"},
                "category": [{"coding": [{"code": "IDSCL", "display": "information disclosure"}]}],
                "provision": {"period": {"start": "2026-11-24", "end": "2028-11-24"}}}),
            ),
            ..Referral::default()
        };
        let html = render(&referral, &specialist(), &[], "csrf-1", "", Utc::now());
        assert!(html.contains(r#"<h2 id="h-consent">Consent to share</h2>"#));
        assert!(html.contains("<td>inactive</td>") && html.contains("<td>information disclosure</td>"));
        assert!(html.contains("<td>2026-11-24 to 2028-11-24</td>"));
        assert_eq!(html.matches(CONSENT_WITHDRAWN_TAG).count(), 2, "in the summary and the consent section");
        let without = render(&Referral::default(), &specialist(), &[], "csrf-1", "", Utc::now());
        assert!(without.contains("No consent was sent with this referral."));
    }

    #[test]
    fn the_opinion_is_a_second_opinion_report() {
        let referral = Referral {
            task: json!({"for": {"reference": "Patient/p"}}),
            service_request: json!({"id": "s"}),
            ..Referral::default()
        };
        let form = OpinionForm {
            conclusion: "Surgery advised".into(),
            system: "http://snomed.info/sct".into(),
            code: Some("60573004".into()),
            display: Some("Aortic valve stenosis".into()),
            pdf: Some(Upload { name: "opinion.pdf".into(), bytes: b"%PDF-1.4".to_vec() }),
        };
        let report = opinion_report(&referral, &specialist(), &form, Utc::now());
        assert_eq!(report["basedOn"][0]["reference"], "ServiceRequest/s");
        assert_eq!(report["subject"]["reference"], "Patient/p");
        assert_eq!(report["performer"][0]["reference"], "PractitionerRole/dr");
        assert_eq!(report["conclusionCode"][0]["coding"][0]["code"], "60573004");
        assert_eq!(report["presentedForm"][0]["data"], "JVBERi0xLjQ=");
        assert_eq!(attachments(&report).len(), 1);
    }
}
