//! Primitive formats per the FHIR R4 regexes and ranges, hand-written for speed.

use serde_json::Value;

/// The JSON kind a primitive type uses.
pub(crate) fn json_kind_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "boolean" => v.is_boolean(),
        "integer" | "positiveInt" | "unsignedInt" | "integer64" => v.is_i64() || v.is_u64(),
        "decimal" => v.is_number(),
        _ => v.is_string(),
    }
}

pub(crate) fn is_primitive(ty: &str) -> bool {
    matches!(
        ty,
        "boolean"
            | "integer"
            | "positiveInt"
            | "unsignedInt"
            | "decimal"
            | "string"
            | "code"
            | "id"
            | "markdown"
            | "uri"
            | "url"
            | "canonical"
            | "oid"
            | "uuid"
            | "base64Binary"
            | "instant"
            | "date"
            | "dateTime"
            | "time"
            | "xhtml"
    )
}

/// Checks a primitive value; returns an English message when invalid.
pub(crate) fn check(ty: &str, v: &Value) -> Option<String> {
    if !json_kind_ok(ty, v) {
        let found = match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        let expected = match ty {
            "boolean" => "a JSON boolean",
            "integer" | "positiveInt" | "unsignedInt" => "a JSON integer",
            "decimal" => "a JSON number",
            _ => "a JSON string",
        };
        return Some(format!("Error parsing JSON: the primitive value must be {expected} ({ty}), found {found}"));
    }
    match ty {
        "integer" => {
            let n = v.as_i64()?;
            (n < i32::MIN as i64 || n > i32::MAX as i64)
                .then(|| format!("The value {n} is outside the range of integer"))
        }
        "positiveInt" => {
            let n = v.as_i64().unwrap_or(-1);
            (!(1..=i32::MAX as i64).contains(&n))
                .then(|| format!("The value {v} is not a valid positiveInt (must be >= 1)"))
        }
        "unsignedInt" => {
            let n = v.as_i64().unwrap_or(-1);
            (!(0..=i32::MAX as i64).contains(&n))
                .then(|| format!("The value {v} is not a valid unsignedInt (must be >= 0)"))
        }
        "boolean" | "decimal" => None,
        _ => {
            let s = v.as_str()?;
            check_str(ty, s)
        }
    }
}

fn check_str(ty: &str, s: &str) -> Option<String> {
    if s.is_empty() {
        return Some(format!("@value cannot be empty ({ty})"));
    }
    let ok = match ty {
        "string" | "markdown" => {
            if s.len() > 1_048_576 {
                return Some("value is longer than the maximum allowed length of 1 MB".into());
            }
            // Bytes below 32 are the ASCII control characters: UTF-8 uses none in multi-byte sequences.
            if s.bytes().any(|b| b < 32 && !matches!(b, b'\t' | b'\n' | b'\r')) {
                return Some(format!("The {ty} value contains illegal control characters"));
            }
            true
        }
        "id" => s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
        "code" => {
            !s.starts_with(char::is_whitespace)
                && !s.ends_with(char::is_whitespace)
                && !s.contains("  ")
                && !s.contains(['\t', '\n', '\r'])
        }
        "uri" | "url" | "canonical" => {
            if s.starts_with("urn:uuid:") && !is_uuid(s) {
                return Some(format!("UUIDs must be valid and lowercase ({})", truncate(&s[9..], 80)));
            }
            !s.contains(char::is_whitespace)
        }
        "oid" => is_oid(s),
        "uuid" => is_uuid(s),
        "base64Binary" => is_base64(s),
        "date" => is_date(s),
        "dateTime" => is_datetime(s, false),
        "instant" => is_datetime(s, true),
        "time" => is_time(s),
        _ => true,
    };
    if ok {
        None
    } else {
        Some(match ty {
            "date" | "dateTime" | "instant" | "time" => format!("Not a valid {ty}: '{s}'"),
            _ => format!("The value '{}' is not a valid {ty}", truncate(s, 80)),
        })
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((p, _)) => &s[..p],
        None => s,
    }
}

fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else { return false };
    let parts: Vec<&str> = rest.split('.').collect();
    parts.len() >= 2
        && matches!(parts[0], "0" | "1" | "2")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p.len() == 1 || !p.starts_with('0')))
}

fn is_uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else { return false };
    let b = rest.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_digit() || (b'a'..=b'f').contains(c) }
        })
}

/// The number of bytes that a (well-formed) base64 text decodes to.
pub(crate) fn base64_decoded_len(s: &str) -> usize {
    let n = s.bytes().filter(|b| !b.is_ascii_whitespace()).count();
    let pad = s.bytes().rev().filter(|b| !b.is_ascii_whitespace()).take_while(|b| *b == b'=').count();
    (n / 4 * 3).saturating_sub(pad)
}

fn is_base64(s: &str) -> bool {
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !clean.len().is_multiple_of(4) {
        return false;
    }
    let pad = clean.iter().rev().take_while(|b| **b == b'=').count();
    pad <= 2 && clean[..clean.len() - pad].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

fn digits(s: &str, n: usize) -> Option<i64> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

pub(crate) fn is_date(s: &str) -> bool {
    let mut parts = s.split('-');
    let Some(y) = parts.next().and_then(|y| digits(y, 4)) else { return false };
    if y == 0 {
        return false;
    }
    let Some(m) = parts.next() else { return true };
    let Some(m) = digits(m, 2).filter(|m| (1..=12).contains(m)) else { return false };
    let Some(d) = parts.next() else { return true };
    let Some(d) = digits(d, 2) else { return false };
    parts.next().is_none() && d >= 1 && d <= crate::fhirpath::days_in_month(y, m)
}

fn is_time(s: &str) -> bool {
    let (hms, frac) = match s.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (s, None),
    };
    let p: Vec<&str> = hms.split(':').collect();
    p.len() == 3
        && digits(p[0], 2).is_some_and(|h| h <= 23)
        && digits(p[1], 2).is_some_and(|m| m <= 59)
        && digits(p[2], 2).is_some_and(|x| x <= 60)
        && frac.is_none_or(|f| !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()))
}

fn is_datetime(s: &str, instant: bool) -> bool {
    let Some((date, time)) = s.split_once('T') else {
        return !instant && is_date(s);
    };
    if date.len() != 10 || !is_date(date) {
        return false;
    }
    let (t, tz) = if let Some(t) = time.strip_suffix('Z') {
        (t, "Z")
    } else if let Some(p) = time.rfind(['+', '-']) {
        (&time[..p], &time[p..])
    } else {
        return false;
    };
    if tz != "Z" {
        let b = tz.as_bytes();
        if b.len() != 6 || b[3] != b':' {
            return false;
        }
        let (h, m) = (digits(&tz[1..3], 2), digits(&tz[4..6], 2));
        if h.is_none_or(|h| h > 14) || m.is_none_or(|m| m > 59) {
            return false;
        }
    }
    is_time(t)
}

/// Basic narrative safety: no script, no event handler attributes, no external content in active elements.
pub(crate) fn check_xhtml(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let trimmed = s.trim_start();
    if !trimmed.starts_with("<div") {
        out.push("The narrative must be an xhtml <div> element".into());
    } else if !trimmed[..trimmed.find('>').unwrap_or(trimmed.len())].contains("http://www.w3.org/1999/xhtml") {
        out.push("Wrong namespace on the XHTML ('', should be 'http://www.w3.org/1999/xhtml')".into());
    }
    out.extend(illegal_xhtml_names(s));
    out
}

