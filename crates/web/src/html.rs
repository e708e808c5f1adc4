//! HTML building blocks: escaping, the page frame, and short readable texts of FHIR datatypes.
//! Everything a partner or user supplied goes through [`escape`]; partner narrative (XHTML) is
//! never inserted, only the coded data it summarises.

use serde_json::Value;

use crate::session::User;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A complete page: skip link, navigation for the signed-in user, the content in `<main>`.
pub fn page(title: &str, user: Option<&User>, csrf: &str, body: &str) -> String {
    let nav = match user {
        Some(user) => {
            let coordinator =
                if user.is_coordinator() { r#"<li><a href="/ui/coordinator">Coordinator view</a></li>"# } else { "" };
            let slots = if user.practitioner_role.is_some() {
                r#"<li><a href="/ui/slots">My consult slots</a></li>"#
            } else {
                ""
            };
            format!(
                r#"<nav aria-label="Main"><ul><li><a href="/ui/worklist">Worklist</a></li>{coordinator}{slots}</ul></nav>
<div class="who"><span>Signed in as {who}</span>
<form method="post" action="/ui/sign-out"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">Sign out</button></form></div>"#,
                who = escape(&user.label()),
                csrf = escape(csrf),
            )
        }
        None => String::new(),
    };
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · rex</title>
<link rel="stylesheet" href="/ui/style.css">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><span class="brand">rex</span>{nav}</header>
<main id="main">
{body}
</main>
</body>
</html>
"##,
        title = escape(title),
    )
}

/// A message box: `kind` is `error` (with role=alert, so screen readers announce it) or `notice`.
pub fn message(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!(r#"<div class="message {kind}" role="{role}">{}</div>"#, escape(text))
}

/// The readable text of a CodeableConcept: its text, else the first coding's display, else the
/// first code with its system's short name.
pub fn concept(value: &Value) -> String {
    if let Some(text) = value["text"].as_str() {
        return text.to_string();
    }
    let codings = value["coding"].as_array().into_iter().flatten();
    if let Some(display) = codings.clone().find_map(|c| c["display"].as_str()) {
        return display.to_string();
    }
    self::codings(value).into_iter().next().unwrap_or_default()
}

/// Every coding of a CodeableConcept as "display (SYSTEM code)".
pub fn codings(value: &Value) -> Vec<String> {
    value["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|coding| {
            let code = coding["code"].as_str().unwrap_or_default();
            let system = system_name(coding["system"].as_str().unwrap_or_default());
            let code = format!("{system} {code}").trim().to_string();
            match coding["display"].as_str() {
                Some(display) => format!("{display} ({code})"),
                None => code,
            }
        })
        .collect()
}

/// A short name for the code systems referrals use.
fn system_name(system: &str) -> &str {
    match system {
        "http://snomed.info/sct" => "SNOMED CT",
        "http://loinc.org" => "LOINC",
        "http://hl7.org/fhir/sid/icd-10" => "ICD-10",
        "http://hl7.org/fhir/sid/icd-10-cm" => "ICD-10-CM",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm",
        "http://www.whocc.no/atc" => "ATC",
        "urn:ietf:bcp:47" => "BCP-47",
        other => other.rsplit('/').next().unwrap_or(other),
    }
}

/// A Quantity as "value unit".
pub fn quantity(value: &Value) -> Option<String> {
    let number =
        value["value"].as_f64().map(|v| v.to_string()).or_else(|| value["value"].as_str().map(String::from))?;
    let unit = value["unit"].as_str().or(value["code"].as_str()).unwrap_or_default();
    Some(format!("{number} {unit}").trim_end().to_string())
}

