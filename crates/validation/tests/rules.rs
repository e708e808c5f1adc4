//! One test per validation rule, on the embedded core package plus small inline profiles.

use std::sync::OnceLock;

use rex_fhir::{BindingStrength, Issue, Rule, Severity};
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
        // A lab result profile that slices value[x] by type (as IPS does), one whose own type list restricts
        // value[x], and one with a type slice but no slicing declared.
        let lab = |url: &str, extra: Vec<Value>| {
            let mut elements = vec![
                json!({"id": "Observation.value[x]", "path": "Observation.value[x]",
                       "slicing": {"discriminator": [{"type": "type", "path": "$this"}], "rules": "open"}}),
                json!({"id": "Observation.value[x]:valueQuantity", "path": "Observation.value[x]",
                       "sliceName": "valueQuantity", "type": [{"code": "Quantity"}]}),
                json!({"id": "Observation.value[x]:valueQuantity.system", "path": "Observation.value[x].system",
                       "min": 1, "patternUri": "http://unitsofmeasure.org"}),
                json!({"id": "Observation.value[x]:valueCodeableConcept", "path": "Observation.value[x]",
                       "sliceName": "valueCodeableConcept", "type": [{"code": "CodeableConcept"}]}),
            ];
            elements.extend(extra);
            json!({"resourceType": "StructureDefinition", "url": url, "name": "TestLab", "status": "active",
                   "kind": "resource", "abstract": false, "type": "Observation", "derivation": "constraint",
                   "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
                   "differential": {"element": elements}})
        };
        defs.add_resource(lab(LAB, vec![]));
        let restricted = json!({"id": "Observation.value[x]", "path": "Observation.value[x]",
            "slicing": {"discriminator": [{"type": "type", "path": "$this"}], "rules": "open"},
            "type": [{"code": "Quantity"}, {"code": "CodeableConcept"}]});
        let mut restricted_lab = lab(LAB_RESTRICTED, vec![]);
        restricted_lab["differential"]["element"][0] = restricted;
        defs.add_resource(restricted_lab);
        let mut implicit = lab(LAB_IMPLICIT_SLICING, vec![]);
        implicit["differential"]["element"].as_array_mut().unwrap().remove(0);
        defs.add_resource(implicit);
        // An extension whose context is a complex datatype.
        defs.add_resource(json!({
            "resourceType": "StructureDefinition", "url": CC_EXTENSION, "name": "CcNote", "status": "active",
            "kind": "complex-type", "abstract": false, "type": "Extension", "derivation": "constraint",
            "context": [{"type": "element", "expression": "CodeableConcept"}],
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
            "differential": {"element": [
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": CC_EXTENSION},
                {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "string"}]}
            ]}
        }));
        Validator::new(defs)
    })
}

const LAB: &str = "http://example.org/fhir/StructureDefinition/test-lab";
const LAB_RESTRICTED: &str = "http://example.org/fhir/StructureDefinition/test-lab-restricted";
const LAB_IMPLICIT_SLICING: &str = "http://example.org/fhir/StructureDefinition/test-lab-implicit";
const CC_EXTENSION: &str = "http://example.org/fhir/StructureDefinition/cc-note";

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

