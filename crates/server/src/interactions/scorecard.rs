//! The partner conformance scorecard: what each partner submits and what it keeps getting wrong.
//!
//! Recording: every Bundle a partner POSTs to the base or to `$process-message` is recorded after
//! it was answered ([`record`]): partner, time, kind, accepted or refused with the HTTP status, and
//! each issue of the answer as severity, code, location, a normalised rule key and the profile when
//! the issue names one. Never the issue text, which can quote values of the refused content. A
//! refused submission wrote nothing else, so its record is a small write of its own; an accepted
//! one is recorded in a separate write after the intake committed (a crash between the two loses
//! that submission's record, never the referral).
//!
//! Reading: `GET /fhir/$partner-scorecard?partner=ID&period=...` ([`operation`]) answers a FHIR
//! `Parameters` resource or CSV; `rex report scorecard` prints the same [`Scorecard`] for a terminal.

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate};
use rex_auth::{Principal, StaffRole};
use rex_fhir::datetime::parse_date_range;
use rex_fhir::{Issue, IssueCode, Rule};
use rex_i18n::{Message, msg};
use rex_referral::task::AUDIT_SYSTEM;
use rex_referral::workflow::Action;
use rex_store::{
    ProfileClaimCount, RuleCount, Store, StoreError, Submission, SubmissionCount, SubmissionIssue, now_micros,
};
use serde_json::{Value, json};

use super::query_pairs;
use crate::AppState;
use crate::access::Caller;
use crate::bundles::AnswerBundle;
use crate::error::ApiError;
use crate::http::{check_accept, fhir_json};

const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_SECOND: i64 = 1_000_000;

/// The rule key of an issue about a profile claimed in `meta.profile` that rex does not know.
const UNKNOWN_PROFILE_RULE: &str = "unknown-profile";

/// How many failing rules a scorecard lists.
const TOP_RULES: usize = 10;

/// Without `period`, a scorecard covers this many days up to now.
pub const DEFAULT_DAYS: i64 = 30;

/// The trend lists at most this many days (the last ones of the period); totals cover it all.
const MAX_TREND_DAYS: i64 = 366;

/// Locations and rule keys are cut to this many characters.
const MAX_LOCATION_CHARS: usize = 200;

/// The workflow operations that count as a specialist's first action on a referral.
const SPECIALIST_ACTIONS: [Action; 6] =
    [Action::Claim, Action::Release, Action::Redirect, Action::Decline, Action::RequestInformation, Action::Complete];

/// Where a submission was posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The FHIR base: transaction and batch Bundles.
    Base,
    /// `$process-message`: every submission there counts as a message, readable or not.
    ProcessMessage,
}

