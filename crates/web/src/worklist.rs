//! The worklist: the user's queues and their referrals, most pressing due time first, with the
//! facts a specialist triages by. Building the search and the rows is pure; the handler in
//! `lib.rs` runs the search through the API.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rex_referral::task::extension_url;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{SearchPage, query};
use crate::consult::language_name;
use crate::html::{concept, escape, short_time};
use crate::session::User;
use crate::sla::{SlaState, age, duration_text, parse_instant, relative, sla_state};

/// Referrals per worklist page.
pub const PAGE_SIZE: usize = 20;
/// `meta.tag` system naming a resource's partner (set by rex-server's access rules).
pub const PARTNER_TAG_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/partner";
/// `meta.tag` system of rex's Task flags; `escalated` marks a referral escalated past its due time
/// (set by rex-server's escalation worker).
pub const FLAG_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/task-flag";
/// The Task.status values that are still being worked.
pub const OPEN_STATUSES: &str = "requested,in-progress,on-hold";

const PRIORITIES: [&str; 4] = ["stat", "asap", "urgent", "routine"];
const STATUSES: [(&str, &str); 7] = [
    ("open", "Open (all)"),
    ("requested", "Waiting in queue"),
    ("in-progress", "In progress"),
    ("on-hold", "Waiting for information"),
    ("completed", "Completed"),
    ("rejected", "Declined"),
    ("cancelled", "Cancelled"),
];

/// A review queue: its code and name (the HealthcareService of that id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    pub code: String,
    pub name: String,
}

/// The queues among HealthcareServices (those with rex's queue identifier).
pub fn queues_of(services: &[Value]) -> Vec<Queue> {
    let mut queues: Vec<Queue> = services
        .iter()
        .filter(|s| s["identifier"].as_array().into_iter().flatten().any(|i| i["system"] == rex_referral::QUEUE_SYSTEM))
        .filter_map(|s| {
            let code = s["id"].as_str()?.to_string();
            Some(Queue { name: s["name"].as_str().unwrap_or(&code).to_string(), code })
        })
        .collect();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    queues
}

/// The queues a user works: a specialist's own, everything for coordinators.
pub fn served(user: &User, all: &[Queue]) -> Vec<Queue> {
    all.iter().filter(|q| user.is_coordinator() || user.queues.contains(&q.code)).cloned().collect()
}

/// The worklist filters, from the query string; unknown values are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub language: Option<String>,
    pub status: Option<String>,
    pub page: Option<usize>,
}

impl Filters {
    /// Drops values that are not choices (so nothing odd reaches the search or the page).
    pub fn checked(self, queues: &[Queue]) -> Filters {
        let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
        Filters {
            queue: nonempty(self.queue).filter(|q| q == "mine" || queues.iter().any(|queue| &queue.code == q)),
            priority: nonempty(self.priority).filter(|p| PRIORITIES.contains(&p.as_str())),
            language: nonempty(self.language)
                .filter(|l| l.len() <= 35 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')),
            status: nonempty(self.status).filter(|s| STATUSES.iter().any(|(code, _)| code == s)),
            page: self.page,
        }
    }

    fn page(&self) -> usize {
        self.page.unwrap_or(0)
    }

    /// The filters as a query string, for paging links.
    fn link(&self, page: usize) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (name, value) in [
            ("queue", &self.queue),
            ("priority", &self.priority),
            ("language", &self.language),
            ("status", &self.status),
        ] {
            if let Some(value) = value {
                pairs.push((name, value.clone()));
            }
        }
        pairs.push(("page", page.to_string()));
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        format!("/ui/worklist?{}", query(&pairs))
    }
}

