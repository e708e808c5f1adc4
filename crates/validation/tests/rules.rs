//! One test per validation rule, on the embedded core package plus small inline profiles.

use std::sync::OnceLock;

use rex_fhir::{Issue, Severity};
use rex_validation::{Definitions, Validator};
use serde_json::{Value, json};

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let mut defs = Definitions::r4_core().unwrap();
        defs.add_resource(json!({
            "resourceType": "StructureDefinition",
            "url": "http://example.org/fhir/StructureDefinition/test-patient",
            "name": "TestPatient", "status": "active", "kind": "resource", "abstract": false,
            "type": "Patient", "derivation": "constraint",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
            "differential": {"element": [
                {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1,
                 "slicing": {"discriminator": [{"type": "pattern", "path": "system"}], "rules": "closed"}},
                {"id": "Patient.identifier:mrn", "path": "Patient.identifier", "sliceName": "mrn", "min": 1, "max": "1"},
                {"id": "Patient.identifier:mrn.system", "path": "Patient.identifier.system", "patternUri": "urn:mrn"},
                {"id": "Patient.gender", "path": "Patient.gender", "min": 1, "fixedCode": "female"},
                {"id": "Patient.name.family", "path": "Patient.name.family", "maxLength": 5},
                {"id": "Patient.multipleBirth[x]", "path": "Patient.multipleBirth[x]", "type": [{"code": "integer"}], "maxValueInteger": 3}
            ]}
        }));
        defs.add_resource(json!({
            "resourceType": "Questionnaire", "url": "http://example.org/fhir/Questionnaire/intake", "status": "active",
            "item": [
                {"linkId": "smoker", "type": "boolean", "required": true},
                {"linkId": "packs", "type": "integer", "required": true,
                 "enableWhen": [{"question": "smoker", "operator": "=", "answerBoolean": true}],
                 "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/maxValue", "valueInteger": 10}]},
                {"linkId": "colour", "type": "choice", "answerOption": [
                    {"valueCoding": {"system": "http://example.org/c", "code": "red"}},
                    {"valueCoding": {"system": "http://example.org/c", "code": "blue"}}]},
                {"linkId": "about", "type": "group", "item": [
                    {"linkId": "email", "type": "string", "required": true, "extension": [
                        {"url": "http://hl7.org/fhir/StructureDefinition/regex", "valueString": "[^@]+@[^@]+"}]}]}
            ]
        }));
        Validator::new(defs)
    })
}

fn errors(v: &Value, profiles: &[&str]) -> Vec<Issue> {
    validator().validate(v, profiles).into_iter().filter(Issue::is_error).collect()
}

fn has(issues: &[Issue], expr: &str, needle: &str) -> bool {
    issues.iter().any(|i| i.expression.as_deref() == Some(expr) && i.diagnostics.contains(needle))
}

const P: &str = "http://example.org/fhir/StructureDefinition/test-patient";

#[test]
fn valid_patient_passes() {
    let p = json!({"resourceType": "Patient", "id": "a", "active": true, "name": [{"family": "Doe", "given": ["J"]}], "birthDate": "1970-01-01"});
    assert!(errors(&p, &[]).is_empty(), "{:?}", errors(&p, &[]));
}

#[test]
fn unknown_element_and_array_shape() {
    let e = errors(&json!({"resourceType": "Patient", "foo": 1, "name": {"family": "x"}}), &[]);
    assert!(has(&e, "Patient.foo", "Unrecognized property"), "{e:?}");
    assert!(has(&e, "Patient.name", "must be a JSON array"), "{e:?}");
}

#[test]
fn primitive_formats() {
    let e = errors(
        &json!({"resourceType": "Patient", "id": "a_b", "birthDate": "1970-13-45", "active": "yes",
        "multipleBirthInteger": 1.5, "telecom": [{"system": "email", "value": ""}]}),
        &[],
    );
    assert!(has(&e, "Patient.id", "not a valid id"), "{e:?}");
    assert!(has(&e, "Patient.birthDate", "Not a valid date"), "{e:?}");
    assert!(has(&e, "Patient.active", "boolean"), "{e:?}");
    assert!(has(&e, "Patient.multipleBirthInteger", "integer"), "{e:?}");
    assert!(has(&e, "Patient.telecom[0].value", "empty"), "{e:?}");
}

#[test]
fn cardinality_and_empty() {
    let e = errors(&json!({"resourceType": "Observation", "status": "final", "code": {}}), &[]);
    assert!(has(&e, "Observation.code", "ele-1"), "{e:?}");
    let e = errors(&json!({"resourceType": "Observation", "status": "final"}), &[]);
    assert!(has(&e, "Observation.code", "minimum required = 1"), "{e:?}");
    let e = errors(&json!({"resourceType": "Patient", "name": []}), &[]);
    assert!(has(&e, "Patient.name", "cannot be empty"), "{e:?}");
}

