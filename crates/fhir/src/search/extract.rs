//! Turning the elements a search parameter selects into the values the store indexes.
//!
//! Which elements count, per parameter type:
//! - string: string primitives; HumanName's family, given, prefix, suffix and text; Address's line,
//!   city, district, state, postalCode, country and text.
//! - token: Coding, each coding of a CodeableConcept, Identifier (system, value), ContactPoint (value
//!   only), and code/string/id/uri/boolean primitives (no system).
//! - reference: Reference.reference split into type and id; canonical and uri values as urls.
//! - date: date, dateTime and instant at their precision; Period (an open end is unbounded); each
//!   Timing.event and Timing.repeat.boundsPeriod.
//! - number: integer and decimal primitives.
//! - quantity: Quantity and its profiles (Age, Duration...); Money with its currency as the code in
//!   the ISO 4217 system; a Range as its low and its high bound, each a quantity of its own.
//!   SampledData has no single value and is skipped.
//! - uri: uri, url and canonical primitives.

use serde_json::Value;

use super::path::{Node, choices, elements};
use super::reference::split_reference;
use super::{IndexValue, ParamType, normalize_string};
use crate::datetime::parse_date_range;

const CURRENCY_SYSTEM: &str = "urn:iso:std:iso:4217";

/// Appends the index values of one selected element. `declared` is the parameter's element type,
/// for elements whose JSON does not name their type.
pub(super) fn index_values(param_type: ParamType, node: Node, declared: Option<&str>, out: &mut Vec<IndexValue>) {
    let fhir_type = node.fhir_type.or(declared);
    let value = node.value;
    if fhir_type == Some("Extension") {
        // Searching an extension searches its value[x].
        for inner in choices(value, "value") {
            index_values(param_type, inner, None, out);
        }
        return;
    }
    match param_type {
        ParamType::String => strings(fhir_type, value, out),
        ParamType::Token => tokens(fhir_type, value, out),
        ParamType::Reference => out.extend(reference(value)),
        ParamType::Date => dates(fhir_type, value, out),
        ParamType::Number => out.extend(value.as_f64().map(|value| IndexValue::Number { value })),
        ParamType::Quantity => quantities(fhir_type, value, out),
        ParamType::Uri => out.extend(value.as_str().map(|value| IndexValue::Uri { value: value.to_string() })),
        ParamType::Composite | ParamType::Special => {}
    }
}

fn strings(fhir_type: Option<&str>, value: &Value, out: &mut Vec<IndexValue>) {
    let parts: &[&str] = match fhir_type {
        Some("HumanName") => &["family", "given", "prefix", "suffix", "text"],
        Some("Address") => &["line", "city", "district", "state", "postalCode", "country", "text"],
        _ => {
            out.extend(value.as_str().map(string));
            return;
        }
    };
    for part in parts {
        out.extend(elements(value, part).filter_map(Value::as_str).map(string));
    }
}

fn string(text: &str) -> IndexValue {
    IndexValue::String { normalized: normalize_string(text), exact: text.to_string() }
}

fn tokens(fhir_type: Option<&str>, value: &Value, out: &mut Vec<IndexValue>) {
    match (fhir_type, value) {
        (_, Value::Bool(flag)) => out.push(IndexValue::Token { system: None, code: Some(flag.to_string()) }),
        (_, Value::String(code)) => out.push(IndexValue::Token { system: None, code: Some(code.clone()) }),
        (Some("Coding"), _) => out.extend(token(text(value, "system"), text(value, "code"))),
        (Some("CodeableConcept"), _) => {
            out.extend(
                elements(value, "coding").filter_map(|coding| token(text(coding, "system"), text(coding, "code"))),
            );
        }
        (Some("Identifier"), _) => out.extend(token(text(value, "system"), text(value, "value"))),
        // A ContactPoint's system says phone or email, not a namespace for its value.
        (Some("ContactPoint"), _) => out.extend(token(None, text(value, "value"))),
        _ => {}
    }
}

/// Language tokens with, after each tag, the shorter language ranges it falls under (`zh-Hant-HK`
/// adds `zh-Hant` and `zh`), so that an exact token match is RFC 4647 basic filtering.
pub(super) fn with_language_ranges(values: Vec<IndexValue>) -> Vec<IndexValue> {
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let ranges = match &value {
            IndexValue::Token { system, code: Some(tag) } => tag
                .match_indices('-')
                .map(|(at, _)| IndexValue::Token { system: system.clone(), code: Some(tag[..at].to_string()) })
                .collect(),
            _ => Vec::new(),
        };
        out.push(value);
        out.extend(ranges);
    }
    out
}