/// How rex answered a submission.
pub enum Answer<'a> {
    /// A 2xx answer with the issues of its entries' outcomes: a batch-response carries those of its
    /// failed entries.
    Accepted(&'a [Issue]),
    Refused(&'a ApiError),
}

impl<'a> From<&'a Result<AnswerBundle, ApiError>> for Answer<'a> {
    /// A transaction or batch Bundle's answer: the response Bundle or the error.
    fn from(result: &'a Result<AnswerBundle, ApiError>) -> Answer<'a> {
        match result {
            Ok(response) => Answer::Accepted(response.entry_issues()),
            Err(err) => Answer::Refused(err),
        }
    }
}

/// Records a partner's submission to `endpoint` received at `received` (microseconds) and
/// answered with `answer`; `bundle` is the submitted Bundle when it could be read. Callers other
/// than partners are not recorded. A failure to record is logged and does not change the answer.
pub async fn record(
    state: &AppState,
    caller: &Caller,
    endpoint: Endpoint,
    received: i64,
    bundle: Option<&Value>,
    answer: Answer<'_>,
) {
    let Some(partner) = caller.partner() else { return };
    let (status, issues) = match answer {
        Answer::Refused(err) => {
            let issues = err.issues.iter().map(|issue| issue_row(issue, bundle)).collect();
            (err.status, issues)
        }
        Answer::Accepted(entry_issues) => (StatusCode::OK, batch_entry_issues(entry_issues, bundle)),
    };
    let kind = match (endpoint, bundle.and_then(|b| b["type"].as_str())) {
        (Endpoint::ProcessMessage, _) => "message",
        (Endpoint::Base, Some(kind @ ("transaction" | "batch"))) => kind,
        (Endpoint::Base, _) => "other",
    };
    let submission = Submission {
        partner: partner.to_string(),
        received,
        kind: kind.to_string(),
        accepted: status.is_success(),
        status: status.as_u16(),
        issue_count: issues.len(),
        issues,
    };
    if let Err(err) = state.store.record_submission(&submission).await {
        tracing::warn!(error = %err, partner, "cannot record the submission for the scorecard");
    }
}

/// The issues of the failed entries of a batch-response, and the warnings about unknown profile
/// claims of a transaction-response's entries.
fn batch_entry_issues(entry_issues: &[Issue], bundle: Option<&Value>) -> Vec<SubmissionIssue> {
    entry_issues
        .iter()
        .filter(|issue| issue.is_error() || matches!(issue.rule.as_deref(), Some(Rule::UnknownProfileClaim { .. })))
        .map(|issue| issue_row(issue, bundle))
        .collect()
}

/// What is kept of an issue: its rule and location, never its text.
fn issue_row(issue: &Issue, bundle: Option<&Value>) -> SubmissionIssue {
    let code = issue.code.as_str();
    let location = issue.expression.as_deref();
    let rule = match issue.rule.as_deref() {
        Some(Rule::UnknownProfileClaim { .. }) => UNKNOWN_PROFILE_RULE.to_string(),
        Some(Rule::Constraint { key, .. }) => key.clone(),
        // A slice that is missing or too often is named by its element id, not by the location (the list).
        Some(Rule::Slice { element, name, .. }) => {
            format!("{code}@{}", element_path(&format!("{element}:{name}"), None))
        }
        _ => match location {
            Some(location) => format!("{code}@{}", element_path(location, bundle)),
            None => code.to_string(),
        },
    };
    let profile = match issue.rule.as_deref() {
        Some(Rule::UnknownProfileClaim { url }) => Some(url.as_str()),
        rule => rule
            .and_then(Rule::structure_definition)
            .filter(|url| url.starts_with("http") && url.contains("/StructureDefinition/") && url.len() <= 255),
    };
    SubmissionIssue {
        severity: issue.severity.as_str().to_string(),
        code: code.to_string(),
        rule: truncate(&rule),
        location: location.map(truncate),
        profile: profile.map(truncate),
    }
}

/// The element a location names, the same for every submission: the Bundle entry's resource type
/// instead of `Bundle.entry[N].resource`, and no list indexes
/// (`Bundle.entry[3].resource.name[0].family` of a Patient is `Patient.name.family`).
fn element_path(expression: &str, bundle: Option<&Value>) -> String {
    let typed = expression
        .strip_prefix("Bundle.entry[")
        .and_then(|rest| rest.split_once("].resource"))
        .filter(|(_, rest)| rest.is_empty() || rest.starts_with('.'))
        .and_then(|(index, rest)| {
            let resource_type = bundle?["entry"][index.parse::<usize>().ok()?]["resource"]["resourceType"].as_str()?;
            resource_type.chars().all(|c| c.is_ascii_alphabetic()).then(|| format!("{resource_type}{rest}"))
        })
        .unwrap_or_else(|| expression.to_string());
    let mut element = String::with_capacity(typed.len());
    let mut depth = 0;
    for c in typed.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => element.push(c),
            _ => {}
        }
    }
    element
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_LOCATION_CHARS).collect()
}

/// A time span `[from, to)` in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: i64,
    pub to: i64,
}

