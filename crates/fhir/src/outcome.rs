//! OperationOutcome issues: the one shape every error and warning takes before it reaches a client.

use rex_i18n::{Lang, Message, Text, msg};
use serde_json::{Value, json};

/// How bad an issue is (`OperationOutcome.issue.severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// The subset of the `issue-type` value set rex reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Forbidden,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Conflict,
    Exception,
    Informational,
    TooCostly,
    BusinessRule,
    Login,
    Throttled,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::Invariant => "invariant",
            IssueCode::Security => "security",
            IssueCode::Forbidden => "forbidden",
            IssueCode::Processing => "processing",
            IssueCode::NotSupported => "not-supported",
            IssueCode::Duplicate => "duplicate",
            IssueCode::MultipleMatches => "multiple-matches",
            IssueCode::NotFound => "not-found",
            IssueCode::Deleted => "deleted",
            IssueCode::TooLong => "too-long",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::Conflict => "conflict",
            IssueCode::Exception => "exception",
            IssueCode::Informational => "informational",
            IssueCode::TooCostly => "too-costly",
            IssueCode::Login => "login",
            IssueCode::Throttled => "throttled",
            IssueCode::BusinessRule => "business-rule",
        }
    }
}

/// The strength of a terminology binding (`ElementDefinition.binding.strength`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingStrength {
    Required,
    Extensible,
    Preferred,
    Example,
}

impl BindingStrength {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingStrength::Required => "required",
            BindingStrength::Extensible => "extensible",
            BindingStrength::Preferred => "preferred",
            BindingStrength::Example => "example",
        }
    }
}

/// The rule a validation issue reports, as data: what its English `diagnostics` is made from. Readers
/// that count or translate issues (the scorecard, metrics, a message catalogue) read this instead of
/// parsing the text. It is not written into the OperationOutcome rex answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A FHIRPath invariant failed: its key (`ele-1`, `rex-sr-1`) and its human description.
    Constraint { key: String, human: String },
    /// An invariant could not be evaluated: its key and why.
    ConstraintNotEvaluated { key: String, error: String },
    /// An element (`Patient.name`, its path in the definition) occurs `found` times, outside
    /// `min..=max`; `profile` names the profile (its name, not its URL) whose bounds these are, `None`
    /// for a base definition's.
    Cardinality { element: String, min: u32, max: Option<u32>, found: usize, profile: Option<String> },
    /// A slice (`name` of the sliced `element`, as in the element id `Bundle.entry:patient`) holds
    /// `found` items, outside `min..=max`.
    Slice { element: String, name: String, min: u32, max: Option<u32>, found: usize },
    /// An item matches no slice of the closed slicing of the profile with this canonical URL.
    ClosedSlicing { profile: String },
    /// A coded value and the value set it is bound to with this strength.
    Binding { value_set: String, strength: BindingStrength },
    /// A profile claimed in `meta.profile` that rex does not know, handled by the unknown profile
    /// claims policy.
    UnknownProfileClaim { url: String },
    /// A profile (canonical URL) the issue is about: unknown, for another type, not conformed to.
    Profile { url: String },
    /// An extension (canonical URL) the issue is about: unknown, used out of its context, or a
    /// modifier extension in the wrong place.
    Extension { url: String },
}

impl Rule {
    /// The validator's message for this rule, for a partner reading another language than
    /// English; `None` for rules that several different messages share (a profile, an extension
    /// or a binding the issue is about, an unknown claim whose text says the partner's policy),
    /// which stay as written. A constraint's human text is the
    /// profile's own and is quoted as written.
    pub fn message(&self) -> Option<Message> {
        let bound = |max: &Option<u32>| max.map_or_else(|| "*".to_string(), |max| max.to_string());
        Some(match self {
            Rule::Constraint { key, human } => msg!("rule-constraint", key, human),
            Rule::ConstraintNotEvaluated { key, .. } => msg!("rule-constraint-not-evaluated", key),
            Rule::Cardinality { element, min, max, found, .. } => {
                msg!("rule-cardinality", element, min = min.to_string(), max = bound(max), found = found.to_string())
            }
            Rule::Slice { element, name, min, max, found } => {
                msg!("rule-slice", element, name, min = min.to_string(), max = bound(max), found = found.to_string())
            }
            Rule::ClosedSlicing { profile } => msg!("rule-closed-slicing", profile),
            Rule::Binding { .. } | Rule::Profile { .. } | Rule::Extension { .. } | Rule::UnknownProfileClaim { .. } => {
                return None;
            }
        })
    }

    /// The canonical URL of the StructureDefinition the rule names (a profile or an extension).
    pub fn structure_definition(&self) -> Option<&str> {
        match self {
            Rule::ClosedSlicing { profile: url }
            | Rule::UnknownProfileClaim { url }
            | Rule::Profile { url }
            | Rule::Extension { url } => Some(url),
            _ => None,
        }
    }
}