#[test]
fn required_binding() {
    let e = errors(&json!({"resourceType": "Patient", "gender": "mail"}), &[]);
    assert!(has(&e, "Patient.gender", "not in the value set"), "{e:?}");
}

#[test]
fn choice_types() {
    let e =
        errors(&json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueFoo": 1}), &[]);
    assert!(e.iter().any(|i| i.expression.as_deref() == Some("Observation.valueFoo")), "{e:?}");
}

#[test]
fn invariants() {
    let e = errors(&json!({"resourceType": "Patient", "extension": [{"url": "http://example.org/x"}]}), &[]);
    assert!(has(&e, "Patient.extension[0]", "ext-1"), "{e:?}");
    // per-1: start <= end
    let e = errors(
        &json!({"resourceType": "Patient", "name": [{"family": "x", "period": {"start": "2020-01-02", "end": "2020-01-01"}}]}),
        &[],
    );
    assert!(has(&e, "Patient.name[0].period", "per-1"), "{e:?}");
}

#[test]
fn profile_rules() {
    let ok =
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}], "gender": "female"});
    assert!(errors(&ok, &[P]).is_empty(), "{:?}", errors(&ok, &[P]));
    let bad = json!({"resourceType": "Patient", "identifier": [{"system": "urn:other", "value": "1"}], "gender": "male",
        "name": [{"family": "Toolong"}], "multipleBirthInteger": 4});
    let e = errors(&bad, &[P]);
    assert!(has(&e, "Patient.identifier", "mrn"), "slice min: {e:?}");
    assert!(has(&e, "Patient.identifier[0]", "does not match any known slice"), "closed: {e:?}");
    assert!(has(&e, "Patient.gender", "must be 'female'"), "fixed: {e:?}");
    assert!(has(&e, "Patient.name[0].family", "maximum length"), "maxLength: {e:?}");
    assert!(has(&e, "Patient.multipleBirthInteger", "maximum"), "maxValue: {e:?}");
    // declared in meta.profile works the same
    let mut declared = bad.clone();
    declared["meta"] = json!({"profile": [P]});
    assert!(has(&errors(&declared, &[]), "Patient.gender", "must be 'female'"));
}

#[test]
fn unknown_profile_is_an_error() {
    let e = errors(&json!({"resourceType": "Patient", "meta": {"profile": ["http://example.org/unknown"]}}), &[]);
    assert!(has(&e, "Patient.meta.profile[0]", "unknown"), "{e:?}");
    let requested = errors(&json!({"resourceType": "Patient"}), &["http://example.org/unknown"]);
    assert!(has(&requested, "Patient", "unknown"), "{requested:?}");
}

#[test]
fn malformed_language_tags_are_errors() {
    let patient = json!({"resourceType": "Patient", "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "pt_BR"}]}}]});
    assert!(has(&errors(&patient, &[]), "Patient.communication[0].language", "BCP-47"));
}

#[test]
fn unknown_modifier_extension_is_an_error() {
    let e = errors(
        &json!({"resourceType": "Patient", "modifierExtension": [{"url": "http://example.org/m", "valueBoolean": true}]}),
        &[],
    );
    assert!(has(&e, "Patient.modifierExtension[0]", "modifier"), "{e:?}");
    let w = validator().validate(
        &json!({"resourceType": "Patient", "extension": [{"url": "http://example.org/m", "valueBoolean": true}]}),
        &[],
    );
    assert!(w.iter().all(|i| i.severity != Severity::Error), "{w:?}");
}

#[test]
fn known_extension_checked_against_definition() {
    // patient-birthPlace takes an Address
    let e = errors(
        &json!({"resourceType": "Patient", "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueBoolean": true}]}),
        &[],
    );
    assert!(!e.is_empty());
}

#[test]
fn references() {
    let e = errors(
        &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Medication/1"}}),
        &[],
    );
    assert!(has(&e, "Observation.subject", "not a valid Target"), "{e:?}");
}

#[test]
fn xhtml_safety() {
    let e = errors(
        &json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script><p onclick=\"x()\">a</p></div>"}}),
        &[],
    );
    assert!(has(&e, "Patient.text.div", "script"), "{e:?}");
    assert!(has(&e, "Patient.text.div", "onclick"), "{e:?}");
}

