use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::datetime::parse_date_range;

fn registry() -> &'static SearchRegistry {
    SearchRegistry::r4()
}

/// An example resource from the official package, or `None` (with a note) where it is not installed.
fn example(file: &str) -> Option<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fhir-r4-examples/package");
    if !dir.is_dir() {
        println!("skipping: {} is absent", dir.display());
        return None;
    }
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    Some(serde_json::from_str(&text).unwrap())
}

fn values<'a>(entries: &'a [IndexEntry], param: &str) -> Vec<&'a IndexValue> {
    entries.iter().filter(|e| e.param == param).map(|e| &e.value).collect()
}

fn token(system: Option<&str>, code: &str) -> IndexValue {
    IndexValue::Token { system: system.map(str::to_string), code: Some(code.to_string()) }
}

fn reference(target_type: &str, id: &str) -> IndexValue {
    IndexValue::Reference {
        target_type: Some(target_type.to_string()),
        target_id: Some(id.to_string()),
        url: format!("{target_type}/{id}"),
    }
}

fn date(text: &str) -> IndexValue {
    let (low, high) = parse_date_range(text).unwrap();
    IndexValue::Date { low, high }
}

#[test]
fn registry_lists_concrete_types_and_their_parameters() {
    let registry = registry();
    let types: Vec<&str> = registry.resource_types().collect();
    assert_eq!(types.len(), 146);
    assert!(types.is_sorted());
    assert!(registry.is_resource_type("Patient") && registry.is_resource_type("Bundle"));
    assert!(!registry.is_resource_type("Resource") && !registry.is_resource_type("DomainResource"));
    assert!(!registry.is_resource_type("patient"));

    for code in ["name", "identifier", "birthdate", "family", "_tag", "_profile", "_security", "_source", "_id"] {
        let def = registry.param("Patient", code).unwrap_or_else(|| panic!("Patient has {code}"));
        assert!(def.is_supported(), "{code}");
    }
    assert_eq!(registry.param("Patient", "birthdate").unwrap().param_type, ParamType::Date);
    assert_eq!(registry.param("Patient", "name").unwrap().param_type, ParamType::String);
    assert!(registry.param("Patient", "code").is_none());
    assert!(registry.params("NoSuchType").is_empty());
    for resource_type in registry.resource_types() {
        let codes: Vec<&str> = registry.params(resource_type).iter().map(|d| d.code.as_str()).collect();
        assert!(codes.is_sorted(), "{resource_type}");
        assert!(codes.contains(&"_lastUpdated"), "{resource_type}");
    }
    // Bundle is a Resource but not a DomainResource, so it has no narrative to search.
    assert!(registry.param("Bundle", "_text").is_none());
    assert!(registry.param("Patient", "_text").is_some());
}

#[test]
fn multi_base_parameters_keep_only_their_own_alternative() {
    let def = registry().param("Condition", "patient").unwrap();
    assert_eq!(def.param_type, ParamType::Reference);
    assert_eq!(def.expression, "Condition.subject.where(resolve() is Patient)");
    assert!(def.targets.iter().any(|t| t == "Patient"));
    assert!(def.is_supported());
    let date = registry().param("Observation", "date").unwrap();
    assert_eq!(date.expression, "Observation.effective");
    let composite = registry().param("Observation", "code-value-quantity").unwrap();
    assert_eq!(composite.param_type, ParamType::Composite);
    assert!(!composite.is_supported());
}

#[test]
fn unsupported_parameters_are_known() {
    let mut unsupported = BTreeSet::new();
    let (mut total, mut supported) = (0, 0);
    for resource_type in registry().resource_types() {
        for def in registry().params(resource_type) {
            if matches!(def.param_type, ParamType::Composite | ParamType::Special) {
                assert!(!def.is_supported());
                continue;
            }
            total += 1;
            if def.is_supported() {
                supported += 1;
            } else {
                unsupported.insert((def.code.as_str(), if def.code.starts_with('_') { "*" } else { resource_type }));
            }
        }
    }
    println!("{supported} of {total} (resource type, parameter) pairs compile; unsupported:");
    for (code, resource_type) in &unsupported {
        println!("  {resource_type} {code}");
    }
    let expected = BTreeSet::from([
        ("_content", "*"),
        ("_query", "*"),
        ("_text", "*"),
        ("age", "Patient"),
        ("birthOrderBoolean", "Patient"),
        ("composition", "Bundle"),
        ("deceased", "Patient"),
        ("message", "Bundle"),
    ]);
    assert_eq!(unsupported, expected);
}