fn token(system: Option<String>, code: Option<String>) -> Option<IndexValue> {
    (system.is_some() || code.is_some()).then_some(IndexValue::Token { system, code })
}

fn reference(value: &Value) -> Option<IndexValue> {
    let url = match value {
        // canonical and uri elements: only the url is known.
        Value::String(url) => {
            return Some(IndexValue::Reference { target_type: None, target_id: None, url: url.clone() });
        }
        // A Reference with only an identifier or a display cannot be searched by reference.
        _ => value.get("reference")?.as_str()?,
    };
    let (target_type, target_id) = split_reference(url).unzip();
    Some(IndexValue::Reference {
        target_type: target_type.map(str::to_string),
        target_id: target_id.map(str::to_string),
        url: url.to_string(),
    })
}

fn dates(fhir_type: Option<&str>, value: &Value, out: &mut Vec<IndexValue>) {
    match fhir_type {
        Some("date" | "dateTime" | "instant") => out.extend(value.as_str().and_then(date)),
        Some("Period") => out.extend(period(value)),
        Some("Timing") => {
            out.extend(elements(value, "event").filter_map(Value::as_str).filter_map(date));
            // A repeating schedule counts by its outer limits.
            out.extend(value.get("repeat").and_then(|repeat| repeat.get("boundsPeriod")).and_then(period));
        }
        _ => {}
    }
}

fn date(text: &str) -> Option<IndexValue> {
    parse_date_range(text).map(|(low, high)| IndexValue::Date { low, high })
}

/// A Period from the start of its start to the end of its end; a missing bound is open.
fn period(value: &Value) -> Option<IndexValue> {
    let bound = |name| value.get(name).and_then(Value::as_str).map(parse_date_range);
    let (start, end) = (bound("start"), bound("end"));
    if start.is_none() && end.is_none() {
        return None;
    }
    // A malformed bound makes the whole period unusable, rather than silently open.
    let low = start.map_or(Some(i64::MIN), |range| range.map(|(low, _)| low))?;
    let high = end.map_or(Some(i64::MAX), |range| range.map(|(_, high)| high))?;
    Some(IndexValue::Date { low, high })
}

fn quantities(fhir_type: Option<&str>, value: &Value, out: &mut Vec<IndexValue>) {
    match fhir_type {
        Some("Quantity" | "Age" | "Count" | "Distance" | "Duration") => out.extend(quantity(value)),
        Some("Money") => out.extend(value.get("value").and_then(Value::as_f64).map(|amount| IndexValue::Quantity {
            value: amount,
            system: Some(CURRENCY_SYSTEM.to_string()),
            code: text(value, "currency"),
            unit: None,
        })),
        Some("Range") => out.extend(["low", "high"].into_iter().filter_map(|bound| quantity(value.get(bound)?))),
        _ => {}
    }
}

fn quantity(value: &Value) -> Option<IndexValue> {
    Some(IndexValue::Quantity {
        value: value.get("value")?.as_f64()?,
        system: text(value, "system"),
        code: text(value, "code"),
        unit: text(value, "unit"),
    })
}

