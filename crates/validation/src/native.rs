//! Native implementations of the core invariants evaluated on nearly every element or resource,
//! with the same semantics as their FHIRPath expressions; `model.rs` attaches them to constraints.

use std::collections::HashSet;

use serde_json::Value;

use crate::defs::field;
use crate::primitives;

/// Native implementations of the core invariants evaluated on nearly every element or resource.
pub(crate) fn native_constraint(key: &str, expression: &str) -> Option<Native> {
    match (key, expression) {
        // On every Reference. A reference to `#id` names a contained resource of %rootResource.
        (
            "ref-1",
            "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))",
        ) => Some(|v, root| match field(v, "reference").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(id) => {
                root.is_some_and(|r| contained(r).iter().any(|c| c.get("id").and_then(Value::as_str) == Some(id)))
            }
            None => true,
        }),
        // On every narrative; `htmlChecks()` is not a FHIRPath function rex's engine knows.
        ("txt-1", "htmlChecks()") => {
            Some(|v, _| v.as_str().is_none_or(|div| primitives::illegal_xhtml_names(div).is_empty()))
        }
        // On every ElementDefinition. The HL7 validator matches the whole path, which `matches()` does not.
        ("eld-19", _) if expression.starts_with("path.matches(") => {
            Some(|v, _| v.get("path").and_then(Value::as_str).is_none_or(is_legal_element_path))
        }
        ("ext-1", "extension.exists() != value.exists()") => Some(|v, _| {
            let Some(o) = v.as_object() else { return true };
            let has_value = o.keys().any(|k| k.starts_with("value") && k.len() > 5);
            o.contains_key("extension") != has_value
        }),
        // R4 errata: the expression says `> 2`, the rule (and R5) say "more than one enableWhen".
        ("que-12", "enableWhen.count() > 2 implies enableBehavior.exists()") => Some(|v, _| {
            v.get("enableWhen").and_then(Value::as_array).is_none_or(|a| a.len() <= 1)
                || v.get("enableBehavior").is_some()
        }),
        ("dom-2", "contained.contained.empty()") => {
            Some(|v, _| contained(v).iter().all(|c| c.get("contained").is_none()))
        }
        ("dom-4", "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()") => Some(|v, _| {
            contained(v)
                .iter()
                .all(|c| c.get("meta").is_none_or(|m| m.get("versionId").is_none() && m.get("lastUpdated").is_none()))
        }),
        ("dom-5", "contained.meta.security.empty()") => {
            Some(|v, _| contained(v).iter().all(|c| c.get("meta").is_none_or(|m| m.get("security").is_none())))
        }
        ("dom-3", _) if expression.starts_with("contained.where((('#'+id in (%resource.descendants().reference") => {
            Some(|v, _| dom3(v))
        }
        _ => None,
    }
}

/// eld-19: the names in an element path have no special characters (a choice ends in `[x]`, a slice follows `:`).
fn is_legal_element_path(path: &str) -> bool {
    static PATH: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        let name = r#"[^\s.,:;'"/|?!@#$%&*()\[\]{}]{1,64}"#;
        regex::Regex::new(&format!(r"^{name}(\.{name}(\[x\])?(:[^\s.]+)?)*$")).expect("eld-19 pattern")
    });
    PATH.is_match(path)
}

/// A native invariant: the node, and `%rootResource`.
pub(crate) type Native = fn(&Value, Option<&Value>) -> bool;

fn contained(v: &Value) -> &[Value] {
    v.get("contained").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// dom-3: every contained resource is referenced from elsewhere in the resource (by `#id`), or refers to the
/// container (`#`).
fn dom3(v: &Value) -> bool {
    let cs = contained(v);
    if cs.is_empty() {
        return true;
    }
    let mut refs: HashSet<&str> = HashSet::new();
    fn collect<'a>(v: &'a Value, refs: &mut HashSet<&'a str>) {
        match v {
            Value::Object(o) => {
                for x in o.values() {
                    if let Value::String(s) = x {
                        if s.starts_with('#') {
                            refs.insert(s.as_str());
                        }
                    } else {
                        collect(x, refs);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, refs)),
            _ => {}
        }
    }
    collect(v, &mut refs);
    let self_ref = refs.contains("#");
    cs.iter().all(|c| {
        let id = c.get("id").and_then(Value::as_str).unwrap_or("");
        self_ref || refs.iter().any(|r| &r[1..] == id)
    })
}
