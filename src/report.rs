//! The human output `rex validate --summary` and `rex send` share: one verdict line per file,
//! then one indented line per issue (`severity code at location: message`).

use std::path::Path;

use serde_json::Value;

/// One line per issue of an OperationOutcome.
pub fn issue_lines(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|issue| {
            let location = issue["expression"][0].as_str().unwrap_or("-");
            format!(
                "    {} {} at {location}: {}",
                issue["severity"].as_str().unwrap_or("error"),
                issue["code"].as_str().unwrap_or("unknown"),
                issue["diagnostics"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Prints `verdict file (detail)` and the outcome's issues under it.
pub fn print_file(verdict: &str, file: &Path, detail: &str, outcome: Option<&Value>) {
    println!("{verdict} {} ({detail})", file.display());
    for line in outcome.map(issue_lines).unwrap_or_default() {
        println!("{line}");
    }
}

/// Why a file is not FHIR JSON (not JSON, too deep, a key repeated), each problem with its location.
pub fn parse_issues(issues: &[rex_fhir::Issue]) -> String {
    let problems: Vec<String> = issues
        .iter()
        .map(|issue| match &issue.expression {
            Some(at) => format!("{} (at {at})", issue.diagnostics),
            None => issue.diagnostics.clone(),
        })
        .collect();
    problems.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn issues_read_as_severity_code_location_and_message() {
        let outcome = json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "value", "expression": ["Patient.birthDate"], "diagnostics": "not a date"},
            {"severity": "warning", "code": "informational", "diagnostics": "note"}]});
        assert_eq!(
            issue_lines(&outcome),
            vec!["    error value at Patient.birthDate: not a date", "    warning informational at -: note"]
        );
    }
}