/// Issues carry the rule they report as data, made of what their text is made of.
#[test]
fn issues_carry_their_rule() {
    let rule_at = |issues: &[Issue], expr: &str, needle: &str| {
        let found = issues.iter().find(|i| i.expression.as_deref() == Some(expr) && i.diagnostics.contains(needle));
        found.and_then(|i| i.rule.as_deref().cloned())
    };
    let e = errors(&json!({"resourceType": "Observation", "status": "final"}), &[]);
    let cardinality =
        Rule::Cardinality { element: "Observation.code".into(), min: 1, max: Some(1), found: 0, profile: None };
    assert_eq!(rule_at(&e, "Observation.code", "minimum required"), Some(cardinality));
    let e = errors(&json!({"resourceType": "Patient", "gender": "mail"}), &[]);
    let binding = Rule::Binding {
        value_set: "http://hl7.org/fhir/ValueSet/administrative-gender".into(),
        strength: BindingStrength::Required,
    };
    assert_eq!(rule_at(&e, "Patient.gender", "not in the value set"), Some(binding));
    let e = errors(&json!({"resourceType": "Patient", "extension": [{"url": "http://example.org/x"}]}), &[]);
    assert!(
        matches!(rule_at(&e, "Patient.extension[0]", "ext-1"), Some(Rule::Constraint { key, .. }) if key == "ext-1"),
        "{e:?}"
    );
    let bad =
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:other", "value": "1"}], "gender": "female"});
    let e = errors(&bad, &[P]);
    let slice =
        Rule::Slice { element: "Patient.identifier".into(), name: "mrn".into(), min: 1, max: Some(1), found: 0 };
    assert_eq!(rule_at(&e, "Patient.identifier", "mrn"), Some(slice));
    let closed = Rule::ClosedSlicing { profile: P.into() };
    assert_eq!(rule_at(&e, "Patient.identifier[0]", "does not match any known slice"), Some(closed));
    let claim = json!({"resourceType": "Patient", "meta": {"profile": ["http://example.org/unknown"]}});
    let claimed = validator().validate(&claim, &[]);
    let url = claimed.iter().find_map(rex_validation::unknown_profile_claim);
    assert_eq!(url, Some("http://example.org/unknown"), "{claimed:?}");
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

fn lab_result(value: (&str, Value)) -> Value {
    let mut obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}});
    obs[value.0] = value.1;
    obs
}

#[test]
fn type_slices_constrain_their_type_and_keep_the_others() {
    let quantity = (
        "valueQuantity",
        json!({"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}),
    );
    let coded =
        ("valueCodeableConcept", json!({"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}));
    let text = ("valueString", json!("see report"));
    for profile in [LAB, LAB_IMPLICIT_SLICING] {
        for value in [quantity.clone(), coded.clone(), text.clone()] {
            let e = errors(&lab_result(value.clone()), &[profile]);
            assert!(e.is_empty(), "{profile} {}: {e:?}", value.0);
        }
        // the Quantity slice's own rules apply to a Quantity
        let wrong_units =
            ("valueQuantity", json!({"value": 13.2, "unit": "g/dL", "system": "http://example.org/units"}));
        let e = errors(&lab_result(wrong_units), &[profile]);
        assert!(has(&e, "Observation.valueQuantity.system", "pattern"), "{profile}: {e:?}");
        let e = errors(&lab_result(("valueQuantity", json!({"value": 13.2}))), &[profile]);
        assert!(e.iter().any(|i| i.diagnostics.contains("system")), "{profile}: {e:?}");
    }
    // the profile's own type list on value[x] is what removes types
    let e = errors(&lab_result(text), &[LAB_RESTRICTED]);
    assert!(has(&e, "Observation.valueString", "The type 'String' is not valid"), "{e:?}");
    assert!(errors(&lab_result(quantity), &[LAB_RESTRICTED]).is_empty());
}

#[test]
fn datatype_extension_contexts_allow_every_element_of_that_type() {
    let translation = json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/translation",
        "extension": [{"url": "lang", "valueCode": "fr"}, {"url": "content", "valueString": "Asthme"}]}]});
    // `translation` (contexts string, markdown, code) on Coding.display, a string
    let condition = json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001", "display": "Asthma",
                             "_display": translation.clone()}]}});
    assert!(errors(&condition, &[]).is_empty(), "{:?}", errors(&condition, &[]));
    // ... and not on a date
    let patient = json!({"resourceType": "Patient", "birthDate": "1970-01-01", "_birthDate": translation});
    let e = errors(&patient, &[]);
    assert!(has(&e, "Patient.birthDate.extension[0]", "not allowed to be used at this point"), "{e:?}");
    // A CodeableConcept context: on Condition.code, not on Condition.subject (a Reference).
    let note = json!([{"url": CC_EXTENSION, "valueString": "as told by the patient"}]);
    let coded = json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
        "code": {"text": "asthma", "extension": note.clone()}});
    assert!(errors(&coded, &[]).is_empty(), "{:?}", errors(&coded, &[]));
    let misplaced = json!({"resourceType": "Condition", "code": {"text": "asthma"},
        "subject": {"reference": "Patient/1", "extension": note}});
    assert!(
        has(&errors(&misplaced, &[]), "Condition.subject.extension[0]", "not allowed"),
        "{:?}",
        errors(&misplaced, &[])
    );
}
