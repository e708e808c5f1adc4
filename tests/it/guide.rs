//! `tests/partner-guide.sh`: docs/partner-guide.md followed from start to finish with its own
//! commands (openssl, curl, `rex`) against a rex the script starts, as a partner would.

use std::process::Command;

const REX: &str = env!("CARGO_BIN_EXE_rex");

#[test]
fn the_partner_guide_works_from_start_to_finish() {
    for tool in ["openssl", "curl", "xxd", "python3"] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| !o.status.success()) {
            panic!("the partner guide test needs {tool}");
        }
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/partner-guide.sh");
    let run = Command::new("bash").arg(script).arg(REX).output().expect("bash runs the script");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the partner guide failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("The partner guide works from start to finish."), "{stdout}");
}