/// The `value[x]` of an Observation or of one of its components, whatever its type (R4 allows
/// Quantity, CodeableConcept, string, boolean, integer, Range, Ratio, SampledData, time, dateTime
/// and Period); `None` when it has none.
pub fn observation_value(element: &Value) -> Option<String> {
    let value = |name: &str| element.get(format!("value{name}")).filter(|v| !v.is_null());
    if let Some(quantity) = value("Quantity") {
        return self::quantity(quantity);
    }
    if let Some(concept) = value("CodeableConcept") {
        return Some(self::concept(concept));
    }
    if let Some(text) = value("String").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    if let Some(flag) = value("Boolean").and_then(Value::as_bool) {
        return Some(if flag { "yes" } else { "no" }.to_string());
    }
    if let Some(number) = value("Integer").and_then(Value::as_i64) {
        return Some(number.to_string());
    }
    if let Some(range) = value("Range") {
        let low = self::quantity(&range["low"]).unwrap_or_default();
        let high = self::quantity(&range["high"]).unwrap_or_default();
        return Some(match (low.is_empty(), high.is_empty()) {
            (false, false) => format!("{low} – {high}"),
            (false, true) => format!("≥ {low}"),
            (true, false) => format!("≤ {high}"),
            (true, true) => return None,
        });
    }
    if let Some(ratio) = value("Ratio") {
        let numerator = self::quantity(&ratio["numerator"])?;
        let denominator = self::quantity(&ratio["denominator"]).unwrap_or_else(|| "1".into());
        return Some(format!("{numerator} / {denominator}"));
    }
    if let Some(sampled) = value("SampledData") {
        let count = sampled["data"].as_str().map_or(0, |d| d.split_whitespace().count());
        let period = sampled["period"].as_f64().map(|p| format!(", every {p} ms")).unwrap_or_default();
        return Some(format!("sampled data: {count} values{period}"));
    }
    if let Some(time) = value("Time").and_then(Value::as_str) {
        return Some(time.to_string());
    }
    if let Some(time) = value("DateTime").and_then(Value::as_str) {
        return Some(short_time(time));
    }
    if let Some(period) = value("Period") {
        let start = period["start"].as_str().map(short_time).unwrap_or_default();
        let end = period["end"].as_str().map(short_time).unwrap_or_default();
        return Some(format!("{start} – {end}").trim_matches([' ', '–']).to_string()).filter(|p| !p.is_empty());
    }
    None
}

/// The first part of an ISO date-time, for tables: `2026-11-29 08:55`.
pub fn short_time(instant: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(instant) {
        Ok(time) => time.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => instant.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escaping_covers_markup_and_attribute_quotes() {
        assert_eq!(escape(r#"<b a="1">O'Neil & co</b>"#), "&lt;b a=&quot;1&quot;&gt;O&#39;Neil &amp; co&lt;/b&gt;");
    }

    #[test]
    fn concepts_prefer_text_then_display_then_code() {
        let coded = json!({"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I21.4",
                                       "display": "NSTEMI"}]});
        assert_eq!(concept(&coded), "NSTEMI");
        assert_eq!(codings(&coded), ["NSTEMI (ICD-10-CM I21.4)"]);
        assert_eq!(concept(&json!({"text": "Chest pain", "coding": []})), "Chest pain");
        assert_eq!(codings(&json!({"coding": [{"system": "http://snomed.info/sct", "code": "1"}]})), ["SNOMED CT 1"]);
        assert_eq!(concept(&Value::Null), "");
    }

    #[test]
    fn every_observation_value_type_is_shown() {
        let cases = [
            (json!({"valueQuantity": {"value": 7.5, "unit": "mmol/L"}}), "7.5 mmol/L"),
            (json!({"valueCodeableConcept": {"coding": [{"code": "260385009", "display": "Negative"}]}}), "Negative"),
            (json!({"valueString": "sinus rhythm"}), "sinus rhythm"),
            (json!({"valueBoolean": true}), "yes"),
            (json!({"valueBoolean": false}), "no"),
            (json!({"valueInteger": 17}), "17"),
            (json!({"valueInteger": 0}), "0"),
            (
                json!({"valueRange": {"low": {"value": 2, "unit": "cm"}, "high": {"value": 3, "unit": "cm"}}}),
                "2 cm – 3 cm",
            ),
            (json!({"valueRange": {"low": {"value": 2, "unit": "cm"}}}), "≥ 2 cm"),
            (json!({"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}}), "1 / 128"),
            (
                json!({"valueSampledData": {"origin": {"value": 0}, "period": 10, "dimensions": 1, "data": "1 2 3"}}),
                "sampled data: 3 values, every 10 ms",
            ),
            (json!({"valueTime": "08:30:00"}), "08:30:00"),
            (json!({"valueDateTime": "2026-03-01T10:00:00Z"}), "2026-03-01 10:00 UTC"),
            (
                json!({"valuePeriod": {"start": "2026-03-01T10:00:00Z", "end": "2026-03-02T10:00:00Z"}}),
                "2026-03-01 10:00 UTC – 2026-03-02 10:00 UTC",
            ),
            (json!({"valuePeriod": {"start": "2026-03-01T10:00:00Z"}}), "2026-03-01 10:00 UTC"),
        ];
        for (element, shown) in cases {
            assert_eq!(observation_value(&element).as_deref(), Some(shown), "{element}");
        }
        assert_eq!(observation_value(&json!({"code": {"text": "no value"}})), None);
    }

    #[test]
    fn pages_escape_the_title_and_name_the_user() {
        let user = User::development(rex_auth::StaffRole::Coordinator, None, vec![]);
        let html = page("<x>", Some(&user), "t0k", "<p>body</p>");
        assert!(html.contains("<title>&lt;x&gt; · rex</title>"));
        assert!(html.contains(r#"href="/ui/coordinator""#));
        assert!(html.contains(r#"name="csrf" value="t0k""#));
        assert!(html.contains(r#"<main id="main">"#));
    }
}
