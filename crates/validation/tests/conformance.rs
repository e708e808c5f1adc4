//! Conformance harness: the `core` tier of the HL7 validator test cases in `../shared/conformance/fhir-test-cases`.
//!
//! `CARGO_TARGET_DIR=/work/target-validation cargo test -p rex-validation --release --test conformance -- --nocapture`
//!
//! Figure = share of cases where rex's error count equals the expected one (base step, and profile step
//! where the case has one). The test fails if the figure drops below [`RATCHET`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rex_validation::{Definitions, Options, Validator};
use serde_json::Value;

/// Recorded figure (percent of agreeing cases); raise it when rex improves, never lower it.
const RATCHET: f64 = 98.9;

/// The HL7 Java validator's defaults: a `meta.profile` it cannot resolve is a warning, not an error.
/// It also checks references against their target profiles, and applies the global profiles of loaded
/// ImplementationGuides and the core vital signs profiles.
fn java_options() -> Options {
    Options {
        unknown_profile_is_error: false,
        unknown_extension_is_error: true,
        check_target_profiles: true,
        apply_global_profiles: true,
        imply_vital_signs_profiles: true,
        ..Options::default()
    }
}

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.is_dir().then_some(p)
}

/// The core package plus the packages the HL7 Java validator loads implicitly for R4 (the extensions pack).
fn core() -> &'static Definitions {
    static CORE: OnceLock<Definitions> = OnceLock::new();
    CORE.get_or_init(|| {
        let mut defs = Definitions::r4_core().expect("core");
        if let Some(shared) = shared() {
            let pack = shared.join("fhir-packages/hl7.fhir.uv.extensions.r4-5.3.0-ballot-tc1.tgz");
            defs.add_package(&pack).expect("extensions package");
        }
        defs
    })
}

fn load(defs: &mut Definitions, dir: &Path, file: &str) {
    let p = dir.join(file);
    if file.ends_with(".tgz") {
        let _ = defs.add_package(&p);
        return;
    }
    if let Ok(bytes) = std::fs::read(&p)
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
    {
        defs.add_resource(v);
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn error_count(validator: &Validator, input: &Value, profiles: &[&str]) -> (usize, Vec<String>) {
    let issues = validator.validate(input, profiles);
    let errors: Vec<String> = issues
        .iter()
        .filter(|i| i.is_error())
        .map(|i| format!("{} @ {}", i.diagnostics, i.expression.as_deref().unwrap_or("")))
        .collect();
    (errors.len(), errors)
}

#[test]
fn fhir_test_cases_core() {
    let Some(shared) = shared() else {
        println!("SKIPPED: ../shared is absent, conformance cases not run");
        return;
    };
    let dir = shared.join("conformance/fhir-test-cases");
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let filter = std::env::var("REX_CASE").ok();
    let mut total = 0;
    let mut agree = 0;
    let mut disagreements = Vec::new();
    for case in manifest["test-cases"].as_array().unwrap() {
        if case["x-tier"] != "core" {
            continue;
        }
        let name = case["name"].as_str().unwrap_or("");
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        total += 1;
        if std::env::var("REX_TRACE").is_ok() {
            eprintln!("case {name}");
        }
        let file = case["file"].as_str().unwrap();
        let expected = case["x-expected"]["errorCount"].as_u64().unwrap_or(0) as usize;
        let mut defs = core().clone();
        for f in strings(case.get("supporting")).iter().chain(strings(case.get("profiles")).iter()) {
            load(&mut defs, &dir, f);
        }
        for p in strings(case.get("packages")) {
            if p.ends_with(".tgz") {
                load(&mut defs, &dir, &p);
            }
        }
        let text = std::fs::read(dir.join(file)).unwrap();
        let input: Result<Value, _> = serde_json::from_slice(&text);
        // A case may switch off example URLs (`"examples": false`), as the HL7 test runner does.
        // ... and so may the other validator modes the Java test runner reads from the manifest.
        let mode = |key: &str| case.get(key).and_then(Value::as_str).unwrap_or("");
        let options = Options {
            allow_example_urls: case.get("examples").and_then(Value::as_bool).unwrap_or(true),
            validate_contained: mode("validateContains") != "IGNORE",
            no_html_in_markdown: case.get("noHtmlInMarkdown").and_then(Value::as_bool).unwrap_or(false),
            references_must_resolve: mode("validateReference").starts_with("CHECK_EXISTS"),
            ..java_options()
        };
        let validator = Validator::with_options(defs.clone(), options.clone());
        let (got, errors) = match &input {
            Ok(v) => error_count(&validator, v, &[]),
            Err(e) => (1, vec![format!("JSON parse error: {e}")]),
        };
        let mut ok = got == expected;
        let mut reason = String::new();
        if !ok {
            reason = format!("base: expected {expected} errors, rex found {got}: {}", errors.join(" | "));
        }
        if let Some(profile) = case.get("profile").filter(|p| p.is_object()) {
            let pexpected = case["x-expected"]["profileErrorCount"].as_u64().unwrap_or(0) as usize;
            let mut pdefs = defs;
            for f in strings(profile.get("supporting")) {
                load(&mut pdefs, &dir, &f);
            }
            let src = profile["source"].as_str().unwrap_or("");
            load(&mut pdefs, &dir, src);
            let url = std::fs::read(dir.join(src))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["url"].as_str().map(str::to_string))
                .unwrap_or_default();
            let pvalidator = Validator::with_options(pdefs, options);
            let (pgot, perrors) = match &input {
                Ok(v) => error_count(&pvalidator, v, &[url.as_str()]),
                Err(_) => (1, vec![]),
            };
            if pgot != pexpected {
                ok = false;
                reason.push_str(&format!(
                    " profile {url}: expected {pexpected} errors, rex found {pgot}: {}",
                    perrors.join(" | ")
                ));
            }
        }
        if ok {
            agree += 1;
        } else {
            disagreements.push(format!("{name} [{}]: {reason}", case["module"].as_str().unwrap_or("")));
        }
    }
    let figure = 100.0 * agree as f64 / total.max(1) as f64;
    println!("fhir-test-cases core: {agree}/{total} agree ({figure:.1} %)");
    println!("disagreeing cases:");
    for d in &disagreements {
        let d: String = d.chars().take(600).collect();
        println!("  - {d}");
    }
    if filter.is_none() {
        assert!(figure >= RATCHET, "conformance figure {figure:.1} % fell below the recorded {RATCHET} %");
    }
}