/// The Task search of a worklist page (relative to the FHIR base): due time first, with the
/// patients and ServiceRequests included. Specialists' searches name their queues and their own
/// PractitionerRole (the API narrows them to those anyway); coordinators search every queue.
pub fn task_search(user: &User, queues: &[Queue], filters: &Filters) -> String {
    let mine = user.practitioner_role.clone();
    let owners: Vec<String> = match filters.queue.as_deref() {
        Some("mine") => mine.into_iter().collect(),
        Some(queue) => vec![format!("HealthcareService/{queue}")],
        None if user.is_coordinator() => Vec::new(),
        None => queues.iter().map(|q| format!("HealthcareService/{}", q.code)).chain(mine).collect(),
    };
    let status = match filters.status.as_deref() {
        None | Some("open") => OPEN_STATUSES.to_string(),
        Some(status) => status.to_string(),
    };
    let (count, offset) = (PAGE_SIZE.to_string(), (filters.page() * PAGE_SIZE).to_string());
    let owner = owners.join(",");
    let mut pairs = vec![("status", status.as_str())];
    if !owner.is_empty() {
        pairs.push(("owner", &owner));
    } else if filters.queue.is_some() || !user.is_coordinator() {
        // A filter that names nobody (no PractitionerRole, or a specialist without queues) matches nothing.
        pairs.push(("_id", "none"));
    }
    if let Some(priority) = &filters.priority {
        pairs.push(("priority", priority));
    }
    if let Some(language) = &filters.language {
        pairs.push(("patient-language", language));
    }
    pairs.extend([
        ("_sort", "due"),
        ("_count", &count),
        ("_offset", &offset),
        ("_total", "accurate"),
        ("_include", "Task:patient"),
        ("_include", "Task:focus"),
    ]);
    format!("Task?{}", query(&pairs))
}

/// A partner's name and country, from its Organization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partner {
    pub name: String,
    pub country: String,
}

/// The partner of a resource: its rex partner tag.
pub fn partner_of(resource: &Value) -> Option<&str> {
    resource["meta"]["tag"]
        .as_array()?
        .iter()
        .find(|tag| tag["system"] == PARTNER_TAG_SYSTEM)
        .and_then(|tag| tag["code"].as_str())
}

/// Partner ids to their Organization's name and country (the Organizations found by their
/// `https://rex.example/partners` identifier).
pub fn partners_of(organizations: &[Value]) -> BTreeMap<String, Partner> {
    let mut partners = BTreeMap::new();
    for organization in organizations {
        let identifiers = organization["identifier"].as_array().into_iter().flatten();
        for identifier in identifiers.filter(|i| i["system"] == rex_referral::PARTNER_SYSTEM) {
            let Some(id) = identifier["value"].as_str() else { continue };
            partners.insert(
                id.to_string(),
                Partner {
                    name: organization["name"].as_str().unwrap_or(id).to_string(),
                    country: organization["address"][0]["country"].as_str().unwrap_or_default().to_string(),
                },
            );
        }
    }
    partners
}

/// Whether rex escalated the referral Task (past its due time).
pub fn is_escalated(task: &Value) -> bool {
    has_flag(task, "escalated")
}

/// Whether rex flagged the referral Task because the consent it is shared under was withdrawn or
/// has expired.
pub fn consent_withdrawn(task: &Value) -> bool {
    has_flag(task, "consent-withdrawn")
}

fn has_flag(task: &Value, code: &str) -> bool {
    task["meta"]["tag"].as_array().into_iter().flatten().any(|t| t["system"] == FLAG_SYSTEM && t["code"] == code)
}

/// The tag shown beside a referral whose consent no longer holds.
pub const CONSENT_WITHDRAWN_TAG: &str = r#"<span class="tag escalated">Consent withdrawn</span>"#;

/// The value of one of rex's Task extensions.
pub fn task_extension<'a>(task: &'a Value, name: &str) -> Option<&'a Value> {
    let url = extension_url(name);
    task["extension"].as_array()?.iter().find(|e| e["url"] == url.as_str())
}

pub use rex_referral::task::queue_of;

/// What a referral asks for, told apart at a glance on the worklist and the referral page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Referral,
    SecondOpinion,
}

impl Kind {
    /// A second opinion when a category coding is `second-opinion` (rex's referral category).
    pub fn of(service_request: &Value) -> Kind {
        let codes = service_request["category"].as_array().into_iter().flatten();
        let mut codings = codes.flat_map(|c| c["coding"].as_array().into_iter().flatten());
        if codings.any(|c| c["code"] == "second-opinion") { Kind::SecondOpinion } else { Kind::Referral }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Referral => "Referral",
            Kind::SecondOpinion => "Second opinion",
        }
    }

    /// The label as a badge (its words, never colour alone).
    pub fn badge(self) -> String {
        let class = match self {
            Kind::Referral => "kind-referral",
            Kind::SecondOpinion => "kind-second-opinion",
        };
        format!(r#"<span class="kind {class}">{}</span>"#, self.label())
    }
}

