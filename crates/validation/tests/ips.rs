//! IPS 2.0.0 built in: official examples and rex's own examples pass against the embedded IPS profiles, and
//! each invalid variant gets its error. Needs nothing outside the repository (no `../shared`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rex_fhir::{Issue, Severity};
use rex_validation::{Definitions, Validator};
use serde_json::Value;

const IPS: &str = "http://hl7.org/fhir/uv/ips/StructureDefinition/";

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let mut defs = Definitions::r4_core().unwrap();
        assert!(defs.add_ips().unwrap() > 70, "the IPS profiles, value sets and what they use");
        Validator::new(defs)
    })
}

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ips").join(name)
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn errors(issues: &[Issue]) -> Vec<String> {
    issues.iter().filter(|i| i.is_error()).map(|i| format!("{:?} {}", i.expression, i.diagnostics)).collect()
}

/// The official examples (which declare no profile) with the IPS profile each must meet.
const OFFICIAL: &[(&str, &str)] = &[
    ("bundle-minimal.json", "Bundle-uv-ips"),
    ("IPS-bundle-01.json", "Bundle-uv-ips"),
    ("Immunization-75680.json", "Immunization-uv-ips"),
    ("medicationStatement-39-07-1.json", "MedicationStatement-uv-ips"),
    ("medication-39-07-1.json", "Medication-uv-ips"),
    ("condition-39-07-1.json", "Condition-uv-ips"),
    ("observation-hemoglobin.json", "Observation-results-laboratory-pathology-uv-ips"),
    ("observation-urine-wbc-range.json", "Observation-results-laboratory-pathology-uv-ips"),
    ("observation-pregnancy-status-1.json", "Observation-pregnancy-status-uv-ips"),
    ("patient-39-07-1.json", "Patient-uv-ips"),
    ("allergyintolerance-multiple-codings.json", "AllergyIntolerance-uv-ips"),
];

#[test]
fn official_ips_examples_pass() {
    let files = std::fs::read_dir(folder("official")).unwrap().count();
    assert_eq!(files, OFFICIAL.len(), "every official example has its profile here");
    for (file, profile) in OFFICIAL {
        let profile = format!("{IPS}{profile}");
        assert!(validator().knows_profile(&profile), "{profile}");
        let issues = validator().validate(&read(&folder("official").join(file)), &[&profile]);
        assert!(errors(&issues).is_empty(), "{file}: {:#?}", errors(&issues));
    }
}

#[test]
fn own_ips_examples_pass_against_the_profiles_they_claim() {
    let mut checked = 0;
    for entry in std::fs::read_dir(folder("own")).unwrap() {
        let path = entry.unwrap().path();
        let resource = read(&path);
        let claims = resource["meta"]["profile"].as_array().unwrap();
        for claim in claims {
            assert!(validator().knows_profile(claim.as_str().unwrap()), "{}: {claim}", path.display());
        }
        let issues = validator().validate(&resource, &[]);
        assert!(errors(&issues).is_empty(), "{}: {:#?}", path.display(), errors(&issues));
        assert!(issues.iter().all(|i| rex_validation::unknown_profile_claim(i).is_none()));
        checked += 1;
    }
    assert!(checked >= 12);
}

/// Each invalid variant and the error it must get (location, then a part of the message).
const INVALID: &[(&str, &str, &str)] = &[
    ("lab-quantity-value-not-a-number.json", "Observation.valueQuantity.value", "must be a JSON number"),
    ("medicationstatement-period-ends-before-start.json", "MedicationStatement.effectivePeriod", "per-1"),
    ("medicationstatement-no-effective.json", "MedicationStatement.effective", "minimum required = 1"),
    (
        "immunization-translation-on-a-datetime.json",
        "Immunization.occurrenceDateTime.extension[0]",
        "not allowed to be used at this point",
    ),
    (
        "condition-translation-without-content.json",
        "Condition.code.coding[0].display.extension[0].extension",
        "Extension.extension:content",
    ),
];

#[test]
fn invalid_ips_variants_get_their_error() {
    assert_eq!(std::fs::read_dir(folder("invalid")).unwrap().count(), INVALID.len());
    for (file, location, message) in INVALID {
        let issues = validator().validate(&read(&folder("invalid").join(file)), &[]);
        let found = issues.iter().any(|i| {
            i.severity <= Severity::Error
                && i.expression.as_deref() == Some(*location)
                && i.diagnostics.contains(message)
        });
        assert!(found, "{file}: expected {message:?} at {location}, got {:#?}", errors(&issues));
    }
}

#[test]
fn an_ips_document_is_checked_against_ips() {
    let mut bundle = read(&folder("own/bundle-ips-referral-summary.json"));
    assert!(errors(&validator().validate(&bundle, &[])).is_empty());
    // A lab result of the document whose value is not a Quantity's: found through the Bundle.
    let entries = bundle["entry"].as_array_mut().unwrap();
    let (index, lab) =
        entries.iter_mut().enumerate().find(|(_, e)| e["resource"]["valueQuantity"].is_object()).unwrap();
    lab["resource"]["valueQuantity"]["value"] = Value::from("high");
    let issues = validator().validate(&bundle, &[]);
    let location = format!("Bundle.entry[{index}].resource.valueQuantity.value");
    assert!(issues.iter().any(|i| i.is_error() && i.expression.as_deref() == Some(&location)), "{issues:#?}");
    // Without IPS's Composition the document does not meet Bundle-uv-ips.
    let mut bundle = read(&folder("own/bundle-ips-referral-summary.json"));
    bundle["entry"].as_array_mut().unwrap().remove(0);
    let issues = validator().validate(&bundle, &[]);
    assert!(errors(&issues).iter().any(|e| e.contains("Bundle.entry:composition")), "{issues:#?}");
}
