//! Routing rules: which specialist review queue a referral goes to, and when its service-level
//! clock runs out. The rules live in one TOML file (`config/routing.toml`), loaded and checked at
//! start; the first rule that matches wins, and a referral no rule matches goes to the default queue.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::referral::{Category, Coding, Priority, Referral};

const SNOMED: &str = "http://snomed.info/sct";
const ICD10: &[&str] = &["http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"];

/// A specialist review queue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// Short code (`cardiology`), also the id of its HealthcareService.
    pub code: String,
    pub name: String,
}

/// Due times per priority.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    routine: Option<String>,
    urgent: Option<String>,
    asap: Option<String>,
    stat: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    queue: String,
    description: Option<String>,
    #[serde(default)]
    specialty: Vec<String>,
    #[serde(default)]
    icd10: Vec<String>,
    #[serde(default)]
    snomed: Vec<String>,
    category: Option<String>,
    #[serde(default)]
    priority: Vec<String>,
    #[serde(default)]
    partner: Vec<String>,
    #[serde(default)]
    language: Vec<String>,
    interpreter: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    default_queue: String,
    #[serde(rename = "queue")]
    queues: Vec<Queue>,
    sla: RawSla,
    #[serde(default)]
    partner_sla: HashMap<String, RawSla>,
    #[serde(rename = "rule", default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    escalate_to: HashMap<String, Vec<String>>,
}

/// An ICD-10 range of three-character categories (`I20-I25`) or a code prefix (`I71`, `I48.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Icd10Match {
    Range(String, String),
    Prefix(String),
}

impl Icd10Match {
    fn matches(&self, code: &str) -> bool {
        let code = code.to_ascii_uppercase();
        match self {
            Icd10Match::Prefix(prefix) => code.starts_with(prefix.as_str()),
            Icd10Match::Range(low, high) => {
                let category = &code[..code.len().min(3)];
                category >= low.as_str() && category <= high.as_str()
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    queue: String,
    description: String,
    specialty: Vec<String>,
    icd10: Vec<Icd10Match>,
    snomed: Vec<String>,
    category: Option<Category>,
    priority: Vec<Priority>,
    partner: Vec<String>,
    language: Vec<String>,
    interpreter: Option<bool>,
}

type Sla = HashMap<Priority, Duration>;

/// The loaded routing configuration.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub queues: Vec<Queue>,
    pub default_queue: String,
    sla: Sla,
    partner_sla: HashMap<String, Sla>,
    rules: Vec<Rule>,
    /// Who is told when a queue's referral goes overdue, per queue code: `mailto:` addresses and
    /// webhook URLs (`[escalate_to]`).
    escalate_to: HashMap<String, Vec<String>>,
}

/// Where a referral goes, why, and when it is due.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingDecision {
    pub queue: String,
    /// The id of the rule that matched, or `default`.
    pub rule: String,
    /// A sentence for people: which rule and what it matched on.
    pub explanation: String,
    pub due: DateTime<Utc>,
}

/// Parses `30m`, `4h`, `10d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number.parse().map_err(|_| format!("'{text}' is not a duration such as 30m, 4h or 10d"))?;
    match unit {
        "m" => Ok(Duration::minutes(n)),
        "h" => Ok(Duration::hours(n)),
        "d" => Ok(Duration::days(n)),
        _ => Err(format!("'{text}' is not a duration such as 30m, 4h or 10d")),
    }
}

fn parse_sla(raw: &RawSla, base: Option<&Sla>, context: &str) -> Result<Sla, String> {
    let mut sla = base.cloned().unwrap_or_default();
    for (priority, value) in [
        (Priority::Routine, &raw.routine),
        (Priority::Urgent, &raw.urgent),
        (Priority::Asap, &raw.asap),
        (Priority::Stat, &raw.stat),
    ] {
        match value {
            Some(text) => {
                sla.insert(priority, parse_duration(text).map_err(|e| format!("{context}.{}: {e}", priority.code()))?);
            }
            None if base.is_none() => return Err(format!("{context}.{} is missing", priority.code())),
            None => {}
        }
    }
    Ok(sla)
}

