//! The official R4 examples (`../shared/fhir-r4-examples/package`) against the base spec, plus the
//! throughput measurement recorded in CONFORMANCE.md.
//!
//! `CARGO_TARGET_DIR=/work/target-validation cargo test -p rex-validation --release --test examples -- --nocapture`

use std::path::Path;
use std::time::Instant;

use rex_validation::{Definitions, Validator};
use serde_json::Value;

/// Highest accepted number of official examples that rex reports errors for (ratchet; lower it as rex improves).
const MAX_EXAMPLES_WITH_ERRORS: usize = 7;

#[test]
fn official_examples_and_throughput() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fhir-r4-examples/package");
    if !dir.is_dir() {
        println!("SKIPPED: ../shared is absent, official examples not run");
        return;
    }
    let t = Instant::now();
    let validator = Validator::new(Definitions::r4_core().unwrap());
    println!("start-up (core loaded, validator ready): {:?}", t.elapsed());
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.') && !p.ends_with("package.json"))
        .collect();
    names.sort();
    let resources: Vec<(String, Value)> = names
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap(),
            )
        })
        .collect();
    let mut with_errors = Vec::new();
    for (name, r) in &resources {
        let errors: Vec<String> = validator
            .validate(r, &[])
            .into_iter()
            .filter(|i| i.is_error())
            .map(|i| format!("{} @ {}", i.diagnostics, i.expression.unwrap_or_default()))
            .collect();
        if !errors.is_empty() {
            with_errors.push(format!("{name}: {}", errors.join(" | ")));
        }
    }
    println!("official examples: {} of {} with errors", with_errors.len(), resources.len());
    for e in &with_errors {
        println!("  - {}", e.chars().take(400).collect::<String>());
    }
    // Throughput, single thread: every example validated repeatedly.
    let rounds: usize = std::env::var("REX_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let t = Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        for (_, r) in &resources {
            std::hint::black_box(validator.validate(r, &[]));
            n += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let bytes: usize = resources.iter().map(|(_, r)| r.to_string().len()).sum();
    println!(
        "throughput: {:.0} resources/s on one core ({} validations of the {} official examples, mean {:.1} KB each, {:.2} s)",
        n as f64 / secs,
        n,
        resources.len(),
        bytes as f64 / resources.len() as f64 / 1024.0,
        secs
    );
    assert!(with_errors.len() <= MAX_EXAMPLES_WITH_ERRORS, "{} examples with errors", with_errors.len());
}
