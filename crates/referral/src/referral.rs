//! Finding the referral in a transaction Bundle: its ServiceRequest, the sending partner, its
//! business identifier and what routing needs to know.

use rex_fhir::{Issue, IssueCode};
use rex_i18n::msg;
use serde_json::Value;

use crate::{PARTNER_SYSTEM, REX_CANONICAL};

/// Category codes of rex's referral categories.
pub const CATEGORY_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/referral-category";
/// SNOMED CT "Patient referral", also accepted as the category of a referral.
const SNOMED_REFERRAL: &str = "3457005";
const SNOMED: &str = "http://snomed.info/sct";
const BCP47: &str = "urn:ietf:bcp:47";
const INTERPRETER_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Referral,
    SecondOpinion,
}

impl Category {
    pub fn code(self) -> &'static str {
        match self {
            Category::Referral => "referral",
            Category::SecondOpinion => "second-opinion",
        }
    }
}

/// ServiceRequest.priority; `routine` when absent, as the spec says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    Routine,
    Urgent,
    Asap,
    Stat,
}

impl Priority {
    pub fn parse(code: &str) -> Option<Priority> {
        match code {
            "routine" => Some(Priority::Routine),
            "urgent" => Some(Priority::Urgent),
            "asap" => Some(Priority::Asap),
            "stat" => Some(Priority::Stat),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
            Priority::Asap => "asap",
            Priority::Stat => "stat",
        }
    }
}

/// A code with its system, as routing compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coding {
    pub system: Option<String>,
    pub code: String,
}

/// The referral a Bundle carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Referral {
    /// The partner's id in rex (from its Organization identifier in [`PARTNER_SYSTEM`]).
    pub partner: String,
    pub identifier_system: String,
    pub identifier_value: String,
    /// Index of the ServiceRequest entry in the Bundle.
    pub service_request_entry: usize,
    /// ServiceRequest.subject.reference as written in the Bundle.
    pub subject_reference: String,
    pub category: Category,
    pub priority: Priority,
    /// ServiceRequest.performerType codings: the requested specialty.
    pub specialties: Vec<Coding>,
    /// ServiceRequest.code and reasonCode codings.
    pub codes: Vec<Coding>,
    /// The patient's preferred language (BCP-47), once the Patient is known.
    pub language: Option<String>,
    pub interpreter_required: bool,
}

fn codings(concept: &Value) -> impl Iterator<Item = Coding> + '_ {
    concept["coding"].as_array().into_iter().flatten().filter_map(|coding| {
        Some(Coding {
            system: coding["system"].as_str().map(str::to_string),
            code: coding["code"].as_str()?.to_string(),
        })
    })
}

fn concepts(value: &Value) -> impl Iterator<Item = &Value> {
    match value {
        Value::Array(items) => items.iter().collect::<Vec<_>>().into_iter(),
        Value::Null => Vec::new().into_iter(),
        single => vec![single].into_iter(),
    }
}

/// The category of a ServiceRequest, if it is a referral or second-opinion request.
pub fn category_of(service_request: &Value) -> Option<Category> {
    concepts(&service_request["category"]).flat_map(codings).find_map(|coding| {
        match (coding.system.as_deref(), coding.code.as_str()) {
            (Some(CATEGORY_SYSTEM), "second-opinion") => Some(Category::SecondOpinion),
            (Some(CATEGORY_SYSTEM), "referral") | (Some(SNOMED), SNOMED_REFERRAL) => Some(Category::Referral),
            _ => None,
        }
    })
}

fn entries(bundle: &Value) -> &[Value] {
    bundle["entry"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The entry a reference points at inside the Bundle (by fullUrl, or `Type/id` of a resource with an id).
pub fn resolve<'a>(bundle: &'a Value, reference: &str) -> Option<&'a Value> {
    entries(bundle)
        .iter()
        .find(|entry| {
            entry["fullUrl"].as_str() == Some(reference) || {
                let resource = &entry["resource"];
                match (resource["resourceType"].as_str(), resource["id"].as_str()) {
                    (Some(rt), Some(id)) => {
                        reference == format!("{rt}/{id}") || reference.ends_with(&format!("/{rt}/{id}"))
                    }
                    _ => false,
                }
            }
        })
        .map(|entry| &entry["resource"])
}