#[test]
fn indexes_the_patient_example() {
    let Some(patient) = example("Patient-example.json") else { return };
    let entries = registry().extract("Patient", &patient).unwrap();
    assert!(values(&entries, "_id").is_empty() && values(&entries, "_lastUpdated").is_empty());

    let family = values(&entries, "family");
    assert_eq!(
        family,
        [
            &IndexValue::String { normalized: "chalmers".into(), exact: "Chalmers".into() },
            &IndexValue::String { normalized: "windsor".into(), exact: "Windsor".into() },
        ]
    );
    let names = values(&entries, "name");
    assert!(names.contains(&&IndexValue::String { normalized: "chalmers".into(), exact: "Chalmers".into() }));
    // Peter and James appear in two names but are indexed once.
    let peters = names.iter().filter(|v| matches!(v, IndexValue::String { exact, .. } if exact == "Peter")).count();
    assert_eq!(peters, 1);
    // The contact's name belongs to the contact, not to the patient.
    assert!(!names.iter().any(|v| matches!(v, IndexValue::String { exact, .. } if exact.contains("March"))));

    assert_eq!(values(&entries, "identifier"), [&token(Some("urn:oid:1.2.36.146.595.217.0.1"), "12345")]);
    assert_eq!(values(&entries, "birthdate"), [&date("1974-12-25")]);
    assert_eq!(values(&entries, "gender"), [&token(None, "male")]);
    assert_eq!(values(&entries, "active"), [&token(None, "true")]);
    assert_eq!(values(&entries, "organization"), [&reference("Organization", "1")]);
    assert_eq!(values(&entries, "phone").len(), 3);
    assert!(values(&entries, "phone").contains(&&token(None, "(03) 5555 6473")));
    assert!(values(&entries, "email").is_empty());
    assert!(
        values(&entries, "address-city")
            .contains(&&IndexValue::String { normalized: "pleasantville".into(), exact: "PleasantVille".into() })
    );
}

#[test]
fn indexes_observation_and_condition_examples() {
    let Some(observation) = example("Observation-example.json") else { return };
    let entries = registry().extract("Observation", &observation).unwrap();
    assert_eq!(
        values(&entries, "value-quantity"),
        [&IndexValue::Quantity {
            value: 185.0,
            system: Some("http://unitsofmeasure.org".into()),
            code: Some("[lb_av]".into()),
            unit: Some("lbs".into()),
        }]
    );
    assert_eq!(values(&entries, "subject"), [&reference("Patient", "example")]);
    assert_eq!(values(&entries, "patient"), [&reference("Patient", "example")]);
    assert_eq!(values(&entries, "date"), [&date("2016-03-28")]);
    assert!(values(&entries, "code").contains(&&token(Some("http://loinc.org"), "29463-7")));
    assert_eq!(values(&entries, "code").len(), 4);
    assert!(values(&entries, "value-concept").is_empty());

    let Some(condition) = example("Condition-example.json") else { return };
    let entries = registry().extract("Condition", &condition).unwrap();
    assert_eq!(values(&entries, "subject"), [&reference("Patient", "example")]);
    assert_eq!(values(&entries, "patient"), [&reference("Patient", "example")]);
    assert_eq!(values(&entries, "onset-date"), [&date("2012-05-24")]);
    assert!(values(&entries, "code").contains(&&token(Some("http://snomed.info/sct"), "39065001")));
}

#[test]
fn patient_parameter_skips_references_to_other_types() {
    let observation = json!({
        "resourceType": "Observation",
        "subject": {"reference": "Group/g1"},
        "effectivePeriod": {"start": "2020-01-01", "end": "2020-01-31"},
        "valueCodeableConcept": {"coding": [{"system": "s", "code": "pos"}], "text": "Positive"}
    });
    let entries = registry().extract("Observation", &observation).unwrap();
    assert_eq!(values(&entries, "subject"), [&reference("Group", "g1")]);
    assert!(values(&entries, "patient").is_empty());
    let (low, _) = parse_date_range("2020-01-01").unwrap();
    let (_, high) = parse_date_range("2020-01-31").unwrap();
    assert_eq!(values(&entries, "date"), [&IndexValue::Date { low, high }]);
    assert_eq!(values(&entries, "value-concept"), [&token(Some("s"), "pos")]);
    assert_eq!(
        values(&entries, "value-string"),
        [&IndexValue::String { normalized: "positive".into(), exact: "Positive".into() }]
    );
    assert!(values(&entries, "value-quantity").is_empty());
}

#[test]
fn indexes_meta_parameters() {
    let patient = json!({
        "resourceType": "Patient",
        "id": "p",
        "meta": {
            "lastUpdated": "2020-01-01T00:00:00Z",
            "profile": ["http://example.org/StructureDefinition/p"],
            "tag": [{"system": "http://example.org/tags", "code": "t1"}],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
            "source": "http://example.org/source#1"
        },
        "name": [{"family": "Müller"}]
    });
    let entries = registry().extract("Patient", &patient).unwrap();
    assert_eq!(values(&entries, "_tag"), [&token(Some("http://example.org/tags"), "t1")]);
    assert_eq!(values(&entries, "_security").len(), 1);
    assert_eq!(
        values(&entries, "_profile"),
        [&IndexValue::Uri { value: "http://example.org/StructureDefinition/p".into() }]
    );
    assert_eq!(values(&entries, "_source"), [&IndexValue::Uri { value: "http://example.org/source#1".into() }]);
    assert_eq!(
        values(&entries, "family"),
        [&IndexValue::String { normalized: "muller".into(), exact: "Müller".into() }]
    );
}