impl Period {
    /// The last [`DEFAULT_DAYS`] UTC days, today included, up to `now`.
    pub fn recent(now: i64) -> Period {
        Period { from: (now.div_euclid(MICROS_PER_DAY) - (DEFAULT_DAYS - 1)) * MICROS_PER_DAY, to: now + 1 }
    }

    /// `period` as the operation takes it: a FHIR date (`2026-11`: that month), `START/END` (FHIR
    /// dates, both included), or `START/` (until `now`).
    pub fn parse(text: &str, now: i64) -> Result<Period, Message> {
        let date = |part: &str| parse_date_range(part).ok_or_else(|| msg!("scorecard-date", value = part));
        let period = match text.split_once('/') {
            None => {
                let (from, last) = date(text)?;
                Period { from, to: last + 1 }
            }
            Some((start, "")) => Period { from: date(start)?.0, to: now + 1 },
            Some((start, end)) => Period { from: date(start)?.0, to: date(end)?.1 + 1 },
        };
        if period.from >= period.to {
            return Err(msg!("scorecard-period-reversed", period = text));
        }
        Ok(period)
    }
}

/// Whether a rule is a follow-on error: a Bundle's slice not found (`required@Bundle.entry:patient`)
/// is reported because the entry meant to fill it failed its own profile, whose issues are the
/// cause to fix; fixing them fixes the follow-on. The scorecard ranks causes first.
pub fn is_follow_on(rule: &str) -> bool {
    rule.split_once('@').is_some_and(|(_, element)| element.starts_with("Bundle.entry:"))
}

/// One UTC day of the trend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    pub accepted: i64,
    pub refused: i64,
}

/// Submissions of one Bundle kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindCount {
    pub kind: String,
    pub submissions: i64,
    pub accepted: i64,
}

/// A partner's conformance over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorecard {
    pub partner: String,
    pub period: Period,
    pub submissions: i64,
    pub accepted: i64,
    pub kinds: Vec<KindCount>,
    /// Referrals first received in the period.
    pub referrals: i64,
    /// Of those, the ones a specialist has acted on.
    pub acted_on: i64,
    /// Median seconds from a referral's receipt to the first specialist action on its Task.
    pub median_first_action_seconds: Option<i64>,
    /// The most frequent failing rules, most frequent first.
    pub rules: Vec<RuleCount>,
    /// The profiles its resources claimed that rex does not know (warnings, or errors where
    /// `unknown_profiles = "reject"`), most frequent first: guides to load with `--package`.
    pub unknown_profiles: Vec<ProfileClaimCount>,
    /// Every day of the period up to `now` (at most the last [`MAX_TREND_DAYS`]), empty days too.
    pub days: Vec<Day>,
}

impl Scorecard {
    /// Reads the scorecard of `partner` over `period` from the database.
    pub async fn read(store: &Store, partner: &str, period: Period, now: i64) -> Result<Scorecard, StoreError> {
        let counts = store.submission_counts(partner, period.from, period.to).await?;
        // Twice as many as shown, so root causes ranked below their follow-on errors by count
        // still make the list once follow-ons move down.
        let mut rules = store.failing_rules(partner, period.from, period.to, TOP_RULES * 2).await?;
        rules.sort_by_key(|rule| is_follow_on(&rule.rule));
        rules.truncate(TOP_RULES);
        let unknown_profiles =
            store.unknown_profile_claims(partner, period.from, period.to, UNKNOWN_PROFILE_RULE).await?;
        let actions = SPECIALIST_ACTIONS.map(Action::name);
        let (referrals, mut delays) =
            store.first_action_delays(partner, period.from, period.to, AUDIT_SYSTEM, &actions).await?;
        delays.sort_unstable();
        let median_first_action_seconds = match delays.len() {
            0 => None,
            n if n % 2 == 1 => Some(delays[n / 2]),
            n => Some((delays[n / 2 - 1] + delays[n / 2]) / 2),
        }
        .map(|micros| (micros + MICROS_PER_SECOND / 2) / MICROS_PER_SECOND);
        let mut kinds: Vec<KindCount> = Vec::new();
        for count in &counts {
            let index = match kinds.iter().position(|k| k.kind == count.kind) {
                Some(index) => index,
                None => {
                    kinds.push(KindCount { kind: count.kind.clone(), submissions: 0, accepted: 0 });
                    kinds.len() - 1
                }
            };
            kinds[index].submissions += count.count;
            if count.accepted {
                kinds[index].accepted += count.count;
            }
        }
        kinds.sort_by(|a, b| a.kind.cmp(&b.kind));
        Ok(Scorecard {
            partner: partner.to_string(),
            period,
            submissions: kinds.iter().map(|k| k.submissions).sum(),
            accepted: kinds.iter().map(|k| k.accepted).sum(),
            kinds,
            referrals,
            acted_on: i64::try_from(delays.len()).unwrap_or(i64::MAX),
            median_first_action_seconds,
            rules,
            unknown_profiles,
            days: trend(&counts, period, now),
        })
    }