fn partner_of(organization: &Value) -> Option<String> {
    organization["identifier"].as_array()?.iter().find_map(|identifier| {
        (identifier["system"].as_str() == Some(PARTNER_SYSTEM))
            .then(|| identifier["value"].as_str().map(str::to_string))
            .flatten()
    })
}

/// Finds the sending partner: the requester Organization, the requester PractitionerRole's
/// Organization, or else the one partner Organization in the Bundle.
fn find_partner(bundle: &Value, service_request: &Value) -> Option<String> {
    let requester = service_request["requester"]["reference"].as_str().and_then(|r| resolve(bundle, r));
    let organization = match requester {
        Some(resource) if resource["resourceType"] == "Organization" => Some(resource),
        Some(resource) if resource["resourceType"] == "PractitionerRole" => {
            resource["organization"]["reference"].as_str().and_then(|r| resolve(bundle, r))
        }
        _ => None,
    };
    if let Some(partner) = organization.and_then(partner_of) {
        return Some(partner);
    }
    let mut partners = entries(bundle)
        .iter()
        .filter(|entry| entry["resource"]["resourceType"] == "Organization")
        .filter_map(|entry| partner_of(&entry["resource"]));
    let first = partners.next()?;
    partners.next().is_none().then_some(first)
}

impl Referral {
    /// Recognises the referral in a transaction Bundle: `Ok(None)` when the Bundle holds no
    /// ServiceRequest with a referral or second-opinion category, issues (with locations) when it
    /// holds one that cannot be taken in.
    pub fn recognise(bundle: &Value) -> Result<Option<Referral>, Vec<Issue>> {
        let candidates: Vec<(usize, &Value, Category)> = entries(bundle)
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry["resource"]["resourceType"] == "ServiceRequest")
            .filter_map(|(index, entry)| category_of(&entry["resource"]).map(|c| (index, &entry["resource"], c)))
            .collect();
        let (index, service_request, category) = match candidates.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            [_, second, ..] => {
                return Err(vec![
                    Issue::error(IssueCode::BusinessRule, msg!("referral-one-service-request"))
                        .at(format!("Bundle.entry[{}].resource", second.0)),
                ]);
            }
        };
        let at = |path: &str| format!("Bundle.entry[{index}].resource{path}");
        let mut issues = Vec::new();
        let identifier = service_request["identifier"].as_array().and_then(|ids| {
            ids.iter().find_map(|id| Some((id["system"].as_str()?.to_string(), id["value"].as_str()?.to_string())))
        });
        if identifier.is_none() {
            issues.push(Issue::error(IssueCode::Required, msg!("referral-identifier")).at(at(".identifier")));
        }
        let partner = find_partner(bundle, service_request);
        if partner.is_none() {
            issues.push(
                Issue::error(IssueCode::Required, msg!("referral-partner-unknown", system = PARTNER_SYSTEM))
                    .at(at(".requester")),
            );
        }
        let priority = match service_request["priority"].as_str() {
            None => Priority::Routine,
            Some(code) => Priority::parse(code).unwrap_or_else(|| {
                issues.push(
                    Issue::error(IssueCode::CodeInvalid, msg!("referral-unknown-priority", code)).at(at(".priority")),
                );
                Priority::Routine
            }),
        };
        let subject_reference = service_request["subject"]["reference"].as_str().unwrap_or_default().to_string();
        if subject_reference.is_empty() {
            issues.push(Issue::error(IssueCode::Required, msg!("referral-patient")).at(at(".subject")));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let (identifier_system, identifier_value) = identifier.unwrap_or_default();
        let mut codes: Vec<Coding> = concepts(&service_request["code"]).flat_map(codings).collect();
        codes.extend(concepts(&service_request["reasonCode"]).flat_map(codings));
        let mut referral = Referral {
            partner: partner.unwrap_or_default(),
            identifier_system,
            identifier_value,
            service_request_entry: index,
            subject_reference,
            category,
            priority,
            specialties: concepts(&service_request["performerType"]).flat_map(codings).collect(),
            codes,
            language: None,
            interpreter_required: false,
        };
        if let Some(patient) = resolve(bundle, &referral.subject_reference) {
            referral.read_patient(patient);
        }
        Ok(Some(referral))
    }

    /// Takes the preferred language and interpreter need from the Patient.
    pub fn read_patient(&mut self, patient: &Value) {
        let communications = patient["communication"].as_array().map(Vec::as_slice).unwrap_or_default();
        let preferred = communications.iter().find(|c| c["preferred"] == true).or_else(|| communications.first());
        self.language = preferred.and_then(|c| {
            let codings: Vec<Coding> = codings(&c["language"]).collect();
            codings
                .iter()
                .find(|coding| coding.system.as_deref() == Some(BCP47))
                .or(codings.first())
                .map(|coding| coding.code.clone())
        });
        self.interpreter_required = patient["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|ext| ext["url"] == INTERPRETER_EXTENSION && ext["valueBoolean"] == true);
    }
}

