//! JSON canonicalization (RFC 8785, JCS): the exact bytes a signature over a JSON document
//! covers. Object members are sorted by the UTF-16 code units of their names, no whitespace,
//! strings with only the escapes JSON requires (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
//! other controls as lowercase `\u00xx`), other characters as UTF-8, and numbers as ECMAScript
//! prints them (integers plainly; exponent form from 1e21 and below 1e-6).

use serde_json::Value;

/// The canonical form of `value`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (index, name) in names.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_value(out, &members[name]);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, number: &serde_json::Number) {
    if let Some(i) = number.as_i64() {
        out.push_str(&i.to_string());
        return;
    }
    if let Some(u) = number.as_u64() {
        out.push_str(&u.to_string());
        return;
    }
    let f = number.as_f64().unwrap_or_default();
    if f == 0.0 {
        out.push('0');
    } else if f.fract() == 0.0 && f.abs() < 1e21 {
        out.push_str(&format!("{f:.0}"));
    } else if f.abs() >= 1e21 || f.abs() < 1e-6 {
        // Rust's shortest round-trip digits, with ECMAScript's explicit `+` on the exponent.
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                out.push_str(&format!("{mantissa}e+{exponent}"))
            }
            _ => out.push_str(&text),
        }
    } else {
        out.push_str(&f.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_sorted_and_whitespace_dropped() {
        let value = json!({"b": [1, {"z": null, "a": true}], "a": "x", "\u{20ac}": 1, "\r": 2, "1": 3});
        assert_eq!(canonical_json(&value), r#"{"\r":2,"1":3,"a":"x","b":[1,{"a":true,"z":null}],"€":1}"#);
    }

    #[test]
    fn strings_and_numbers_as_rfc_8785_prints_them() {
        let value: Value =
            serde_json::from_str(r#"["\u0001\n\"\\é😀", 1.0, 1e21, 1e-7, 0.5, -0, 333333333.3333333, 100]"#).unwrap();
        assert_eq!(canonical_json(&value), "[\"\\u0001\\n\\\"\\\\é😀\",1,1e+21,1e-7,0.5,0,333333333.3333333,100]");
    }

    #[test]
    fn sorting_is_by_utf16_code_units() {
        // U+FB33 sorts after U+1F600 in UTF-16 (D83D...) but before it in code points.
        let value = json!({"\u{fb33}": 1, "\u{1f600}": 2});
        assert_eq!(canonical_json(&value), "{\"\u{1f600}\":2,\"\u{fb33}\":1}");
    }
}