fn text(value: &Value, name: &str) -> Option<String> {
    value.get(name)?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(param_type: ParamType, fhir_type: &str, value: Value) -> Vec<IndexValue> {
        let mut out = Vec::new();
        index_values(param_type, Node { value: &value, fhir_type: None }, Some(fhir_type), &mut out);
        out
    }

    fn token(system: Option<&str>, code: &str) -> IndexValue {
        IndexValue::Token { system: system.map(str::to_string), code: Some(code.to_string()) }
    }

    #[test]
    fn reference_values_keep_the_url_as_given() {
        let absolute =
            values(ParamType::Reference, "Reference", json!({"reference": "http://x.org/Patient/1/_history/2"}));
        assert_eq!(
            absolute,
            vec![IndexValue::Reference {
                target_type: Some("Patient".into()),
                target_id: Some("1".into()),
                url: "http://x.org/Patient/1/_history/2".into()
            }]
        );
        let contained = values(ParamType::Reference, "Reference", json!({"reference": "#p1"}));
        assert_eq!(contained, vec![IndexValue::Reference { target_type: None, target_id: None, url: "#p1".into() }]);
        assert!(values(ParamType::Reference, "Reference", json!({"identifier": {"value": "1"}})).is_empty());
        let canonical = values(ParamType::Reference, "canonical", json!("http://hl7.org/fhir/Questionnaire/q|1"));
        assert_eq!(
            canonical,
            vec![IndexValue::Reference {
                target_type: None,
                target_id: None,
                url: "http://hl7.org/fhir/Questionnaire/q|1".into()
            }]
        );
    }

    #[test]
    fn tokens_by_type() {
        let identifier = json!({"system": "urn:s", "value": "42", "use": "usual"});
        assert_eq!(values(ParamType::Token, "Identifier", identifier), vec![token(Some("urn:s"), "42")]);
        let contact = json!({"system": "phone", "value": "555"});
        assert_eq!(values(ParamType::Token, "ContactPoint", contact), vec![token(None, "555")]);
        let concept = json!({"coding": [{"system": "a", "code": "1"}, {"code": "2"}, {"display": "x"}], "text": "t"});
        assert_eq!(values(ParamType::Token, "CodeableConcept", concept), vec![token(Some("a"), "1"), token(None, "2")]);
        assert_eq!(values(ParamType::Token, "boolean", json!(false)), vec![token(None, "false")]);
        assert_eq!(values(ParamType::Token, "code", json!("male")), vec![token(None, "male")]);
    }

    #[test]
    fn dates_periods_and_timings() {
        let day = parse_date_range("2020-01-02").unwrap();
        let open_end = values(ParamType::Date, "Period", json!({"start": "2020-01-02"}));
        assert_eq!(open_end, vec![IndexValue::Date { low: day.0, high: i64::MAX }]);
        let open_start = values(ParamType::Date, "Period", json!({"end": "2020-01-02"}));
        assert_eq!(open_start, vec![IndexValue::Date { low: i64::MIN, high: day.1 }]);
        assert!(values(ParamType::Date, "Period", json!({"start": "2020-02-30"})).is_empty());
        let timing = values(ParamType::Date, "Timing", json!({"event": ["2020-01-02", "2021"]}));
        assert_eq!(timing, vec![date("2020-01-02").unwrap(), date("2021").unwrap()]);
        let bounded = values(ParamType::Date, "Timing", json!({"repeat": {"boundsPeriod": {"start": "2020-01-02"}}}));
        assert_eq!(bounded, open_end);
        assert!(values(ParamType::Date, "string", json!("2020")).is_empty(), "a string is not a date");
    }

    #[test]
    fn quantities_money_and_ranges() {
        let money = values(ParamType::Quantity, "Money", json!({"value": 12.5, "currency": "EUR"}));
        assert_eq!(
            money,
            vec![IndexValue::Quantity {
                value: 12.5,
                system: Some(CURRENCY_SYSTEM.into()),
                code: Some("EUR".into()),
                unit: None
            }]
        );
        let range =
            values(ParamType::Quantity, "Range", json!({"low": {"value": 1, "code": "a"}, "high": {"value": 3}}));
        assert_eq!(range.len(), 2);
        assert!(values(ParamType::Quantity, "SampledData", json!({"origin": {"value": 1}})).is_empty());
    }

    #[test]
    fn strings_of_names_and_addresses() {
        let name = json!({"family": "Müller", "given": ["Anna", "Lena"], "use": "official"});
        let exact: Vec<_> = values(ParamType::String, "HumanName", name)
            .into_iter()
            .map(|v| match v {
                IndexValue::String { exact, .. } => exact,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(exact, ["Müller", "Anna", "Lena"]);
        let address = json!({"line": ["1 Main St"], "city": "Zürich", "use": "home"});
        assert_eq!(values(ParamType::String, "Address", address).len(), 2);
    }

    #[test]
    fn extensions_are_searched_by_their_value() {
        let extension = json!({"url": "http://x", "valueCodeableConcept": {"coding": [{"system": "s", "code": "c"}]}});
        assert_eq!(values(ParamType::Token, "Extension", extension), vec![token(Some("s"), "c")]);
    }
}
