//! What the opinion document says, taken from the FHIR resources: the DiagnosticReport (the
//! opinion), the referral's ServiceRequest (the question) and Patient, and the specialist.

use serde_json::Value;

/// The text of an opinion document, one field per section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opinion {
    pub title: String,
    /// Who issued the document, under the title.
    pub issuer: String,
    pub patient: String,
    pub referral: String,
    pub question: String,
    pub conclusion: String,
    /// One line per coded conclusion.
    pub codes: Vec<String>,
    pub specialist: String,
    pub issued: String,
    /// At the foot of every page.
    pub footer: String,
}

/// The resources an opinion document is made from. `specialist` is the PractitionerRole or
/// Practitioner the report's performer names, when rex holds it.
pub struct Sources<'a> {
    pub report: &'a Value,
    pub service_request: &'a Value,
    pub patient: &'a Value,
    pub specialist: Option<&'a Value>,
}

impl Opinion {
    pub fn from_resources(sources: &Sources) -> Opinion {
        let Sources { report, service_request, patient, specialist } = sources;
        let report_id = report["id"].as_str().unwrap_or_default();
        Opinion {
            title: concept_text(&report["code"]).filter(|t| !t.is_empty()).unwrap_or_else(|| "Second opinion".into()),
            issuer: "Issued through rex, the referral exchange, on behalf of the specialist named below.".into(),
            patient: patient_line(patient),
            referral: referral_line(service_request),
            question: question(service_request),
            conclusion: report["conclusion"].as_str().unwrap_or_default().to_string(),
            codes: report["conclusionCode"].as_array().into_iter().flatten().flat_map(coding_lines).collect(),
            specialist: specialist_line(report, *specialist),
            issued: report["issued"].as_str().unwrap_or_default().to_string(),
            footer: format!("DiagnosticReport/{report_id} · signed by rex: see its Provenance"),
        }
    }
}

fn strings(value: &Value) -> impl Iterator<Item = &str> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn join_present(parts: &[String], separator: &str) -> String {
    parts.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join(separator)
}

fn human_name(name: &Value) -> String {
    if let Some(text) = name["text"].as_str() {
        return text.to_string();
    }
    let given: Vec<&str> = strings(&name["given"]).collect();
    join_present(
        &[
            strings(&name["prefix"]).collect::<Vec<_>>().join(" "),
            given.join(" "),
            name["family"].as_str().unwrap_or_default().into(),
        ],
        " ",
    )
}

fn concept_text(concept: &Value) -> Option<String> {
    concept["text"].as_str().or(concept["coding"][0]["display"].as_str()).map(str::to_string)
}

fn coding_lines(concept: &Value) -> Vec<String> {
    let codings = concept["coding"].as_array().into_iter().flatten();
    let lines: Vec<String> = codings
        .map(|coding| {
            let code = format!(
                "{} {}",
                system_name(coding["system"].as_str().unwrap_or_default()),
                coding["code"].as_str().unwrap_or_default()
            );
            match coding["display"].as_str() {
                Some(display) => format!("{display} ({code})"),
                None => code,
            }
        })
        .collect();
    if lines.is_empty() { concept["text"].as_str().map(str::to_string).into_iter().collect() } else { lines }
}

/// A code system's usual short name.
fn system_name(system: &str) -> &str {
    match system {
        "http://snomed.info/sct" => "SNOMED CT",
        "http://hl7.org/fhir/sid/icd-10" => "ICD-10",
        "http://hl7.org/fhir/sid/icd-10-cm" => "ICD-10-CM",
        "http://loinc.org" => "LOINC",
        other => other,
    }
}

fn patient_line(patient: &Value) -> String {
    let name = patient["name"]
        .as_array()
        .and_then(|names| names.iter().find(|n| n["use"] == "official").or(names.first()).map(human_name));
    let identifier = patient["identifier"][0]["value"].as_str().map(|v| format!("identifier {v}"));
    join_present(
        &[
            name.unwrap_or_default(),
            patient["birthDate"].as_str().map(|d| format!("born {d}")).unwrap_or_default(),
            patient["gender"].as_str().unwrap_or_default().to_string(),
            identifier.unwrap_or_default(),
        ],
        " · ",
    )
}

