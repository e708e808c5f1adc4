//! Terminology bindings: coded values against the value set an element is bound to, and additional bindings.

use rex_fhir::{BindingStrength, IssueCode, Rule, Severity};
use serde_json::Value;

use super::Walk;
use crate::defs::field;
use crate::terminology::{Membership, is_external_system};

impl<'v> Walk<'v> {
    /// A required additional binding: some coding of the value must be in the value set.
    pub(super) fn additional_binding(&mut self, vs: &str, val: &Value, ty: &str) {
        let Some(codings) = codings_of(val, ty) else { return };
        let members: Vec<Membership> =
            codings.iter().map(|coding| self.v.term.member(vs, coding.system, coding.code)).collect();
        if !members.is_empty() && members.iter().all(|m| *m == Membership::NotIn) {
            let shown: Vec<String> = codings.iter().map(|c| format!("{}#{}", c.system.unwrap_or(""), c.code)).collect();
            self.report_rule(
                Severity::Error,
                IssueCode::CodeInvalid,
                format!(
                    "None of the codings provided are in the value set '{vs}' specified in an additional binding, and a coding from this value set is required (codes = {})",
                    shown.join(", ")
                ),
                Rule::Binding { value_set: vs.to_string(), strength: BindingStrength::Required },
            );
        }
    }

    pub(super) fn binding(&mut self, strength: BindingStrength, vs: &str, val: &Value, ty: &str) {
        let Some(codings) = codings_of(val, ty) else { return };
        let rule = Rule::Binding { value_set: vs.to_string(), strength };
        if codings.is_empty() {
            if ty == "CodeableConcept" && strength == BindingStrength::Required && val.get("text").is_none() {
                let msg = format!("No code provided, and a code is required from the value set '{vs}'");
                self.report_rule(Severity::Error, IssueCode::CodeInvalid, msg, rule);
            }
            return;
        }
        // Language tags cannot be checked against a code list here, but their shape can.
        for &Coding { system: sys, code, .. } in &codings {
            if sys == Some("urn:ietf:bcp:47") && !crate::terminology::is_bcp47_tag(code) {
                self.err(
                    IssueCode::CodeInvalid,
                    format!("'{code}' is not a well-formed BCP-47 language tag (e.g. pt-BR)"),
                );
                return;
            }
        }
        if !self.v.term.has_value_set(vs) {
            if strength == BindingStrength::Required {
                self.note_system(&format!("value set {vs}"));
            }
            return;
        }
        let mut any_in = false;
        let mut unknown = None;
        let mut bad = Vec::new();
        for &Coding { system: sys, code, display } in &codings {
            match self.v.term.member(vs, sys, code) {
                Membership::In => {
                    any_in = true;
                    if let (Some(sys), Some(d)) = (sys, display)
                        && let Some(Some(expected)) = self.v.term.lookup(sys, code)
                        && !expected.is_empty()
                        && !expected.eq_ignore_ascii_case(d)
                    {
                        self.warn(
                            IssueCode::Invalid,
                            format!("Wrong Display Name '{d}' for {sys}#{code}: should be '{expected}'"),
                        );
                    }
                }
                Membership::NotIn => bad.push((sys, code)),
                Membership::Unknown(why) => unknown = Some(why),
            }
            if let Some(sys) = sys
                && let Some(None) = self.v.term.lookup(sys, code)
            {
                self.err(IssueCode::CodeInvalid, format!("Unknown code '{sys}#{code}'"));
                return;
            }
        }
        if any_in {
            return;
        }
        if let Some(why) = unknown {
            if is_external_system(&why) || why.starts_with("http") {
                self.note_system(&why);
            }
            return;
        }
        let shown: Vec<String> = bad
            .iter()
            .map(|(s, c)| match s {
                Some(s) => format!("{s}#{c}"),
                None => c.to_string(),
            })
            .collect();
        let msg = format!("The code(s) {} are not in the value set '{vs}'", shown.join(", "));
        match strength {
            BindingStrength::Required => {
                // A bare `code` takes its system from the value set; a code in none of its systems has none,
                // which the HL7 validator reports as an error of its own.
                if ty == "code" {
                    self.report_rule(
                        Severity::Error,
                        IssueCode::CodeInvalid,
                        format!(
                            "The System URI could not be determined for the code '{}' in the ValueSet '{vs}'",
                            shown.join(", ")
                        ),
                        rule.clone(),
                    );
                }
                self.report_rule(Severity::Error, IssueCode::CodeInvalid, msg, rule)
            }
            BindingStrength::Extensible => {
                if ty != "code" {
                    self.report_rule(Severity::Warning, IssueCode::CodeInvalid, msg, rule)
                }
            }
            BindingStrength::Preferred => self.report_rule(Severity::Information, IssueCode::CodeInvalid, msg, rule),
            BindingStrength::Example => {}
        }
    }

    pub(super) fn note_system(&mut self, system: &str) {
        if self.reported_systems.insert(system.to_string()) {
            let p = std::mem::take(&mut self.path);
            self.path = self
                .resources
                .first()
                .and_then(|r| r.get("resourceType"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            self.info(
                IssueCode::Informational,
                format!(
                    "Codes from {system} cannot be checked locally (no terminology server); they were not validated"
                ),
            );
            self.path = p;
        }
    }
}

/// A code of a coded value, with its system and display where it has them.
#[derive(Clone, Copy)]
struct Coding<'a> {
    system: Option<&'a str>,
    code: &'a str,
    display: Option<&'a str>,
}

/// The codings of a coded value; `None` when the type is not coded or the value has no code.
fn codings_of<'a>(val: &'a Value, ty: &str) -> Option<Vec<Coding<'a>>> {
    let str_of = |v: &'a Value, key: &str| field(v, key).and_then(Value::as_str);
    let coding = |c: &'a Value| {
        Some(Coding { system: str_of(c, "system"), code: str_of(c, "code")?, display: str_of(c, "display") })
    };
    Some(match ty {
        "code" | "string" | "uri" => vec![Coding { system: None, code: val.as_str()?, display: None }],
        "Coding" => vec![coding(val)?],
        "CodeableConcept" => {
            val.get("coding").and_then(Value::as_array).into_iter().flatten().filter_map(coding).collect()
        }
        "Quantity" | "Age" | "Duration" | "Distance" | "Count" => {
            vec![Coding { system: str_of(val, "system"), code: str_of(val, "code")?, display: None }]
        }
        _ => return None,
    })
}