/// The canonical URL of one of rex's StructureDefinitions.
pub fn structure_definition(name: &str) -> String {
    format!("{REX_CANONICAL}/StructureDefinition/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle() -> Value {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:org", "resource": {"resourceType": "Organization", "identifier": [{"system": PARTNER_SYSTEM, "value": "angeles-mx"}]}},
            {"fullUrl": "urn:uuid:role", "resource": {"resourceType": "PractitionerRole", "organization": {"reference": "urn:uuid:org"}}},
            {"fullUrl": "urn:uuid:pat", "resource": {"resourceType": "Patient",
                "communication": [{"language": {"coding": [{"system": BCP47, "code": "en"}]}},
                                  {"language": {"coding": [{"system": BCP47, "code": "es-MX"}]}, "preferred": true}],
                "extension": [{"url": INTERPRETER_EXTENSION, "valueBoolean": true}]}},
            {"fullUrl": "urn:uuid:sr", "resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "priority": "urgent",
                "category": [{"coding": [{"system": SNOMED, "code": "3457005"}]}],
                "identifier": [{"system": "https://angeles.mx/referrals", "value": "R-1"}],
                "subject": {"reference": "urn:uuid:pat"}, "requester": {"reference": "urn:uuid:role"},
                "performerType": {"coding": [{"system": SNOMED, "code": "394579002"}]},
                "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I25.10"}]}]}}
        ]})
    }

    #[test]
    fn recognises_a_referral_with_partner_language_and_codes() {
        let referral = Referral::recognise(&bundle()).unwrap().unwrap();
        assert_eq!(referral.partner, "angeles-mx");
        assert_eq!(
            (referral.identifier_system.as_str(), referral.identifier_value.as_str()),
            ("https://angeles.mx/referrals", "R-1")
        );
        assert_eq!(referral.service_request_entry, 3);
        assert_eq!(referral.priority, Priority::Urgent);
        assert_eq!(referral.category, Category::Referral);
        assert_eq!(referral.language.as_deref(), Some("es-MX"));
        assert!(referral.interpreter_required);
        assert_eq!(referral.codes[0].code, "I25.10");
        assert_eq!(referral.specialties[0].code, "394579002");
    }

    #[test]
    fn ignores_bundles_without_a_referral() {
        let mut plain = bundle();
        plain["entry"][3]["resource"]["category"] = json!([{"text": "lab"}]);
        assert_eq!(Referral::recognise(&plain).unwrap(), None);
    }

    #[test]
    fn reports_what_a_referral_lacks() {
        let mut lacking = bundle();
        let sr = &mut lacking["entry"][3]["resource"];
        sr.as_object_mut().unwrap().remove("identifier");
        sr["priority"] = json!("whenever");
        lacking["entry"][0]["resource"]["identifier"][0]["system"] = json!("http://elsewhere");
        let issues = Referral::recognise(&lacking).unwrap_err();
        let at: Vec<_> = issues.iter().map(|i| i.expression.clone().unwrap()).collect();
        assert_eq!(
            at,
            vec![
                "Bundle.entry[3].resource.identifier",
                "Bundle.entry[3].resource.requester",
                "Bundle.entry[3].resource.priority"
            ]
        );
    }

    #[test]
    fn second_opinion_category() {
        let mut second = bundle();
        second["entry"][3]["resource"]["category"] =
            json!([{"coding": [{"system": CATEGORY_SYSTEM, "code": "second-opinion"}]}]);
        assert_eq!(Referral::recognise(&second).unwrap().unwrap().category, Category::SecondOpinion);
    }
}