/// The clinical question of a referral, from its notes: the sentence after "Clinical question:"
/// when a note has that marker, else the first sentence that asks (a "?", "please", "second
/// opinion", "evaluate"), else the first note. `None` without notes.
pub fn clinical_question(service_request: &Value) -> Option<String> {
    let notes: Vec<&str> = service_request["note"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["text"].as_str())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    const MARKER: &str = "clinical question:";
    for note in &notes {
        if let Some(at) = note.to_lowercase().find(MARKER)
            && let Some(rest) = note.get(at + MARKER.len()..)
        {
            return sentences(rest.trim()).into_iter().next();
        }
    }
    let asks = |sentence: &&str| {
        let lower = sentence.to_lowercase();
        ["?", "please", "second opinion", "evaluate", "advice on"].iter().any(|cue| lower.contains(cue))
    };
    notes
        .iter()
        .flat_map(|note| sentences(note))
        .find(|s| asks(&s.as_str()))
        .or_else(|| notes.first().map(|n| n.to_string()))
}

/// The sentences of a text: split after ". ", "? " or "! " before a capital letter or digit.
fn sentences(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for window in chars.windows(3) {
        let [(_, end), (_, space), (next_at, next)] = window else { continue };
        if ".?!".contains(*end) && *space == ' ' && (next.is_uppercase() || next.is_ascii_digit()) {
            found.push(text[start..*next_at].trim().to_string());
            start = *next_at;
        }
    }
    found.push(text[start..].trim().to_string());
    found.retain(|s| !s.is_empty());
    found
}

/// `text` on one line of at most `max` characters, cut at a word with "…".
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head).trim_end_matches([',', ';', ':', '.']);
    format!("{cut}…")
}

/// Words for a kind of partner change (`$partner-updates`).
pub fn update_text(kind: &str) -> &'static str {
    match kind {
        "information-received" => "Updated: answer received",
        "attachment" => "Updated: new attachment",
        _ => "Updated: referral amended",
    }
}

/// Task ids to the kind of their partner change not yet seen by their assigned specialist, from
/// the answer of `Task/$partner-updates`.
pub fn unseen_updates(answer: &Value) -> BTreeMap<String, String> {
    let mut unseen = BTreeMap::new();
    for update in answer["parameter"].as_array().into_iter().flatten().filter(|p| p["name"] == "update") {
        let parts = update["part"].as_array().cloned().unwrap_or_default();
        let part = |name: &str| parts.iter().find(|p| p["name"] == name).cloned().unwrap_or_default();
        if part("seen")["valueBoolean"] == true {
            continue;
        }
        let task = part("task")["valueReference"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Task/"))
            .map(String::from);
        if let (Some(task), Some(kind)) = (task, part("kind")["valueCode"].as_str()) {
            unseen.insert(task, kind.to_string());
        }
    }
    unseen
}

/// One worklist line, computed from the Task and what the search included.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub task_id: String,
    pub status: String,
    pub priority: String,
    pub sla: Option<SlaState>,
    pub escalated: bool,
    pub consent_withdrawn: bool,
    pub due: Option<DateTime<Utc>>,
    pub waiting: Option<Duration>,
    pub reason: String,
    pub kind: Kind,
    /// The clinical question, on one line.
    pub question: String,
    /// The partner's change the assigned specialist has not opened yet (`update_text`).
    pub updated: Option<String>,
    pub age: Option<u32>,
    pub sex: String,
    pub language: String,
    pub interpreter: Option<bool>,
    pub partner: Partner,
    pub queue: String,
}

/// Characters of the clinical question on a worklist row.
const QUESTION_CHARS: usize = 110;