    pub fn refused(&self) -> i64 {
        self.submissions - self.accepted
    }

    /// Accepted submissions over all, `None` without submissions.
    pub fn acceptance_rate(&self) -> Option<f64> {
        (self.submissions > 0).then(|| self.accepted as f64 / self.submissions as f64)
    }

    /// The scorecard as a FHIR `Parameters` resource.
    pub fn to_parameters(&self) -> Value {
        let mut parameters = vec![
            json!({"name": "partner", "valueString": self.partner}),
            json!({"name": "period", "valuePeriod": {"start": instant(self.period.from), "end": instant(self.period.to - 1)}}),
            json!({"name": "submissions", "valueInteger": self.submissions}),
            json!({"name": "accepted", "valueInteger": self.accepted}),
            json!({"name": "refused", "valueInteger": self.refused()}),
        ];
        if let Some(rate) = self.acceptance_rate() {
            parameters.push(json!({"name": "acceptance-rate", "valueDecimal": round3(rate)}));
        }
        for kind in &self.kinds {
            parameters.push(json!({"name": "kind", "part": [
                {"name": "code", "valueCode": kind.kind},
                {"name": "submissions", "valueInteger": kind.submissions},
                {"name": "accepted", "valueInteger": kind.accepted},
            ]}));
        }
        parameters.push(json!({"name": "referrals", "valueInteger": self.referrals}));
        parameters.push(json!({"name": "referrals-acted-on", "valueInteger": self.acted_on}));
        if let Some(seconds) = self.median_first_action_seconds {
            parameters.push(json!({"name": "median-time-to-first-action", "valueQuantity":
                {"value": seconds, "unit": "s", "system": "http://unitsofmeasure.org", "code": "s"}}));
        }
        for rule in &self.rules {
            let mut part = vec![
                json!({"name": "key", "valueString": rule.rule}),
                json!({"name": "code", "valueCode": rule.code}),
                json!({"name": "count", "valueInteger": rule.count}),
                json!({"name": "submissions", "valueInteger": rule.submissions}),
            ];
            if let Some(location) = &rule.example_location {
                part.push(json!({"name": "example-location", "valueString": location}));
            }
            if let Some(profile) = &rule.profile {
                part.push(json!({"name": "profile", "valueCanonical": profile}));
            }
            parameters.push(json!({"name": "rule", "part": part}));
        }
        for claim in &self.unknown_profiles {
            parameters.push(json!({"name": "unknown-profile", "part": [
                {"name": "profile", "valueCanonical": claim.profile},
                {"name": "count", "valueInteger": claim.count},
                {"name": "submissions", "valueInteger": claim.submissions},
            ]}));
        }
        for day in &self.days {
            parameters.push(json!({"name": "day", "part": [
                {"name": "date", "valueDate": day.date.to_string()},
                {"name": "submissions", "valueInteger": day.accepted + day.refused},
                {"name": "accepted", "valueInteger": day.accepted},
                {"name": "refused", "valueInteger": day.refused},
            ]}));
        }
        json!({"resourceType": "Parameters", "parameter": parameters})
    }