fn parse_icd10(text: &str) -> Result<Icd10Match, String> {
    let valid = |code: &str| code.len() >= 3 && code.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    match text.split_once('-') {
        Some((low, high)) if valid(low) && valid(high) && low.len() == 3 && high.len() == 3 && low <= high => {
            Ok(Icd10Match::Range(low.to_string(), high.to_string()))
        }
        None if valid(text) => Ok(Icd10Match::Prefix(text.to_string())),
        _ => Err(format!("'{text}' is not an ICD-10 category range (I20-I25) or prefix (I71, I48.1)")),
    }
}

impl RoutingConfig {
    /// Parses and checks the rules; every problem is reported with the rule it is in.
    pub fn from_toml(text: &str) -> Result<RoutingConfig, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let codes: HashSet<&str> = raw.queues.iter().map(|q| q.code.as_str()).collect();
        if codes.len() != raw.queues.len() {
            return Err("two queues share a code".into());
        }
        for queue in &raw.queues {
            if !(1..=64).contains(&queue.code.len())
                || !queue.code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(format!("queue code '{}' must be 1-64 letters, digits or '-'", queue.code));
            }
        }
        if !codes.contains(raw.default_queue.as_str()) {
            return Err(format!("default_queue '{}' is not a declared queue", raw.default_queue));
        }
        let sla = parse_sla(&raw.sla, None, "sla")?;
        let mut partner_sla = HashMap::new();
        for (partner, overrides) in &raw.partner_sla {
            partner_sla.insert(partner.clone(), parse_sla(overrides, Some(&sla), &format!("partner_sla.{partner}"))?);
        }
        let mut rules = Vec::new();
        let mut ids = HashSet::new();
        for raw_rule in raw.rules {
            let context = format!("rule '{}'", raw_rule.id);
            if !ids.insert(raw_rule.id.clone()) {
                return Err(format!("{context} is defined twice"));
            }
            if !codes.contains(raw_rule.queue.as_str()) {
                return Err(format!("{context}: queue '{}' is not a declared queue", raw_rule.queue));
            }
            let category = match raw_rule.category.as_deref() {
                None => None,
                Some("referral") => Some(Category::Referral),
                Some("second-opinion") => Some(Category::SecondOpinion),
                Some(other) => return Err(format!("{context}: category '{other}' must be referral or second-opinion")),
            };
            let priority = raw_rule
                .priority
                .iter()
                .map(|p| Priority::parse(p).ok_or_else(|| format!("{context}: unknown priority '{p}'")))
                .collect::<Result<Vec<_>, _>>()?;
            let icd10 = raw_rule
                .icd10
                .iter()
                .map(|c| parse_icd10(c).map_err(|e| format!("{context}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let rule = Rule {
                description: raw_rule.description.unwrap_or_else(|| raw_rule.id.clone()),
                id: raw_rule.id,
                queue: raw_rule.queue,
                specialty: raw_rule.specialty,
                icd10,
                snomed: raw_rule.snomed,
                category,
                priority,
                partner: raw_rule.partner,
                language: raw_rule.language.iter().map(|l| l.to_ascii_lowercase()).collect(),
                interpreter: raw_rule.interpreter,
            };
            let has_condition = !rule.specialty.is_empty()
                || !rule.icd10.is_empty()
                || !rule.snomed.is_empty()
                || rule.category.is_some()
                || !rule.priority.is_empty()
                || !rule.partner.is_empty()
                || !rule.language.is_empty()
                || rule.interpreter.is_some();
            if !has_condition {
                return Err(format!("{context} has no condition, so it would match every referral"));
            }
            rules.push(rule);
        }
        for (queue, targets) in &raw.escalate_to {
            if !codes.contains(queue.as_str()) {
                return Err(format!("escalate_to.{queue}: '{queue}' is not a declared queue"));
            }
            if let Some(bad) = targets.iter().find(|target| !is_alert_target(target)) {
                return Err(format!(
                    "escalate_to.{queue}: '{bad}' is neither a mailto: address nor an http(s):// webhook URL"
                ));
            }
        }
        let escalate_to = raw.escalate_to;
        Ok(RoutingConfig { queues: raw.queues, default_queue: raw.default_queue, sla, partner_sla, rules, escalate_to })
    }

    /// Who is told when a referral of `queue` goes overdue (`mailto:` addresses, webhook URLs).
    pub fn escalate_to(&self, queue: &str) -> &[String] {
        self.escalate_to.get(queue).map_or(&[], Vec::as_slice)
    }

    /// Every alert target of every queue, for the checks at start.
    pub fn alert_targets(&self) -> impl Iterator<Item = &str> {
        self.escalate_to.values().flatten().map(String::as_str)
    }

    /// The queue, rule and due time for a referral received at `now`.
    pub fn route(&self, referral: &Referral, now: DateTime<Utc>) -> RoutingDecision {
        let sla = self.partner_sla.get(&referral.partner).unwrap_or(&self.sla);
        let due = now + sla[&referral.priority];
        match self.rules.iter().find(|rule| rule.matches(referral)) {
            Some(rule) => RoutingDecision {
                queue: rule.queue.clone(),
                rule: rule.id.clone(),
                explanation: format!("Routing rule '{}' ({}) matched", rule.id, rule.description),
                due,
            },
            None => RoutingDecision {
                queue: self.default_queue.clone(),
                rule: "default".into(),
                explanation: format!("No routing rule matched; sent to the default queue '{}'", self.default_queue),
                due,
            },
        }
    }

    pub fn queue(&self, code: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.code == code)
    }
}