/// Elements and attributes the narrative rules (txt-1) do not allow: anything outside the basic HTML
/// formatting elements, event handler attributes and `javascript:` urls.
pub(crate) fn illegal_xhtml_names(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    const ALLOWED: &[&str] = &[
        "p",
        "br",
        "div",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "a",
        "span",
        "b",
        "em",
        "i",
        "strong",
        "small",
        "big",
        "tt",
        "small",
        "dfn",
        "q",
        "var",
        "abbr",
        "acronym",
        "cite",
        "blockquote",
        "hr",
        "address",
        "bdo",
        "kbd",
        "q",
        "sub",
        "sup",
        "ul",
        "ol",
        "li",
        "dl",
        "dt",
        "dd",
        "pre",
        "table",
        "caption",
        "colgroup",
        "col",
        "thead",
        "tr",
        "tfoot",
        "tbody",
        "th",
        "td",
        "code",
        "samp",
        "img",
        "map",
        "area",
        "u",
        "s",
        "strike",
        "ins",
        "del",
        "center",
        "font",
    ];
    let lower = s.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut i = 0;
    while let Some(p) = lower[i..].find('<') {
        let st = i + p + 1;
        i = st;
        if st >= bytes.len() {
            break;
        }
        if bytes[st] == b'/' || bytes[st] == b'!' || bytes[st] == b'?' {
            continue;
        }
        let end = lower[st..].find('>').map(|e| st + e).unwrap_or(bytes.len());
        let tag = &lower[st..end];
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == ':').collect();
        let name = name.rsplit(':').next().unwrap_or("").to_string();
        if !name.is_empty() && !ALLOWED.contains(&name.as_str()) {
            out.push(format!("Illegal element name in the XHTML ('{name}')"));
        }
        // attributes: on* handlers and javascript: urls
        for attr in attributes(tag) {
            let aname = attr.split('=').next().unwrap_or("");
            if aname.starts_with("on") && aname.len() > 2 {
                out.push(format!("Illegal attribute name in the XHTML ('{aname}' on '{name}')"));
            }
            if attr.contains("javascript:") {
                out.push(format!("Illegal attribute value in the XHTML (javascript: on '{name}')"));
            }
        }
    }
    out
}

/// The attributes (`name="value"`) of a start tag's text (`span title="a b"`): split on whitespace outside
/// quoted values, the element name left out.
fn attributes(tag: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote = None;
    let mut start = None;
    for (i, c) in tag.char_indices() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push(&tag[s..i]);
                }
            }
            (None, _) => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(&tag[s..]);
    }
    out.into_iter().skip(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates() {
        assert!(is_date("2020-02-29"));
        assert!(!is_date("2019-02-29"));
        assert!(!is_date("1970-13-45"));
        assert!(is_date("2020"));
        assert!(is_datetime("2020-01-01T10:00:00Z", true));
        assert!(!is_datetime("2020-01-01T10:00:00", false));
        assert!(!is_datetime("2020-01-01", true));
        assert!(is_datetime("2020-01-01T10:00:00.123+01:00", false));
        assert!(is_time("10:00:00"));
        assert!(!is_time("25:00:00"));
    }

    #[test]
    fn formats() {
        assert!(check("id", &json!("abc-1.2")).is_none());
        assert!(check("id", &json!("a_b")).is_some());
        assert!(check("id", &json!("a".repeat(65))).is_some());
        assert!(check("code", &json!(" x")).is_some());
        assert!(check("positiveInt", &json!(0)).is_some());
        assert!(check("unsignedInt", &json!(0)).is_none());
        assert!(check("integer", &json!(3_000_000_000i64)).is_some());
        assert!(check("integer", &json!("1")).is_some());
        assert!(check("oid", &json!("urn:oid:1.2.3")).is_none());
        assert!(check("oid", &json!("urn:oid:1.02")).is_some());
        assert!(check("uuid", &json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")).is_none());
        assert!(check("base64Binary", &json!("aGVsbG8=")).is_none());
        assert!(check("base64Binary", &json!("aGVsbG8")).is_some());
        assert!(check("uri", &json!("a b")).is_some());
        assert!(check("string", &json!("")).is_some());
        assert!(check("boolean", &json!("true")).is_some());
    }

    #[test]
    fn xhtml() {
        assert!(check_xhtml("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>ok</p></div>").is_empty());
        assert!(!check_xhtml("<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>x</script></div>").is_empty());
        assert!(!check_xhtml("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p onclick=\"x()\">a</p></div>").is_empty());
        assert!(!check_xhtml("<p>no div</p>").is_empty());
        let quoted = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><span title=\"an onset\">a</span></div>";
        assert!(check_xhtml(quoted).is_empty());
    }
}
