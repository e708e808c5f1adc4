//! Value rules of an element: fixed values, patterns, maxLength, minValue/maxValue, Attachment size.

use rex_fhir::{BindingStrength, IssueCode};
use serde_json::Value;

use super::{Walk, json_contains, json_equal};
use crate::model::Elem;
use crate::primitives;

impl<'v> Walk<'v> {
    /// The stated size of an Attachment must be the size of its inline data.
    pub(super) fn attachment_size(&mut self, node: &Value) {
        if let (Some(size), Some(data)) =
            (node.get("size").and_then(Value::as_u64), node.get("data").and_then(Value::as_str))
            && primitives::check("base64Binary", &Value::String(data.to_string())).is_none()
        {
            let actual = primitives::base64_decoded_len(data) as u64;
            if actual != size {
                self.err(
                    IssueCode::Value,
                    format!("Stated Attachment Size {size} does not match actual attachment size {actual}"),
                );
            }
        }
    }

    /// Fixed, pattern, maxLength, min/max values and bindings.
    pub(super) fn value_rules(&mut self, elem: &Elem, val: &Value, ty: &str) {
        if let Some(f) = &elem.fixed {
            let mut problems = Vec::new();
            fixed_mismatches(val, f, &mut problems);
            for msg in problems {
                self.err(IssueCode::Value, msg);
            }
        }
        if let Some(p) = &elem.pattern
            && !json_contains(val, p)
        {
            self.err(
                IssueCode::Value,
                format!("The value does not match the pattern {} required by the profile", short_json(p)),
            );
        }
        if let (Some(max), Some(s)) = (elem.max_length, val.as_str())
            && s.chars().count() > max
        {
            self.err(IssueCode::TooLong, format!("value is longer than permitted maximum length of {max}"));
        }
        if elem.min_value.is_some() || elem.max_value.is_some() {
            self.min_max(elem, val, ty);
        }
        if let Some(b) = &elem.binding {
            // The HL7 validator holds a Quantity to a required binding only where Quantity is the one type
            // allowed; on a choice of types (the vital signs `component.value[x]`) a unit outside the value
            // set is a warning.
            let strength = match b.strength {
                BindingStrength::Required if ty == "Quantity" && elem.types.len() > 1 => BindingStrength::Extensible,
                other => other,
            };
            if strength != BindingStrength::Example {
                self.binding(strength, &b.value_set, val, ty);
            }
            for vs in &b.required_additional {
                self.additional_binding(vs, val, ty);
            }
        }
    }

    pub(super) fn min_max(&mut self, elem: &Elem, val: &Value, ty: &str) {
        let (n, unit) = match ty {
            "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity" | "MoneyQuantity" => {
                (val.get("value").and_then(Value::as_f64), val.get("code").and_then(Value::as_str))
            }
            _ => (val.as_f64(), None),
        };
        let cmp_str = |limit: &Value| -> Option<std::cmp::Ordering> {
            match (val.as_str(), limit.as_str()) {
                (Some(a), Some(b)) => Some(a.cmp(b)),
                _ => None,
            }
        };
        for (limit, is_min) in [(&elem.min_value, true), (&elem.max_value, false)] {
            let Some(limit) = limit else { continue };
            let bad = if let Some(n) = n {
                let (l, lunit) = match limit {
                    Value::Object(o) => (o.get("value").and_then(Value::as_f64), o.get("code").and_then(Value::as_str)),
                    other => (other.as_f64(), None),
                };
                let order = match (l, lunit, unit) {
                    (Some(l), None, _) => n.partial_cmp(&l),
                    (Some(l), Some(lu), Some(u)) => crate::ucum::compare((n, u), (l, lu)),
                    _ => None,
                };
                order == Some(if is_min { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater })
            } else if let (Some(v), Some(d), Some(code)) =
                (val.as_str(), limit.get("value").and_then(Value::as_f64), limit.get("code").and_then(Value::as_str))
            {
                // a Duration limit on a date: no earlier than today - duration, no later than today + duration
                match crate::fhirpath::today_offset(if is_min { -d } else { d }, code) {
                    Some(bound) => {
                        let len = v.len().min(bound.len());
                        let o = v[..len].cmp(&bound[..len]);
                        o == if is_min { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater }
                    }
                    None => false,
                }
            } else {
                match cmp_str(limit) {
                    Some(o) => {
                        if is_min {
                            o == std::cmp::Ordering::Less
                        } else {
                            o == std::cmp::Ordering::Greater
                        }
                    }
                    None => false,
                }
            };
            if bad {
                self.err(
                    IssueCode::Value,
                    format!(
                        "The value {} is {} the {} allowed value {}",
                        short_json(val),
                        if is_min { "below" } else { "above" },
                        if is_min { "minimum" } else { "maximum" },
                        short_json(limit)
                    ),
                );
            }
        }
    }
}

pub(super) fn short_json(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.len() > 200 { format!("{}...", &s[..s.char_indices().nth(200).map(|x| x.0).unwrap_or(s.len())]) } else { s }
}

/// The differences between a value and a fixed value, as the HL7 validator reports them: one per property
/// of a complex value (a different value, a missing property, or a property the fixed value does not have).
pub(super) fn fixed_mismatches(val: &Value, fixed: &Value, out: &mut Vec<String>) {
    match (val, fixed) {
        (Value::Object(v), Value::Object(f)) => {
            for (k, fv) in f {
                match v.get(k) {
                    Some(vv) => fixed_mismatches(vv, fv, out),
                    None => out.push(format!("Missing element '{k}' - required by fixed value assigned in profile")),
                }
            }
            for k in v.keys().filter(|k| !f.contains_key(*k)) {
                out.push(format!(
                    "The element {k} is present in the instance but not allowed in the applicable fixed value specified in profile"
                ));
            }
        }
        (Value::Array(v), Value::Array(f)) if v.len() == f.len() => {
            v.iter().zip(f).for_each(|(vv, fv)| fixed_mismatches(vv, fv, out));
        }
        _ if !json_equal(val, fixed) => {
            out.push(format!("Value is '{}' but must be '{}'", short_json(val), short_json(fixed)))
        }
        _ => {}
    }
}
