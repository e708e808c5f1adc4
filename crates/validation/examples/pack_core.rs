//! Regenerates `definitions/hl7.fhir.r4.core-4.0.1.min.json.gz` from the official package.
//!
//! `cargo run -p rex-validation --release --example pack_core -- ../shared/fhir-r4-core/package`
use std::io::Write;

fn main() {
    let folder = std::env::args().nth(1).unwrap_or_else(|| "../shared/fhir-r4-core/package".to_string());
    let json = rex_validation::pack_folder(std::path::Path::new(&folder)).expect("pack");
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/definitions/hl7.fhir.r4.core-4.0.1.min.json.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&json).expect("gzip");
    let gz = enc.finish().expect("gzip");
    std::fs::write(out, &gz).expect("write");
    println!("{} bytes of JSON, {} bytes gzipped -> {out}", json.len(), gz.len());
}
