//! Parsing request bodies into JSON with the limits a public endpoint needs.

use serde_json::Value;

use crate::outcome::{Issue, IssueCode};

/// Default maximum nesting depth of a JSON body. Real FHIR content rarely nests beyond 20 levels
/// (a Bundle of Questionnaire items is among the deepest); the limit protects the recursive code that
/// walks resources.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Parses a FHIR JSON body: it must be a JSON object no deeper than `max_depth`.
pub fn parse_body(bytes: &[u8], max_depth: usize) -> Result<Value, Issue> {
    let value: Value = serde_json::from_slice(bytes).map_err(|err| {
        // serde_json stops at 128 levels on its own; report that as the depth limit it is.
        if err.to_string().starts_with("recursion limit exceeded") {
            too_deep(max_depth)
        } else {
            Issue::error(IssueCode::Structure, format!("The body is not valid JSON: {err}"))
        }
    })?;
    if !value.is_object() {
        return Err(Issue::error(IssueCode::Structure, "The body must be a JSON object holding a FHIR resource"));
    }
    if depth(&value) > max_depth {
        return Err(too_deep(max_depth));
    }
    Ok(value)
}

pub(crate) fn too_deep(max_depth: usize) -> Issue {
    Issue::error(IssueCode::TooCostly, format!("The JSON body nests deeper than the limit of {max_depth} levels"))
}

pub(crate) fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The `resourceType` of a parsed resource, if it has a string one.
pub fn resource_type(resource: &Value) -> Option<&str> {
    resource.get("resourceType").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_objects_and_bad_json() {
        assert_eq!(parse_body(b"[1]", 10).unwrap_err().code, IssueCode::Structure);
        assert_eq!(parse_body(b"{\"a\":", 10).unwrap_err().code, IssueCode::Structure);
    }

    #[test]
    fn enforces_depth() {
        let deep = format!("{}{}", "{\"a\":".repeat(20), "1".to_string() + &"}".repeat(20));
        assert!(parse_body(deep.as_bytes(), 20).is_ok());
        assert_eq!(parse_body(deep.as_bytes(), 19).unwrap_err().code, IssueCode::TooCostly);
    }
}
