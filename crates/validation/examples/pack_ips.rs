//! Regenerates `definitions/hl7.fhir.uv.ips-2.0.0.min.json.gz`: IPS 2.0.0 and what it uses from the HL7
//! terminology and extensions packages (all CC0).
//!
//! `cargo run -p rex-validation --release --example pack_ips -- ../shared/fhir-packages`
use std::io::Write;
use std::path::Path;

fn main() {
    let folder = std::env::args().nth(1).unwrap_or_else(|| "../shared/fhir-packages".to_string());
    let folder = Path::new(&folder);
    let dependencies =
        [folder.join("hl7.terminology.r4-7.0.1.tgz"), folder.join("hl7.fhir.uv.extensions.r4-5.3.0-ballot-tc1.tgz")];
    let dependencies: Vec<&Path> = dependencies.iter().map(|p| p.as_path()).collect();
    let json =
        rex_validation::pack_ips(&folder.join("hl7.fhir.uv.ips-2.0.0-definitions-only"), &dependencies).expect("pack");
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/definitions/hl7.fhir.uv.ips-2.0.0.min.json.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&json).expect("gzip");
    let gz = enc.finish().expect("gzip");
    std::fs::write(out, &gz).expect("write");
    println!("{} bytes of JSON, {} bytes gzipped -> {out}", json.len(), gz.len());
}
