//! Parsing request bodies into JSON with the limits a public endpoint needs.
//!
//! serde_json reads a key that appears twice in an object last-wins, so
//! `{"type": "transaction", ..., "type": "batch"}` would run as a batch while a reader of the
//! first lines sees a transaction. FHIR JSON objects have unique keys; rex refuses duplicates as a
//! structural error naming each one's location. The check, and the depth limit, are part of the one
//! pass that builds the value.

use rex_i18n::msg;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

use crate::outcome::{Issue, IssueCode};

/// Default maximum nesting depth of a JSON body. Real FHIR content rarely nests beyond 20 levels
/// (a Bundle of Questionnaire items is among the deepest); the limit protects the recursive code that
/// walks resources.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Parses a FHIR JSON body: it must be a JSON object no deeper than `max_depth`, without
/// duplicate keys.
pub fn parse_body(bytes: &[u8], max_depth: usize) -> Result<Value, Vec<Issue>> {
    let value = parse(bytes, max_depth)?;
    if !value.is_object() {
        return Err(vec![Issue::error(IssueCode::Structure, msg!("json-not-object"))]);
    }
    Ok(value)
}

/// Parses any JSON document (a JSON Patch is an array) no deeper than `max_depth`, without
/// duplicate keys.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, Vec<Issue>> {
    let mut checks = Checks { max_depth, too_deep: false, duplicates: Vec::new() };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node { checks: &mut checks, depth: 1 }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    let value = match parsed {
        Ok(value) => value,
        // serde_json stops at 128 levels on its own; report that as the depth limit it is.
        Err(_) if checks.too_deep => return Err(vec![too_deep(max_depth)]),
        Err(err) if err.to_string().starts_with("recursion limit exceeded") => return Err(vec![too_deep(max_depth)]),
        Err(err) => {
            return Err(vec![Issue::error(IssueCode::Structure, msg!("json-invalid", error = err))]);
        }
    };
    if checks.duplicates.is_empty() {
        return Ok(value);
    }
    let root = resource_type(&value).unwrap_or("$this").to_string();
    Err(checks.duplicates.into_iter().map(|duplicate| duplicate.issue(&root)).collect())
}

pub(crate) fn too_deep(max_depth: usize) -> Issue {
    Issue::error(IssueCode::TooCostly, msg!("json-too-deep", limit = max_depth))
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

/// With serde_json's `arbitrary_precision` (which fhirbolt switches on for the whole build), a
/// number reaches a visitor as a one-entry map under this key holding the number's text; serde_json's
/// own `Value` visitor reads it the same way.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// What the parse found besides the value.
struct Checks {
    max_depth: usize,
    too_deep: bool,
    duplicates: Vec<Duplicate>,
}

/// A key seen twice in one object. Its location is built while the parse returns from the
/// object: each enclosing object or array adds its step, so keys that appear once cost nothing.
struct Duplicate {
    /// From the duplicate key up to the root.
    steps: Vec<Step>,
}

enum Step {
    Key(String),
    Index(usize),
}

impl Duplicate {
    fn issue(self, root: &str) -> Issue {
        let mut location = root.to_string();
        for step in self.steps.iter().rev() {
            match step {
                Step::Key(key) => {
                    location.push('.');
                    location.push_str(key);
                }
                Step::Index(index) => location.push_str(&format!("[{index}]")),
            }
        }
        let Some(Step::Key(key)) = self.steps.first() else { unreachable!("a duplicate starts at its key") };
        Issue::error(IssueCode::Structure, msg!("json-duplicate-key", key)).at(location)
    }
}

/// One JSON value at nesting `depth` (the root object is 1).
struct Node<'a> {
    checks: &'a mut Checks,
    depth: usize,
}