/// One finding: severity, code, a message for humans and, where one exists, the FHIRPath location
/// and the rule it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    /// In English (logs, the scorecard, `details.text` for support staff).
    pub diagnostics: String,
    pub expression: Option<String>,
    /// The catalogue message `diagnostics` was rendered from, when rex wrote it: the partner
    /// reads it in its language. `None` for text quoted as written (a profile's own message).
    pub message: Option<Message>,
    /// Boxed: most issues have none, and an `Issue` is returned in many `Result`s.
    pub rule: Option<Box<Rule>>,
}

impl Issue {
    /// `diagnostics` is a catalogue message (`rex_i18n::msg!`) or text kept as written.
    pub fn new(severity: Severity, code: IssueCode, diagnostics: impl Into<Text>) -> Issue {
        let text = diagnostics.into();
        Issue { severity, code, diagnostics: text.english, expression: None, message: text.message, rule: None }
    }

    pub fn error(code: IssueCode, diagnostics: impl Into<Text>) -> Issue {
        Issue::new(Severity::Error, code, diagnostics)
    }

    pub fn information(code: IssueCode, diagnostics: impl Into<Text>) -> Issue {
        Issue::new(Severity::Information, code, diagnostics)
    }

    /// Sets the rule the issue reports.
    pub fn rule(mut self, rule: Rule) -> Issue {
        self.rule = Some(Box::new(rule));
        self
    }

    /// `diagnostics` in `lang` (English where the issue has no catalogue message).
    pub fn diagnostics_in(&self, lang: Lang) -> String {
        if lang == Lang::En {
            return self.diagnostics.clone();
        }
        match self.message.clone().or_else(|| self.rule.as_deref().and_then(Rule::message)) {
            Some(message) => message.render(lang),
            None => self.diagnostics.clone(),
        }
    }

    /// Sets the FHIRPath location of the issue.
    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression = Some(expression.into());
        self
    }

    /// Re-roots the location under `prefix`, e.g. `Patient.name` under `Bundle.entry[2].resource`
    /// becomes `Bundle.entry[2].resource.name`.
    pub fn within(mut self, prefix: &str) -> Issue {
        self.expression = Some(match self.expression.take() {
            None => prefix.to_string(),
            Some(expr) => match expr.split_once('.') {
                Some((_root, rest)) => format!("{prefix}.{rest}"),
                None => prefix.to_string(),
            },
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity <= Severity::Error
    }
}

/// Builds an OperationOutcome resource from issues, in the order given, in English.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    operation_outcome_in(issues, Lang::En)
}

/// An OperationOutcome for a reader of `lang`: `diagnostics` in that language, `details.text`
/// always in English, so support staff read every outcome a partner forwards them.
pub fn operation_outcome_in(issues: &[Issue], lang: Lang) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|issue| {
            let mut value = json!({
                "severity": issue.severity.as_str(),
                "code": issue.code.as_str(),
                "details": {"text": issue.diagnostics},
                "diagnostics": issue.diagnostics_in(lang),
            });
            if let Some(expression) = &issue.expression {
                value["expression"] = json!([expression]);
            }
            value
        })
        .collect();
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

/// An OperationOutcome that reports success, for `Prefer: return=OperationOutcome`.
pub fn success_outcome(message: impl Into<Text>, lang: Lang) -> Value {
    operation_outcome_in(&[Issue::information(IssueCode::Informational, message)], lang)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_reroots_expression() {
        let issue = Issue::error(IssueCode::Structure, "x").at("Patient.name[0].family");
        assert_eq!(
            issue.within("Bundle.entry[2].resource").expression.as_deref(),
            Some("Bundle.entry[2].resource.name[0].family")
        );
        let bare = Issue::error(IssueCode::Structure, "x").at("Patient");
        assert_eq!(bare.within("Bundle.entry[0].resource").expression.as_deref(), Some("Bundle.entry[0].resource"));
    }

    #[test]
    fn outcome_lists_issues_with_expression() {
        let outcome = operation_outcome(&[Issue::error(IssueCode::NotFound, "gone").at("Patient.id")]);
        assert_eq!(outcome["issue"][0]["code"], "not-found");
        assert_eq!(outcome["issue"][0]["expression"][0], "Patient.id");
    }

    #[test]
    fn outcome_in_a_language_keeps_english_in_details() {
        let translated = Issue::error(IssueCode::NotFound, rex_i18n::msg!("resource-not-known", reference = "Task/t1"));
        let quoted = Issue::error(IssueCode::Invariant, "A profile's own words");
        let outcome = operation_outcome_in(&[translated, quoted], Lang::Es);
        assert_eq!(outcome["issue"][0]["details"]["text"], "Task/t1 is not known");
        assert_eq!(outcome["issue"][0]["diagnostics"], "No se conoce Task/t1");
        assert_eq!(outcome["issue"][1]["diagnostics"], "A profile's own words");
        assert_eq!(outcome["issue"][1]["details"]["text"], "A profile's own words");
    }
}