/// The row of `task`, its ServiceRequest and Patient looked up among `page`'s resources; `updates`
/// are the unseen partner changes by Task id.
pub fn row(
    task: &Value,
    page: &SearchPage,
    partners: &BTreeMap<String, Partner>,
    updates: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Row {
    let status = task["status"].as_str().unwrap_or_default().to_string();
    let authored = task["authoredOn"].as_str().and_then(parse_instant);
    let due = task["restriction"]["period"]["end"].as_str().and_then(parse_instant);
    let service_request = task["focus"]["reference"].as_str().and_then(|r| page.find(r)).cloned().unwrap_or_default();
    let patient = task["for"]["reference"].as_str().and_then(|r| page.find(r)).cloned().unwrap_or_default();
    let reason = service_request["reasonCode"]
        .get(0)
        .map(concept)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| concept(&service_request["code"]));
    let partner_id = partner_of(task).unwrap_or_default();
    let task_id = task["id"].as_str().unwrap_or_default().to_string();
    Row {
        updated: updates.get(&task_id).map(|kind| update_text(kind).to_string()),
        task_id,
        sla: sla_state(&status, authored, due, now),
        escalated: is_escalated(task),
        consent_withdrawn: consent_withdrawn(task),
        status,
        priority: task["priority"].as_str().unwrap_or("routine").to_string(),
        due,
        waiting: authored.map(|a| now - a),
        reason: if reason.is_empty() { "Referral".into() } else { reason },
        kind: Kind::of(&service_request),
        question: clinical_question(&service_request).map(|q| one_line(&q, QUESTION_CHARS)).unwrap_or_default(),
        age: patient["birthDate"].as_str().and_then(|b| age(b, now.date_naive())),
        sex: patient["gender"].as_str().unwrap_or("unknown").to_string(),
        language: task_extension(task, "task-patient-language")
            .and_then(|e| e["valueCode"].as_str())
            .unwrap_or_default()
            .to_string(),
        interpreter: task_extension(task, "task-interpreter-required").and_then(|e| e["valueBoolean"].as_bool()),
        partner: partners
            .get(partner_id)
            .cloned()
            .unwrap_or_else(|| Partner { name: partner_id.to_string(), country: String::new() }),
        queue: queue_of(task).unwrap_or_default().to_string(),
    }
}

/// Human words for a Task.status.
pub fn status_text(status: &str) -> &str {
    STATUSES.iter().find(|(code, _)| *code == status).map_or(status, |(_, text)| text)
}