impl Node<'_> {
    fn child(&mut self) -> Node<'_> {
        Node { checks: self.checks, depth: self.depth + 1 }
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        if self.depth > self.checks.max_depth {
            self.checks.too_deep = true;
            return Err(E::custom("too deep"));
        }
        Ok(())
    }

    /// Adds `step` to the location of the duplicates found since there were `before`.
    fn locate(&mut self, before: usize, step: impl Fn() -> Step) {
        for duplicate in &mut self.checks.duplicates[before..] {
            duplicate.steps.push(step());
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Builds the same values as serde_json's own `Value` visitor.
impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            let before = self.checks.duplicates.len();
            let Some(item) = seq.next_element_seed(self.child())? else { break };
            if self.checks.duplicates.len() > before {
                let index = items.len();
                self.locate(before, || Step::Index(index));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if std::mem::take(&mut first) {
                if key == NUMBER_TOKEN {
                    let text: String = map.next_value()?;
                    return text.parse::<Number>().map(Value::Number).map_err(de::Error::custom);
                }
                self.enter()?;
            }
            let before = self.checks.duplicates.len();
            let value = map.next_value_seed(self.child())?;
            if self.checks.duplicates.len() > before {
                self.locate(before, || Step::Key(key.clone()));
            }
            match object.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(value);
                }
                Entry::Occupied(mut entry) => {
                    self.checks.duplicates.push(Duplicate { steps: vec![Step::Key(entry.key().clone())] });
                    entry.insert(value);
                }
            }
        }
        if first {
            self.enter()?;
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(result: Result<Value, Vec<Issue>>) -> Issue {
        result.unwrap_err().remove(0)
    }

    #[test]
    fn rejects_non_objects_and_bad_json() {
        assert_eq!(first(parse_body(b"[1]", 10)).code, IssueCode::Structure);
        assert_eq!(first(parse_body(b"{\"a\":", 10)).code, IssueCode::Structure);
        assert_eq!(first(parse_body(b"{\"a\": 1} x", 10)).code, IssueCode::Structure);
    }

    #[test]
    fn numbers_keep_their_text() {
        let value = parse_body(br#"{"a": 1.50, "b": [0.7, 12, -3]}"#, 10).unwrap();
        assert_eq!(value["a"].to_string(), "1.50");
        assert_eq!(value["b"].to_string(), "[0.7,12,-3]");
        assert!(value["a"].is_number() && value["b"][1].as_i64() == Some(12));
    }

    #[test]
    fn enforces_depth() {
        let deep = format!("{}{}", "{\"a\":".repeat(20), "1".to_string() + &"}".repeat(20));
        assert!(parse_body(deep.as_bytes(), 20).is_ok());
        assert_eq!(first(parse_body(deep.as_bytes(), 19)).code, IssueCode::TooCostly);
        let arrays = format!("{{\"a\":{}1{}}}", "[".repeat(19), "]".repeat(19));
        assert!(parse_body(arrays.as_bytes(), 20).is_ok());
        assert_eq!(first(parse_body(arrays.as_bytes(), 19)).code, IssueCode::TooCostly);
        let beyond_serde = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(first(parse_body(beyond_serde.as_bytes(), usize::MAX)).code, IssueCode::TooCostly);
    }

    #[test]
    fn builds_the_value_serde_json_builds() {
        let text = br#"{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mg"},"n":-3,"big":18446744073709551615,
                        "e":1.5e300,"ok":true,"none":null,"s":"caf\u00e9 \"q\"","a":[[],{}],"z":1,"b":2}"#;
        let parsed = parse_body(text, 64).unwrap();
        assert_eq!(parsed, serde_json::from_slice::<Value>(text).unwrap());
        let keys: Vec<&String> = parsed.as_object().unwrap().keys().collect();
        assert_eq!(keys.last().map(|k| k.as_str()), Some("b"), "keys keep their order");
    }

    #[test]
    fn refuses_duplicate_keys_with_their_location() {
        let bundle =
            br#"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}},
            {"resource":{"resourceType":"Patient","gender":"male","gender":"female"}}],"type":"batch"}"#;
        let issues = parse_body(bundle, 64).unwrap_err();
        let located: Vec<(&str, IssueCode)> =
            issues.iter().map(|issue| (issue.expression.as_deref().unwrap(), issue.code)).collect();
        assert_eq!(
            located,
            vec![("Bundle.entry[1].resource.gender", IssueCode::Structure), ("Bundle.type", IssueCode::Structure)]
        );
        assert!(issues[1].diagnostics.contains("'type'"), "{}", issues[1].diagnostics);
        // Keys of different objects may repeat, and an escaped key is the same key.
        assert!(parse_body(br#"{"a":{"x":1},"b":{"x":2}}"#, 64).is_ok());
        assert_eq!(first(parse_body(br#"{"a":1,"\u0061":2}"#, 64)).expression.as_deref(), Some("$this.a"));
        assert_eq!(first(parse(br#"[{"op":"add","op":"remove"}]"#, 64)).expression.as_deref(), Some("$this[0].op"));
    }
}