fn referral_line(service_request: &Value) -> String {
    let kind = strings(&service_request["category"]).next().map(str::to_string).or_else(|| {
        service_request["category"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["coding"].as_array().into_iter().flatten())
            .find_map(|c| c["display"].as_str().map(str::to_string))
    });
    join_present(
        &[
            kind.unwrap_or_default(),
            concept_text(&service_request["code"]).unwrap_or_default(),
            service_request["priority"].as_str().map(|p| format!("priority {p}")).unwrap_or_default(),
            service_request["identifier"][0]["value"]
                .as_str()
                .map(|v| format!("partner reference {v}"))
                .unwrap_or_default(),
            service_request["authoredOn"].as_str().map(|d| format!("sent {d}")).unwrap_or_default(),
        ],
        " · ",
    )
}

/// The clinical question: the referral's notes, else its reasons.
fn question(service_request: &Value) -> String {
    let notes: Vec<&str> =
        service_request["note"].as_array().into_iter().flatten().filter_map(|n| n["text"].as_str()).collect();
    if !notes.is_empty() {
        return notes.join("\n");
    }
    let reasons: Vec<String> =
        service_request["reasonCode"].as_array().into_iter().flatten().filter_map(concept_text).collect();
    reasons.join("\n")
}

fn specialist_line(report: &Value, specialist: Option<&Value>) -> String {
    let performer = &report["performer"][0];
    let named = specialist.map(|s| {
        let name = s["practitioner"]["display"]
            .as_str()
            .map(str::to_string)
            .or_else(|| s["name"].as_array().and_then(|n| n.first()).map(human_name))
            .unwrap_or_default();
        let role = s["specialty"].as_array().and_then(|c| c.first()).and_then(concept_text).unwrap_or_default();
        let organization = s["organization"]["display"].as_str().unwrap_or_default().to_string();
        join_present(&[name, role, organization], " · ")
    });
    let fallback = performer["display"].as_str().or(performer["reference"].as_str()).unwrap_or_default().to_string();
    let line = named.filter(|n| !n.is_empty()).unwrap_or(fallback);
    match performer["reference"].as_str() {
        Some(reference) if !line.contains(reference) => format!("{line} ({reference})"),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_sections_come_from_the_resources() {
        let report = json!({"id": "r1", "code": {"text": "Second opinion"}, "conclusion": "Surgery advised",
            "conclusionCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "60573004", "display": "Aortic valve stenosis"}]}],
            "performer": [{"reference": "PractitionerRole/dr"}], "issued": "2026-12-04T10:00:00Z"});
        let service_request = json!({"category": [{"coding": [{"code": "second-opinion", "display": "Second opinion"}]}],
            "code": {"text": "Cardiology consultation"}, "priority": "urgent", "identifier": [{"value": "REF-1"}],
            "note": [{"text": "Is TAVI preferable to surgery?"}]});
        let patient =
            json!({"name": [{"use": "official", "family": "العلي", "given": ["محمد"]}], "birthDate": "1950-01-02"});
        let specialist = json!({"practitioner": {"display": "Dr. 王芳"}, "specialty": [{"text": "Cardiology"}]});
        let opinion = Opinion::from_resources(&Sources {
            report: &report,
            service_request: &service_request,
            patient: &patient,
            specialist: Some(&specialist),
        });
        assert_eq!(opinion.patient, "محمد العلي · born 1950-01-02");
        assert_eq!(
            opinion.referral,
            "Second opinion · Cardiology consultation · priority urgent · partner reference REF-1"
        );
        assert_eq!(opinion.question, "Is TAVI preferable to surgery?");
        assert_eq!(opinion.codes, ["Aortic valve stenosis (SNOMED CT 60573004)"]);
        assert_eq!(opinion.specialist, "Dr. 王芳 · Cardiology (PractitionerRole/dr)");
        assert!(opinion.footer.starts_with("DiagnosticReport/r1"));
    }
}