#[test]
fn normalizes_case_and_accents() {
    assert_eq!(normalize_string("Müller"), "muller");
    assert_eq!(normalize_string("MÜLLER"), "muller");
    assert_eq!(normalize_string("Bénédicte du Marché"), "benedicte du marche");
    assert_eq!(normalize_string("Ångström"), "angstrom");
    assert_eq!(normalize_string("İstanbul"), "istanbul");
    // Letters that are not a base letter plus a mark stay as they are.
    assert_eq!(normalize_string("Søren Œuvre"), "søren œuvre");
}

#[test]
fn every_example_indexes_without_surprises() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fhir-r4-examples/package");
    let Ok(files) = std::fs::read_dir(&dir) else {
        println!("skipping: {} is absent", dir.display());
        return;
    };
    let mut resources = 0;
    for file in files {
        let path = file.unwrap().path();
        let Ok(resource) = serde_json::from_str::<Value>(&std::fs::read_to_string(&path).unwrap()) else { continue };
        let Some(resource_type) = resource["resourceType"].as_str().filter(|t| registry().is_resource_type(t)) else {
            continue;
        };
        resources += 1;
        for entry in registry().extract(resource_type, &resource).unwrap() {
            let def = registry().param(resource_type, &entry.param).unwrap();
            let kind_matches = match (&entry.value, def.param_type) {
                (IndexValue::String { .. }, ParamType::String)
                | (IndexValue::Token { .. }, ParamType::Token)
                | (IndexValue::Reference { .. }, ParamType::Reference)
                | (IndexValue::Number { .. }, ParamType::Number)
                | (IndexValue::Quantity { .. }, ParamType::Quantity)
                | (IndexValue::Uri { .. }, ParamType::Uri) => true,
                (IndexValue::Date { low, high }, ParamType::Date) => low <= high,
                _ => false,
            };
            assert!(kind_matches, "{}: {} gave {:?}", path.display(), entry.param, entry.value);
        }
    }
    println!("indexed {resources} example resources");
    assert!(resources > 300);
}

#[test]
fn repeated_values_are_indexed_once_in_their_order() {
    let given: Vec<String> = (0..1500).map(|n| format!("g{}", n % 300)).collect();
    let patient = json!({"resourceType": "Patient", "name": [{"given": given}, {"given": ["g1", "z"]}]});
    let entries = registry().extract("Patient", &patient).unwrap();
    let given: Vec<&str> = entries
        .iter()
        .filter(|e| e.param == "given")
        .map(|e| match &e.value {
            IndexValue::String { exact, .. } => exact.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(given.len(), 301);
    assert_eq!((given[0], given[299], given[300]), ("g0", "g299", "z"));
}

#[test]
fn refuses_resources_with_too_many_index_values() {
    let given: Vec<String> = (0..MAX_INDEX_VALUES).map(|n| format!("g{n}")).collect();
    let patient = json!({"resourceType": "Patient", "name": [{"given": given}]});
    let issue = registry().extract("Patient", &patient).unwrap_err();
    assert_eq!(issue.code, crate::IssueCode::TooCostly);
    assert!(issue.diagnostics.contains(&MAX_INDEX_VALUES.to_string()), "{}", issue.diagnostics);
    assert!(issue.expression.as_deref().is_some_and(|at| at.starts_with("Patient.name")), "{:?}", issue.expression);
    let few = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"]}]});
    assert!(registry().extract("Patient", &few).is_ok());
}

#[test]
fn language_tags_are_found_by_their_language_ranges() {
    let patient = json!({"resourceType": "Patient", "communication": [
        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "zh-Hant-HK"}]}},
        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]}}
    ], "name": [{"family": "Lopez-Garcia"}]});
    let entries = registry().extract("Patient", &patient).unwrap();
    let bcp47 = Some("urn:ietf:bcp:47");
    assert_eq!(
        values(&entries, "language"),
        [&token(bcp47, "zh-Hant-HK"), &token(bcp47, "zh"), &token(bcp47, "zh-Hant"), &token(bcp47, "es")]
    );
    // Only language parameters: a hyphenated name is not split.
    assert_eq!(values(&entries, "family").len(), 1);

    let url = "https://rex.example/fhir/StructureDefinition/task-patient-language";
    let task = json!({"resourceType": "Task", "extension": [{"url": url, "valueCode": "ar-AE"}]});
    let entries = registry().extract("Task", &task).unwrap();
    assert_eq!(values(&entries, "patient-language"), [&token(None, "ar-AE"), &token(None, "ar")]);
}
