//! Embeds rex's conformance resources (`profiles/`, partner folders included) in the `rex` binary,
//! so `rex validate` finds them wherever it runs, as the core package is embedded in
//! rex-validation. Writes `$OUT_DIR/profiles.rs`: `EMBEDDED_PROFILES`, (path, JSON text) pairs.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn json_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut found = Vec::new();
    for path in files {
        if path.is_dir() {
            found.extend(json_files(&path));
        } else if path.extension().is_some_and(|x| x == "json") {
            found.push(path);
        }
    }
    found
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let profiles = root.join("profiles");
    println!("cargo:rerun-if-changed=profiles");
    let mut code = String::from("/// rex's conformance resources, as `profiles/` held them at build time.\n");
    code.push_str("pub static EMBEDDED_PROFILES: &[(&str, &str)] = &[\n");
    for file in json_files(&profiles) {
        println!("cargo:rerun-if-changed={}", file.display());
        let relative = file.strip_prefix(&root).expect("under the package").display().to_string();
        let _ = writeln!(code, "    ({relative:?}, include_str!({:?})),", file.display().to_string());
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("profiles.rs");
    std::fs::write(out, code).expect("write profiles.rs");
}