    /// The scorecard as CSV, one figure a row: `section,key,value,example_location,profile`.
    pub fn to_csv(&self) -> String {
        let mut rows: Vec<[String; 5]> = Vec::new();
        let mut row = |section: &str, key: &str, value: String| {
            rows.push([section.into(), key.into(), value, String::new(), String::new()]);
        };
        row("summary", "partner", self.partner.clone());
        row("summary", "period-start", instant(self.period.from));
        row("summary", "period-end", instant(self.period.to - 1));
        row("summary", "submissions", self.submissions.to_string());
        row("summary", "accepted", self.accepted.to_string());
        row("summary", "refused", self.refused().to_string());
        row("summary", "acceptance-rate", self.acceptance_rate().map(|r| format!("{r:.3}")).unwrap_or_default());
        row("summary", "referrals", self.referrals.to_string());
        row("summary", "referrals-acted-on", self.acted_on.to_string());
        let median = self.median_first_action_seconds.map(|s| s.to_string()).unwrap_or_default();
        row("summary", "median-time-to-first-action-seconds", median);
        for kind in &self.kinds {
            row("kind-submissions", &kind.kind, kind.submissions.to_string());
            row("kind-accepted", &kind.kind, kind.accepted.to_string());
        }
        for day in &self.days {
            row("day-accepted", &day.date.to_string(), day.accepted.to_string());
            row("day-refused", &day.date.to_string(), day.refused.to_string());
        }
        for rule in &self.rules {
            rows.push([
                "rule".into(),
                rule.rule.clone(),
                rule.count.to_string(),
                rule.example_location.clone().unwrap_or_default(),
                rule.profile.clone().unwrap_or_default(),
            ]);
        }
        for claim in &self.unknown_profiles {
            let key = format!("{UNKNOWN_PROFILE_RULE}:{}", claim.profile);
            rows.push(["unknown-profile".into(), key, claim.count.to_string(), String::new(), claim.profile.clone()]);
        }
        let mut csv = String::from("section,key,value,example_location,profile\r\n");
        for fields in rows {
            let fields: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
            csv.push_str(&fields.join(","));
            csv.push_str("\r\n");
        }
        csv
    }
}

/// Every day of the period up to `now` with its counts, empty days included.
fn trend(counts: &[SubmissionCount], period: Period, now: i64) -> Vec<Day> {
    let last = (period.to.min(now + 1) - 1).div_euclid(MICROS_PER_DAY);
    let first = period.from.div_euclid(MICROS_PER_DAY).max(last - (MAX_TREND_DAYS - 1));
    (first..=last)
        .filter_map(|day| {
            let date = DateTime::from_timestamp(day * 86_400, 0)?.date_naive();
            let of_day = counts.iter().filter(|c| c.day == day);
            let (accepted, refused) = of_day.fold((0, 0), |(accepted, refused), c| {
                if c.accepted { (accepted + c.count, refused) } else { (accepted, refused + c.count) }
            });
            Some(Day { date, accepted, refused })
        })
        .collect()
}

fn instant(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field.into() }
}

