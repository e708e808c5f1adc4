//! `rex bench` as CI runs it: a short smoke that proves the tool works (no timing assertions).

use std::process::Command;

#[test]
fn bench_intake_smoke_runs_and_reports_a_summary() {
    let output = Command::new(env!("CARGO_BIN_EXE_rex"))
        .args(["bench", "intake", "--clients", "2", "--count", "10"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("rex bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rex bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(stdout.contains("Bundles/s"), "no throughput in the summary:\n{stdout}");
    assert!(stdout.contains("errors: none"), "error statuses in the summary:\n{stdout}");
    assert!(stdout.contains("10 requests"), "not 10 requests:\n{stdout}");
}
