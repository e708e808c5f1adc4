//! Consent for cross-border sharing: which Consent of a referral lets the partner share the
//! patient's record with the receiving hospital, and when that permission no longer holds.
//!
//! A Consent counts (profile `rex-referral-consent`) when it is `active`, about the referral's
//! patient, of scope `patient-privacy`, has the category "information disclosure" (v3 ActCode
//! `IDSCL`), permits (`provision.type` absent or `permit`) and its `provision.period` covers now.

use chrono::{DateTime, Utc};
use rex_fhir::{Issue, IssueCode};
use rex_i18n::{Message, msg};
use serde_json::Value;

pub const SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
pub const SCOPE_CODE: &str = "patient-privacy";
/// Category "information disclosure": consent to disclose the record to a third party, here the
/// receiving hospital.
pub const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const CATEGORY_CODE: &str = "IDSCL";

fn has_coding(concept: &Value, system: &str, code: &str) -> bool {
    concept["coding"].as_array().into_iter().flatten().any(|c| c["system"] == system && c["code"] == code)
}

/// A date, dateTime or instant as the instant it starts (`low`) or ends (`high`) at.
fn bound(text: &str, high: bool) -> Option<DateTime<Utc>> {
    let range = rex_fhir::datetime::parse_date_range(text)?;
    let micros = if high { range.1 } else { range.0 };
    DateTime::from_timestamp_micros(micros)
}

/// Whether `consent` has the scope and category of a consent to share, permits, and whether its
/// period covers `now`: the problems, each with the element it is about (relative to the Consent).
pub fn problems(consent: &Value, patient: Option<&str>, now: DateTime<Utc>) -> Vec<(&'static str, Message)> {
    let mut found = Vec::new();
    if let Some(patient) = patient
        && consent["patient"]["reference"].as_str() != Some(patient)
    {
        found.push((".patient", msg!("consent-other-patient", patient)));
    }
    let status = consent["status"].as_str().unwrap_or("(none)");
    if status != "active" {
        found.push((".status", msg!("consent-not-active", status)));
    }
    if !has_coding(&consent["scope"], SCOPE_SYSTEM, SCOPE_CODE) {
        found.push((".scope", msg!("consent-scope", scope = format!("{SCOPE_SYSTEM}|{SCOPE_CODE}"))));
    }
    let disclosure =
        consent["category"].as_array().into_iter().flatten().any(|c| has_coding(c, CATEGORY_SYSTEM, CATEGORY_CODE));
    if !disclosure {
        found.push((".category", msg!("consent-category", category = format!("{CATEGORY_SYSTEM}|{CATEGORY_CODE}"))));
    }
    if consent["provision"]["type"].as_str().is_some_and(|t| t != "permit") {
        found.push((".provision.type", msg!("consent-denies")));
    }
    let period = &consent["provision"]["period"];
    let start = period["start"].as_str().and_then(|s| bound(s, false));
    let end = period["end"].as_str().and_then(|s| bound(s, true));
    match (start, end) {
        (None, _) => found.push((".provision.period", msg!("consent-no-start"))),
        (Some(start), _) if start > now => found.push((".provision.period", msg!("consent-future"))),
        (_, Some(end)) if end <= now => found.push((".provision.period", msg!("consent-ended"))),
        _ => {}
    }
    found
}

/// Whether `consent` lets the referral go on at `now` (the referral's patient is not checked).
pub fn holds(consent: &Value, now: DateTime<Utc>) -> bool {
    problems(consent, None, now).is_empty()
}

/// Why a stored consent no longer holds at `now`, in words, or `None` while it holds.
pub fn withdrawn_reason(consent: &Value, now: DateTime<Utc>) -> Option<String> {
    let found = problems(consent, None, now);
    let (element, problem) = found.first()?;
    Some(format!("Consent{element} {}", problem.english()))
}

/// Finds the Consent that permits sharing the referral of `patient`: `candidates` are the
/// Consents with their FHIRPath locations (`Bundle.entry[4].resource`). Returns the position of
/// the first that holds, or the issues that say what is missing (at `missing_at` when there is
/// no Consent at all).
pub fn find(
    candidates: &[(String, &Value)],
    patient: &str,
    now: DateTime<Utc>,
    missing_at: &str,
) -> Result<usize, Vec<Issue>> {
    let mut issues = Vec::new();
    for (position, (location, consent)) in candidates.iter().enumerate() {
        let found = problems(consent, Some(patient), now);
        if found.is_empty() {
            return Ok(position);
        }
        issues.extend(found.into_iter().map(|(element, problem)| {
            Issue::error(
                IssueCode::BusinessRule,
                msg!("consent-cannot-carry", element = element.trim_start_matches('.'), problem),
            )
            .at(format!("{location}{element}"))
        }));
    }
    if candidates.is_empty() {
        issues.push(
            Issue::error(
                IssueCode::Required,
                msg!(
                    "consent-required",
                    scope = format!("{SCOPE_SYSTEM}|{SCOPE_CODE}"),
                    category = format!("{CATEGORY_SYSTEM}|{CATEGORY_CODE}")
                ),
            )
            .at(missing_at),
        );
    }
    Err(issues)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn consent() -> Value {
        json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": SCOPE_CODE}]},
            "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": CATEGORY_CODE}]}],
            "patient": {"reference": "urn:uuid:p"},
            "provision": {"type": "permit", "period": {"start": "2026-01-01", "end": "2026-12-31"}}})
    }

    fn at(day: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{day}T12:00:00Z")).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_active_consent_for_the_patient_within_its_period_holds() {
        let consent = consent();
        assert_eq!(
            find(&[("Bundle.entry[4].resource".into(), &consent)], "urn:uuid:p", at("2026-06-01"), "Bundle.entry"),
            Ok(0)
        );
        assert!(holds(&consent, at("2026-12-31")), "the end date holds for its whole day");
        assert_eq!(withdrawn_reason(&consent, at("2027-01-01")).as_deref(), Some("Consent.provision.period has ended"));
    }

    #[test]
    fn what_is_missing_is_named_with_its_location() {
        let mut revoked = consent();
        revoked["status"] = json!("inactive");
        revoked["category"] = json!([{"text": "general"}]);
        let issues =
            find(&[("Bundle.entry[4].resource".into(), &revoked)], "urn:uuid:other", at("2026-06-01"), "Bundle.entry")
                .unwrap_err();
        let at: Vec<_> = issues.iter().map(|i| i.expression.clone().unwrap()).collect();
        assert_eq!(
            at,
            vec![
                "Bundle.entry[4].resource.patient",
                "Bundle.entry[4].resource.status",
                "Bundle.entry[4].resource.category"
            ]
        );
        let none = find(&[], "urn:uuid:p", at_now(), "Bundle.entry").unwrap_err();
        assert_eq!(none[0].expression.as_deref(), Some("Bundle.entry"));
    }

    fn at_now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn a_future_or_denying_consent_does_not_hold() {
        let mut later = consent();
        later["provision"]["period"]["start"] = json!("2026-07-01");
        assert!(!holds(&later, at("2026-06-01")));
        let mut deny = consent();
        deny["provision"]["type"] = json!("deny");
        assert_eq!(
            withdrawn_reason(&deny, at("2026-06-01")).as_deref(),
            Some("Consent.provision.type denies instead of permitting")
        );
    }
}