#[test]
fn bundle_rules_and_entry_paths() {
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "resource": {"resourceType": "Patient", "birthDate": "x"}},
        {"fullUrl": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "resource": {"resourceType": "Patient"}}
    ]});
    let e = errors(&b, &[]);
    assert!(has(&e, "Bundle.entry[0].resource.birthDate", "date"), "{e:?}");
    assert!(has(&e, "Bundle.entry[1]", "Duplicate fullUrl"), "{e:?}");
    let doc = json!({"resourceType": "Bundle", "type": "document", "identifier": {"system": "urn:x", "value": "1"}, "timestamp": "2020-01-01T00:00:00Z",
        "entry": [{"fullUrl": "urn:uuid:c757873d-ec9a-4326-a141-556f43239521", "resource": {"resourceType": "Patient"}}]});
    assert!(has(&errors(&doc, &[]), "Bundle.entry[0]", "Composition"));
}

#[test]
fn deterministic_and_no_panic_on_garbage() {
    let v = json!({"resourceType": "Bundle", "entry": [null, 1, {"resource": "x"}, {"resource": {"resourceType": "Nope"}}]});
    let a = validator().validate(&v, &[]);
    assert_eq!(a, validator().validate(&v, &[]));
    assert!(a.iter().any(Issue::is_error));
    assert!(!validator().validate(&json!([1, 2]), &[]).is_empty());
}

#[test]
fn questionnaire_response_against_its_questionnaire() {
    let qr = |items: Value| {
        json!({"resourceType": "QuestionnaireResponse", "status": "completed",
               "questionnaire": "http://example.org/fhir/Questionnaire/intake", "item": items})
    };
    let ok = qr(json!([
        {"linkId": "smoker", "answer": [{"valueBoolean": false}]},
        {"linkId": "colour", "answer": [{"valueCoding": {"system": "http://example.org/c", "code": "red"}}]},
        {"linkId": "about", "item": [{"linkId": "email", "answer": [{"valueString": "a@b"}]}]}
    ]));
    assert!(errors(&ok, &[]).is_empty(), "{:?}", errors(&ok, &[]));

    let bad = qr(json!([
        {"linkId": "smoker", "answer": [{"valueString": "yes"}]},
        {"linkId": "colour", "answer": [{"valueCoding": {"system": "http://example.org/c", "code": "green"}}]},
        {"linkId": "about", "item": [{"linkId": "email", "answer": [{"valueString": "nope"}]}]},
        {"linkId": "unknown"}
    ]));
    let e = errors(&bad, &[]);
    assert!(has(&e, "QuestionnaireResponse.item[0].answer[0].valueString", "must be of the type boolean"), "{e:?}");
    assert!(has(&e, "QuestionnaireResponse.item[1].answer[0]", "not in the set of permitted values"), "{e:?}");
    assert!(has(&e, "QuestionnaireResponse.item[2].item[0].answer[0].valueString", "regex"), "{e:?}");
    assert!(has(&e, "QuestionnaireResponse.item[3]", "not found in questionnaire"), "{e:?}");
    assert_eq!(e.len(), 4, "{e:?}");

    // enableWhen: `packs` is required only for smokers, and then limited by maxValue
    let smoker = qr(json!([
        {"linkId": "smoker", "answer": [{"valueBoolean": true}]},
        {"linkId": "about", "item": [{"linkId": "email", "answer": [{"valueString": "a@b"}]}]}
    ]));
    let e = errors(&smoker, &[]);
    assert!(has(&e, "QuestionnaireResponse", "required item 'packs'"), "{e:?}");
    let heavy = qr(json!([
        {"linkId": "smoker", "answer": [{"valueBoolean": true}]},
        {"linkId": "packs", "answer": [{"valueInteger": 12}]},
        {"linkId": "about", "item": [{"linkId": "email", "answer": [{"valueString": "a@b"}]}]}
    ]));
    let e = errors(&heavy, &[]);
    assert!(
        has(&e, "QuestionnaireResponse.item[1].answer[0].valueInteger", "greater than the allowed maximum"),
        "{e:?}"
    );

    // an in-progress response may miss required answers (warnings only)
    let partial = json!({"resourceType": "QuestionnaireResponse", "status": "in-progress",
                         "questionnaire": "http://example.org/fhir/Questionnaire/intake"});
    assert!(errors(&partial, &[]).is_empty(), "{:?}", errors(&partial, &[]));
}

#[test]
fn unresolvable_questionnaire_is_a_warning() {
    let qr = json!({"resourceType": "QuestionnaireResponse", "status": "completed",
                    "questionnaire": "http://example.org/fhir/Questionnaire/unknown"});
    let issues = validator().validate(&qr, &[]);
    assert!(!issues.iter().any(Issue::is_error), "{issues:?}");
    assert!(issues.iter().any(|i| i.severity == Severity::Warning && i.diagnostics.contains("could not be resolved")));
}