/// `GET /fhir/$partner-scorecard?partner=ID&period=...`: a partner reads its own scorecard
/// (`partner` may be left out), coordinators and admins any partner's; specialists may not.
/// `_format=text/csv` (or `csv`) or `Accept: text/csv` answers CSV, anything else FHIR JSON.
pub async fn operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref());
    let mut partner = None;
    let mut period = None;
    let mut format = None;
    for (name, value) in &pairs {
        match name.as_str() {
            "partner" => partner = Some(value.as_str()),
            "period" => period = Some(value.as_str()),
            "_format" => format = Some(value.as_str()),
            "_pretty" => {}
            other => {
                return Err(ApiError::one(
                    StatusCode::BAD_REQUEST,
                    IssueCode::NotSupported,
                    msg!("scorecard-parameter", parameter = other),
                )
                .at(other));
            }
        }
    }
    let csv = match format {
        Some(format) => format == "csv" || format.starts_with("text/csv"),
        None => headers.get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/csv")),
    };
    if !csv {
        check_accept(format)?;
    }
    let partner = scorecard_partner(&state, &caller, partner)?;
    let now = now_micros();
    let period = match period {
        Some(text) => Period::parse(text, now).map_err(|message| ApiError::bad_request(message).at("period"))?,
        None => Period::recent(now),
    };
    let scorecard = Scorecard::read(&state.store, &partner, period, now).await?;
    if csv {
        let content_type = HeaderValue::from_static("text/csv; charset=utf-8");
        return Ok((StatusCode::OK, [(CONTENT_TYPE, content_type)], scorecard.to_csv()).into_response());
    }
    Ok(fhir_json(StatusCode::OK, &scorecard.to_parameters()))
}