/// The SLA badge: colour and words.
pub fn sla_badge(state: Option<SlaState>) -> String {
    match state {
        Some(state) => format!(r#"<span class="badge {}">{}</span>"#, state.class(), state.label()),
        None => r#"<span class="badge sla-none">No clock</span>"#.into(),
    }
}

fn option(value: &str, text: &str, selected: bool) -> String {
    let selected = if selected { " selected" } else { "" };
    format!(r#"<option value="{}"{selected}>{}</option>"#, escape(value), escape(text))
}

/// The worklist page's content.
pub fn render(
    queues: &[Queue],
    filters: &Filters,
    rows: &[Row],
    total: Option<u64>,
    has_next: bool,
    user: &User,
    now: DateTime<Utc>,
) -> String {
    let mut html = String::from("<h1>Worklist</h1>\n");
    let names: Vec<String> = queues.iter().map(|q| escape(&q.name)).collect();
    html.push_str(&format!(
        r#"<p class="queues">Your queues: {}</p>"#,
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    ));
    // Filters: a GET form (no personal data in it), usable without a script.
    let mut queue_options = option("", "All your queues", filters.queue.is_none());
    if user.practitioner_role.is_some() {
        queue_options.push_str(&option("mine", "Claimed by me", filters.queue.as_deref() == Some("mine")));
    }
    for queue in queues {
        queue_options.push_str(&option(&queue.code, &queue.name, filters.queue.as_deref() == Some(&queue.code)));
    }
    let mut priority_options = option("", "Any", filters.priority.is_none());
    for priority in PRIORITIES {
        priority_options.push_str(&option(priority, priority, filters.priority.as_deref() == Some(priority)));
    }
    let mut status_options = String::new();
    for (code, text) in STATUSES {
        let selected = filters.status.as_deref().unwrap_or("open") == code;
        status_options.push_str(&option(code, text, selected));
    }
    html.push_str(&format!(
        r#"<form class="filters" method="get" action="/ui/worklist" aria-label="Filter referrals">
<div><label for="f-queue">Queue</label><select id="f-queue" name="queue">{queue_options}</select></div>
<div><label for="f-priority">Priority</label><select id="f-priority" name="priority">{priority_options}</select></div>
<div><label for="f-language">Language (BCP-47, e.g. es)</label><input id="f-language" name="language" value="{language}" size="8" pattern="[A-Za-z0-9-]{{1,35}}"></div>
<div><label for="f-status">Status</label><select id="f-status" name="status">{status_options}</select></div>
<div><button type="submit">Apply filters</button></div>
</form>
"#,
        language = escape(filters.language.as_deref().unwrap_or_default()),
    ));
    let count = match total {
        Some(total) => format!("{total} referral{}", if total == 1 { "" } else { "s" }),
        None => format!("{} referrals on this page", rows.len()),
    };
    html.push_str(&format!(r#"<p class="count" id="count">{count}, due first.</p>"#));
    if rows.is_empty() {
        html.push_str("<p>No referral matches.</p>");
    } else {
        html.push_str(
            r#"<table class="worklist" aria-describedby="count">
<caption class="visually-hidden">Referrals, sorted by due time</caption>
<thead><tr><th scope="col">SLA</th><th scope="col">Due / waiting</th><th scope="col">Priority</th><th scope="col">Referral and clinical question</th><th scope="col">Patient</th><th scope="col">Partner</th><th scope="col">Status / queue</th></tr></thead>
<tbody>
"#,
        );
        for row in rows {
            html.push_str(&render_row(row, now));
        }
        html.push_str("</tbody></table>\n");
    }
    let page = filters.page();
    let mut paging = Vec::new();
    if page > 0 {
        paging.push(format!(r#"<a href="{}" rel="prev">Previous page</a>"#, escape(&filters.link(page - 1))));
    }
    if has_next {
        paging.push(format!(r#"<a href="{}" rel="next">Next page</a>"#, escape(&filters.link(page + 1))));
    }
    if !paging.is_empty() {
        html.push_str(&format!(
            r#"<nav class="paging" aria-label="Pages"><span>Page {}</span> {}</nav>"#,
            page + 1,
            paging.join(" ")
        ));
    }
    html
}

/// One row of two lines (the question under the reason, the waiting time under the due time, the
/// interpreter under the patient, the country under the partner, the queue under the status), so
/// a screen holds many and 1366 pixels hold every column.
fn render_row(row: &Row, now: DateTime<Utc>) -> String {
    let line = |first: String, second: String| {
        if second.is_empty() { first } else { format!(r#"{first}<div class="second">{second}</div>"#) }
    };
    let due = row
        .due
        .map(|d| {
            format!(
                r#"<time datetime="{}" title="{}">{}</time>"#,
                d.to_rfc3339(),
                short_time(&d.to_rfc3339()),
                escape(&relative(d, now))
            )
        })
        .unwrap_or_default();
    let waiting = row.waiting.map(|w| format!("waiting {}", duration_text(w))).unwrap_or_default();
    let mut escalated = if row.escalated { r#"<span class="tag escalated">Escalated</span>"# } else { "" }.to_string();
    if row.consent_withdrawn {
        escalated.push_str(CONSENT_WITHDRAWN_TAG);
    }
    let interpreter = match row.interpreter {
        Some(true) => r#"<span class="tag">Interpreter needed</span>"#,
        _ => "",
    };
    let updated = row
        .updated
        .as_deref()
        .map(|text| format!(r#" <span class="tag updated">{}</span>"#, escape(text)))
        .unwrap_or_default();
    let mut patient = match row.age {
        Some(age) => format!("{age} y, {}", row.sex),
        None => row.sex.clone(),
    };
    if !row.language.is_empty() {
        // The language without its region keeps the row narrow; the referral page has both.
        let language = row.language.split('-').next().unwrap_or_default();
        patient.push_str(&format!(" · {}", language_name(language)));
    }
    let reason = format!(
        r#"<div class="reason">{} <a href="/ui/referral/{}">{}</a>{updated}</div>"#,
        row.kind.badge(),
        escape(&row.task_id),
        escape(&row.reason)
    );
    let question = if row.question.is_empty() {
        String::new()
    } else {
        format!(r#"<div class="question">{}</div>"#, escape(&row.question))
    };
    format!(
        r#"<tr class="{row_class}"><td>{sla}</td><td>{due}</td><td><span class="priority priority-{priority}">{priority}</span></td><td class="referral">{reason}{question}</td><td>{patient}</td><td class="partner" title="{partner_name}">{partner}</td><td>{status}</td></tr>
"#,
        row_class = row.sla.map_or("", SlaState::class),
        sla = line(sla_badge(row.sla), escalated),
        due = line(due, escape(&waiting)),
        priority = escape(&row.priority),
        patient = line(escape(&patient), interpreter.to_string()),
        partner_name = escape(&row.partner.name),
        partner = line(escape(&row.partner.name), escape(&row.partner.country)),
        status = line(escape(status_text(&row.status)), escape(&row.queue)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rex_auth::StaffRole;
    use serde_json::json;

    fn queues() -> Vec<Queue> {
        vec![
            Queue { code: "cardiology".into(), name: "Cardiology review".into() },
            Queue { code: "oncology".into(), name: "Oncology review".into() },
        ]
    }

    #[test]
    fn specialists_search_their_queues_and_own_claims() {
        let user =
            User::development(StaffRole::Specialist, Some("PractitionerRole/dr".into()), vec!["cardiology".into()]);
        let served = served(&user, &queues());
        assert_eq!(served.len(), 1);
        let search = task_search(&user, &served, &Filters::default());
        assert!(search.starts_with("Task?status=requested%2Cin-progress%2Con-hold&owner=HealthcareService%2Fcardiology%2CPractitionerRole%2Fdr&"), "{search}");
        assert!(search.contains("_sort=due&_count=20&_offset=0"));
        let filters =
            Filters { priority: Some("stat".into()), language: Some("es".into()), page: Some(2), ..Filters::default() };
        let search = task_search(&user, &served, &filters);
        assert!(search.contains("&priority=stat&patient-language=es&") && search.contains("_offset=40"), "{search}");
        let nobody = User::development(StaffRole::Specialist, None, vec![]);
        assert!(task_search(&nobody, &[], &Filters::default()).contains("_id=none"));
    }

    #[test]
    fn coordinators_search_every_queue_unless_filtered() {
        let user = User::development(StaffRole::Coordinator, None, vec![]);
        assert_eq!(served(&user, &queues()).len(), 2);
        assert!(!task_search(&user, &queues(), &Filters::default()).contains("owner="));
        let filters = Filters { queue: Some("oncology".into()), ..Filters::default() }.checked(&queues());
        assert!(task_search(&user, &queues(), &filters).contains("owner=HealthcareService%2Foncology"));
    }

    #[test]
    fn unknown_filter_values_are_dropped() {
        let filters = Filters {
            queue: Some("astrology".into()),
            priority: Some("whenever".into()),
            language: Some("es\"><script>".into()),
            status: Some("".into()),
            page: None,
        }
        .checked(&queues());
        assert_eq!((filters.queue, filters.priority, filters.language, filters.status), (None, None, None, None));
    }

    #[test]
    fn rows_combine_task_patient_request_and_partner() {
        let now = parse_instant("2026-03-14T12:00:00Z").unwrap();
        let task = json!({"resourceType": "Task", "id": "t1", "status": "requested", "priority": "stat",
            "meta": {"tag": [{"system": PARTNER_TAG_SYSTEM, "code": "hospital-a"}, {"system": FLAG_SYSTEM, "code": "escalated"},
                             {"system": FLAG_SYSTEM, "code": "consent-withdrawn"}]},
            "extension": [{"url": extension_url("task-patient-language"), "valueCode": "es-MX"},
                          {"url": extension_url("task-interpreter-required"), "valueBoolean": true}],
            "focus": {"reference": "ServiceRequest/s1"}, "for": {"reference": "Patient/p1"},
            "owner": {"reference": "HealthcareService/cardiology"},
            "authoredOn": "2026-03-14T09:00:00Z", "restriction": {"period": {"end": "2026-03-14T13:00:00Z"}}});
        let page = SearchPage {
            matches: vec![task.clone()],
            included: vec![
                json!({"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1968-03-14"}),
                json!({"resourceType": "ServiceRequest", "id": "s1", "reasonCode": [{"coding": [{"display": "NSTEMI", "code": "I21.4"}]}],
                       "performerType": {"coding": [{"display": "Cardiology"}]}}),
            ],
            total: Some(1),
            has_next: false,
        };
        let organizations = [json!({"resourceType": "Organization", "name": "Hospital A",
            "identifier": [{"system": rex_referral::PARTNER_SYSTEM, "value": "hospital-a"}], "address": [{"country": "MX"}]})];
        let updates = BTreeMap::from([("t1".to_string(), "information-received".to_string())]);
        let row = row(&task, &page, &partners_of(&organizations), &updates, now);
        assert_eq!(row.sla, Some(SlaState::DueSoon));
        assert_eq!((row.age, row.sex.as_str(), row.language.as_str()), (Some(58), "male", "es-MX"));
        assert_eq!(row.interpreter, Some(true));
        assert!(row.escalated && row.consent_withdrawn);
        assert_eq!(row.partner, Partner { name: "Hospital A".into(), country: "MX".into() });
        assert_eq!(row.waiting, Some(Duration::hours(3)));
        assert!(row.reason.starts_with("NSTEMI"));
        assert_eq!(row.queue, "cardiology");
        let user =
            User::development(StaffRole::Specialist, Some("PractitionerRole/dr".into()), vec!["cardiology".into()]);
        let html = render(&queues(), &Filters::default(), &[row], Some(1), true, &user, now);
        assert!(html.contains(r#"<span class="badge sla-due-soon">Due soon</span>"#));
        assert!(html.contains(r#"<a href="/ui/referral/t1">NSTEMI"#));
        assert!(html.contains("Interpreter needed"));
        assert!(html.contains(r#"Hospital A<div class="second">MX</div>"#), "{html}");
        assert!(html.contains(r#"<span class="tag escalated">Escalated</span>"#));
        assert!(html.contains(r#"<span class="kind kind-referral">Referral</span> <a href="/ui/referral/t1">"#));
        assert!(html.contains(r#"Waiting in queue<div class="second">cardiology</div>"#));
        assert!(html.contains(r#"<span class="tag updated">Updated: answer received</span>"#));
        assert!(html.contains("58 y, male · Spanish"), "{html}");
        assert!(html.contains(CONSENT_WITHDRAWN_TAG));
        assert!(html.contains(r#"href="/ui/worklist?page=1" rel="next""#));
        assert!(html.contains(r#"<label for="f-queue">Queue</label>"#));
    }

    #[test]
    fn the_clinical_question_is_found_in_the_notes() {
        let note = |text: &str| json!({"note": [{"text": text}, {"text": "Family travels with him."}]});
        let marked = note(
            "58-year-old man, hs-TnI 48 -> 312 ng/L. Clinical question: please accept for invasive angiography within 24 h (very high risk). Contrast allergy.",
        );
        assert_eq!(
            clinical_question(&marked).as_deref(),
            Some("please accept for invasive angiography within 24 h (very high risk).")
        );
        let asking = note(
            "75-year-old woman with aortic stenosis. STS-PROM 4.1%. The family asks for an independent second opinion: TAVI versus AVR. Arabic interpreter required.",
        );
        assert_eq!(
            clinical_question(&asking).as_deref(),
            Some("The family asks for an independent second opinion: TAVI versus AVR.")
        );
        let plain = note("Knee osteoarthritis, failed physiotherapy.");
        assert_eq!(clinical_question(&plain).as_deref(), Some("Knee osteoarthritis, failed physiotherapy."));
        assert_eq!(clinical_question(&json!({})), None);
        assert_eq!(
            one_line("Is early   surgery indicated\nfor this VSD?", 100),
            "Is early surgery indicated for this VSD?"
        );
        assert_eq!(one_line("Please evaluate for early surgical closure", 20), "Please evaluate for…");
    }

    #[test]
    fn second_opinions_are_told_from_referrals() {
        let second = json!({"category": [{"coding": [{"system": "https://rex.example/fhir/CodeSystem/referral-category", "code": "second-opinion"}]}]});
        assert_eq!(Kind::of(&second), Kind::SecondOpinion);
        assert!(Kind::of(&second).badge().contains("Second opinion"));
        let referral = json!({"category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}]});
        assert_eq!(Kind::of(&referral), Kind::Referral);
    }

    #[test]
    fn only_unseen_partner_updates_mark_a_row() {
        let update = |task: &str, kind: &str, seen: bool| {
            json!({"name": "update", "part": [{"name": "task", "valueReference": {"reference": format!("Task/{task}")}},
                {"name": "kind", "valueCode": kind}, {"name": "time", "valueInstant": "2026-01-01T00:00:00Z"},
                {"name": "seen", "valueBoolean": seen}]})
        };
        let answer = json!({"resourceType": "Parameters", "parameter": [update("a", "amended", false), update("b", "attachment", true)]});
        let unseen = unseen_updates(&answer);
        assert_eq!(unseen.len(), 1);
        assert_eq!(update_text(&unseen["a"]), "Updated: referral amended");
        assert_eq!(update_text("attachment"), "Updated: new attachment");
    }

    #[test]
    fn a_claimed_task_keeps_its_queue() {
        let task = json!({"owner": {"reference": "PractitionerRole/dr"},
            "extension": [{"url": extension_url("task-queue"), "valueReference": {"reference": "HealthcareService/oncology"}}]});
        assert_eq!(queue_of(&task), Some("oncology"));
    }
}