/// `mailto:` one plain address (no list, no header fields), or an http(s) URL (checked further
/// by the server at start, which knows where rex may connect).
fn is_alert_target(target: &str) -> bool {
    if let Some(address) = target.strip_prefix("mailto:") {
        let plain = !address.chars().any(|c| c.is_whitespace() || matches!(c, ',' | '?' | '<' | '>' | ';'));
        return plain
            && address
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    }
    target.starts_with("https://") || target.starts_with("http://")
}

fn has_system(coding: &Coding, systems: &[&str]) -> bool {
    coding.system.as_deref().is_some_and(|s| systems.contains(&s))
}

impl Rule {
    /// Every condition the rule states must hold; within one condition any listed value will do.
    /// Codes (specialty, ICD-10, SNOMED CT) match when any of the listed code conditions does.
    fn matches(&self, referral: &Referral) -> bool {
        let code_conditions = !self.specialty.is_empty() || !self.icd10.is_empty() || !self.snomed.is_empty();
        let code_match =
            referral.specialties.iter().any(|c| has_system(c, &[SNOMED]) && self.specialty.contains(&c.code))
                || referral.codes.iter().any(|c| has_system(c, ICD10) && self.icd10.iter().any(|m| m.matches(&c.code)))
                || referral.codes.iter().any(|c| has_system(c, &[SNOMED]) && self.snomed.contains(&c.code));
        let language = referral.language.as_deref().map(str::to_ascii_lowercase);
        (!code_conditions || code_match)
            && self.category.is_none_or(|c| c == referral.category)
            && (self.priority.is_empty() || self.priority.contains(&referral.priority))
            && (self.partner.is_empty() || self.partner.contains(&referral.partner))
            && (self.language.is_empty()
                || language.as_deref().is_some_and(|l| {
                    self.language.iter().any(|prefix| l == prefix || l.starts_with(&format!("{prefix}-")))
                }))
            && self.interpreter.is_none_or(|needed| needed == referral.interpreter_required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
default_queue = "triage"
queue = [
  { code = "triage", name = "Triage" },
  { code = "cardiology", name = "Cardiology" },
  { code = "vascular-surgery", name = "Vascular surgery" },
  { code = "arabic-desk", name = "Arabic desk" },
]
[sla]
routine = "10d"
urgent = "72h"
asap = "24h"
stat = "4h"
[partner_sla.fast-partner]
urgent = "48h"
[[rule]]
id = "arabic-interpreter"
queue = "arabic-desk"
language = ["ar"]
interpreter = true
[[rule]]
id = "aneurysm"
queue = "vascular-surgery"
icd10 = ["I71"]
[[rule]]
id = "cardiology"
queue = "cardiology"
specialty = ["394579002"]
icd10 = ["I20-I25", "I48"]
"#;

    fn referral(codes: &[(&str, &str)]) -> Referral {
        Referral {
            partner: "p".into(),
            identifier_system: "s".into(),
            identifier_value: "v".into(),
            service_request_entry: 0,
            subject_reference: "Patient/1".into(),
            category: Category::Referral,
            priority: Priority::Urgent,
            specialties: Vec::new(),
            codes: codes.iter().map(|(s, c)| Coding { system: Some(s.to_string()), code: c.to_string() }).collect(),
            language: None,
            interpreter_required: false,
        }
    }

    const ICD: &str = "http://hl7.org/fhir/sid/icd-10-cm";

    #[test]
    fn first_matching_rule_wins_and_ranges_work() {
        let config = RoutingConfig::from_toml(CONFIG).unwrap();
        let now = Utc::now();
        assert_eq!(config.route(&referral(&[(ICD, "I25.10")]), now).queue, "cardiology");
        assert_eq!(config.route(&referral(&[(ICD, "I48.91")]), now).queue, "cardiology");
        assert_eq!(config.route(&referral(&[(ICD, "I26.0")]), now).queue, "triage");
        assert_eq!(config.route(&referral(&[(ICD, "I71.4")]), now).rule, "aneurysm");
        assert_eq!(config.route(&referral(&[("http://other", "I71.4")]), now).rule, "default");
        let mut arabic = referral(&[(ICD, "I71.4")]);
        arabic.language = Some("ar-SA".into());
        arabic.interpreter_required = true;
        assert_eq!(config.route(&arabic, now).queue, "arabic-desk");
        arabic.interpreter_required = false;
        assert_eq!(config.route(&arabic, now).queue, "vascular-surgery");
    }

    #[test]
    fn sla_by_priority_and_partner() {
        let config = RoutingConfig::from_toml(CONFIG).unwrap();
        let now = Utc::now();
        let mut r = referral(&[]);
        assert_eq!(config.route(&r, now).due, now + Duration::hours(72));
        r.priority = Priority::Stat;
        assert_eq!(config.route(&r, now).due, now + Duration::hours(4));
        r.priority = Priority::Urgent;
        r.partner = "fast-partner".into();
        assert_eq!(config.route(&r, now).due, now + Duration::hours(48));
    }

    #[test]
    fn bad_configurations_are_refused_with_the_rule_named() {
        let bad_queue = CONFIG.replace("queue = \"vascular-surgery\"\nicd10", "queue = \"nowhere\"\nicd10");
        assert!(RoutingConfig::from_toml(&bad_queue).unwrap_err().contains("rule 'aneurysm'"));
        let bad_range = CONFIG.replace("I20-I25", "I25-I20");
        assert!(RoutingConfig::from_toml(&bad_range).unwrap_err().contains("rule 'cardiology'"));
        let bad_sla = CONFIG.replace("stat = \"4h\"", "stat = \"soon\"");
        assert!(RoutingConfig::from_toml(&bad_sla).unwrap_err().contains("sla.stat"));
        let no_condition = format!("{CONFIG}\n[[rule]]\nid = \"all\"\nqueue = \"triage\"\n");
        assert!(RoutingConfig::from_toml(&no_condition).unwrap_err().contains("no condition"));
        let unknown_field = format!("{CONFIG}\n[[rule]]\nid = \"x\"\nqueue = \"triage\"\nspecialties = [\"1\"]\n");
        assert!(RoutingConfig::from_toml(&unknown_field).is_err());
    }

    #[test]
    fn escalation_targets_are_mail_addresses_or_webhooks_of_declared_queues() {
        let with = |table: &str| RoutingConfig::from_toml(&format!("{CONFIG}\n[escalate_to]\n{table}\n"));
        let config = with(r#"triage = ["mailto:lead@hospital.example", "https://pager.example/hook"]"#).unwrap();
        assert_eq!(config.escalate_to("triage"), ["mailto:lead@hospital.example", "https://pager.example/hook"]);
        assert!(config.escalate_to("cardiology").is_empty());
        assert!(with(r#"nowhere = ["mailto:a@b.example"]"#).unwrap_err().contains("not a declared queue"));
        for bad in ["lead@hospital.example", "mailto:a@b.example,c@d.example", "mailto:a@b.example?cc=x@y", "ftp://x"] {
            let refused = with(&format!("triage = [{bad:?}]")).unwrap_err();
            assert!(refused.contains("neither a mailto"), "{bad}: {refused}");
        }
    }

    #[test]
    fn the_shipped_rules_load() {
        let config = RoutingConfig::from_toml(include_str!("../../../config/routing.toml")).unwrap();
        assert!(config.queues.len() >= 11, "at least 10 specialties plus triage");
        assert!(config.rules.len() >= 10);
    }
}
