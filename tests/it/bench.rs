//! `rex bench` as CI runs it: a short smoke that proves the tool works (no timing assertions).

use std::process::Command;

/// Runs `rex bench ARGS` from the repository root and returns its summary, failing on an error.
fn bench(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rex"))
        .arg("bench")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("rex bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rex bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(stdout.contains("errors: none"), "error statuses in the summary:\n{stdout}");
    stdout
}

#[test]
fn bench_intake_smoke_runs_and_reports_a_summary() {
    let stdout = bench(&["intake", "--clients", "2", "--count", "10"]);
    assert!(stdout.contains("Bundles/s"), "no throughput in the summary:\n{stdout}");
    assert!(stdout.contains("10 requests"), "not 10 requests:\n{stdout}");
    if cfg!(target_os = "linux") {
        assert!(stdout.contains("server CPU: "), "no server CPU in the summary:\n{stdout}");
        assert!(stdout.contains("cores busy, steal "), "no machine load in the summary:\n{stdout}");
    }
}

#[test]
fn bench_with_an_offered_rate_paces_its_requests() {
    let stdout = bench(&["intake", "--clients", "4", "--count", "10", "--rate", "20"]);
    assert!(stdout.contains("20 requests/s offered, 10 requests in"), "no offered rate in the summary:\n{stdout}");
    // The 10th request is due 9/20 s after the start: a paced run cannot finish sooner.
    let seconds: f64 = stdout
        .split(" requests in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("the summary gives the run's duration");
    assert!(seconds >= 0.4, "10 requests at 20/s took only {seconds} s:\n{stdout}");
}