/// Whose scorecard the caller may read: a partner only its own, coordinators and admins (and a
/// `--dev` server) the one named, which must be a configured partner.
fn scorecard_partner(state: &AppState, caller: &Caller, asked: Option<&str>) -> Result<String, ApiError> {
    let forbidden = |message: Message| ApiError::one(StatusCode::FORBIDDEN, IssueCode::Forbidden, message).denied();
    match caller {
        Caller::Authenticated(Principal::Partner { id, .. }) => match asked {
            Some(asked) if asked != id => Err(forbidden(msg!("scorecard-own-only"))),
            _ => Ok(id.clone()),
        },
        Caller::Authenticated(Principal::Staff { role: StaffRole::Specialist, .. }) => {
            Err(forbidden(msg!("scorecard-staff-roles")))
        }
        Caller::Authenticated(Principal::Staff { .. }) | Caller::Unrestricted => {
            let asked = asked.filter(|p| !p.is_empty()).ok_or_else(|| {
                ApiError::one(StatusCode::BAD_REQUEST, IssueCode::Required, msg!("scorecard-name-partner"))
                    .at("partner")
            })?;
            let known = state.security.as_ref().is_none_or(|security| security.partners().get(asked).is_some());
            if !known {
                return Err(ApiError::not_found(msg!("scorecard-unknown-partner", partner = asked)).at("partner"));
            }
            Ok(asked.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_not_found_are_follow_on_errors() {
        assert!(is_follow_on("required@Bundle.entry:patient"));
        assert!(!is_follow_on("required@Patient.gender"));
        assert!(!is_follow_on("rex-sr-1"));
        assert!(!is_follow_on("required@Bundle.entry"));
    }

    fn bundle() -> Value {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Organization"}},
            {"resource": {"resourceType": "Patient", "name": [{"family": "Secret"}]}}]})
    }

    #[test]
    fn rules_name_the_element_without_indexes_or_values() {
        let issue = Issue::error(IssueCode::Required, "Patient.gender: minimum required = 1, but only found 0")
            .at("Bundle.entry[1].resource.name[0].family");
        let row = issue_row(&issue, Some(&bundle()));
        assert_eq!(row.rule, "required@Patient.name.family");
        assert_eq!(row.location.as_deref(), Some("Bundle.entry[1].resource.name[0].family"));
        assert_eq!((row.severity.as_str(), row.code.as_str(), row.profile), ("error", "required", None));
        let at_entry = issue_row(&Issue::error(IssueCode::Duplicate, "x").at("Bundle.entry[8].fullUrl"), None);
        assert_eq!(at_entry.rule, "duplicate@Bundle.entry.fullUrl");
        assert_eq!(issue_row(&Issue::error(IssueCode::Structure, "bad JSON"), None).rule, "structure");
    }

    #[test]
    fn invariants_slices_and_profiles_are_read_from_the_rule_not_the_text() {
        let invariant = Issue::error(IssueCode::Invariant, "Constraint failed: rex-sr-1: 'Ramírez must ...'")
            .at("Bundle.entry[1].resource")
            .rule(Rule::Constraint { key: "rex-sr-1".into(), human: "Ramírez must ...".into() });
        assert_eq!(issue_row(&invariant, Some(&bundle())).rule, "rex-sr-1");
        let profile = "https://rex.example/fhir/StructureDefinition/rex-international-patient";
        let closed = Issue::error(IssueCode::Structure, "This element does not match any known slice")
            .at("Bundle.entry[1].resource.identifier[0]")
            .rule(Rule::ClosedSlicing { profile: profile.into() });
        let row = issue_row(&closed, Some(&bundle()));
        assert_eq!((row.rule.as_str(), row.profile.as_deref()), ("structure@Patient.identifier", Some(profile)));
        // A URL in the text alone is not a profile.
        let text_only = Issue::error(IssueCode::CodeInvalid, format!("Unknown code in {profile}")).at("Patient.gender");
        assert_eq!(issue_row(&text_only, None).profile, None);
        let slice = Issue::error(IssueCode::Required, "Slice 'Bundle.entry:patient': a matching slice is required")
            .at("Bundle.entry")
            .rule(Rule::Slice { element: "Bundle.entry".into(), name: "patient".into(), min: 1, max: None, found: 0 });
        assert_eq!(issue_row(&slice, Some(&bundle())).rule, "required@Bundle.entry:patient");
        let claim = Issue::error(IssueCode::NotFound, "Profile reference 'http://example.org/p' is not known to rex")
            .at("Bundle.entry[1].resource.meta.profile[0]")
            .rule(Rule::UnknownProfileClaim { url: "http://example.org/p".into() });
        let row = issue_row(&claim, Some(&bundle()));
        assert_eq!((row.rule.as_str(), row.profile.as_deref()), ("unknown-profile", Some("http://example.org/p")));
    }

    #[test]
    fn periods_are_dates_ranges_or_open_ended() {
        let now = parse_date_range("2026-11-29T12:00:00Z").unwrap().0;
        let november = Period::parse("2026-11", now).unwrap();
        assert_eq!(november.from, parse_date_range("2026-11-01").unwrap().0);
        assert_eq!(november.to, parse_date_range("2026-12-01").unwrap().0);
        let range = Period::parse("2026-11-01/2026-11-02", now).unwrap();
        assert_eq!(range.to, parse_date_range("2026-11-03").unwrap().0);
        assert_eq!(Period::parse("2026-11-20/", now).unwrap().to, now + 1);
        assert!(Period::parse("2026-11-30/2026-11-01", now).is_err());
        assert!(Period::parse("last week", now).is_err());
        let recent = Period::recent(now);
        assert_eq!(recent.from, parse_date_range("2026-10-31").unwrap().0);
    }

    #[test]
    fn the_trend_lists_every_day_with_its_counts() {
        let now = parse_date_range("2026-11-29T12:00:00Z").unwrap().0;
        let day = now.div_euclid(MICROS_PER_DAY);
        let count = |day, accepted, count| SubmissionCount { day, kind: "transaction".into(), accepted, count };
        let counts = [count(day - 1, true, 2), count(day - 1, false, 1), count(day, true, 1)];
        let days = trend(&counts, Period::parse("2026-11-27/", now).unwrap(), now);
        let figures: Vec<(String, i64, i64)> =
            days.iter().map(|d| (d.date.to_string(), d.accepted, d.refused)).collect();
        assert_eq!(
            figures,
            vec![("2026-11-27".into(), 0, 0), ("2026-11-28".into(), 2, 1), ("2026-11-29".into(), 1, 0)]
        );
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("Patient.name"), "Patient.name");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
