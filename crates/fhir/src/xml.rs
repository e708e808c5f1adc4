//! FHIR XML at the edge: an XML body becomes the FHIR JSON the rest of rex works on, and a JSON
//! answer becomes XML for a client that asks for it.
//!
//! The conversion is fhirbolt's element model (`fhirbolt::element`, R4 type hints: which elements
//! repeat, which primitives are numbers or booleans, the order elements are written in), which
//! round-trips every official R4 example. Two things it does not do are done here:
//!
//! - **Hostile XML.** fhirbolt reads with quick-xml 0.25, whose attribute checks are quadratic in
//!   the number of attributes of a tag (RUSTSEC-2026-0194) and whose namespace resolver keeps every
//!   declaration in scope without bound (RUSTSEC-2026-0195). [`from_xml`] first reads the body with
//!   quick-xml's plain reader (no namespace resolution, attributes counted without the duplicate
//!   check) and refuses a tag with more than [`MAX_ATTRIBUTES`] attributes or
//!   [`MAX_NAMESPACE_DECLARATIONS`] namespace declarations, nesting deeper than the depth limit,
//!   any DOCTYPE (so no entity can be defined: no billion laughs, no external entities), and
//!   references to entities XML does not predefine. The size limit is the caller's (the server
//!   takes XML bodies up to its large-body size).
//! - **Narrative.** fhirbolt trims the whitespace of every text node and drops the attributes of
//!   the narrative `div`, which changes what a reader of the narrative sees (`<b>Name</b> Peter`
//!   becomes `NamePeter`, `<pre>` loses its layout). The same guard pass cuts each narrative `div`
//!   out of the body as written and gives fhirbolt a numbered placeholder; the placeholders are
//!   replaced by the original XHTML in the JSON afterwards.

use fhirbolt::FhirReleases;
use fhirbolt::element::Element;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
use quick_xml::events::{BytesStart, Event};
use rex_i18n::{Message, msg};
use serde_json::{Map, Value};

use crate::json::{depth, too_deep};
use crate::outcome::{Issue, IssueCode};

/// The most attributes one start tag may carry. FHIR elements carry at most `value`, `id`, `url`
/// and a namespace declaration; narrative XHTML a few more (`class`, `style`, `colspan`...).
pub const MAX_ATTRIBUTES: usize = 32;
/// The most namespace declarations one start tag may carry (FHIR XML needs one: the FHIR or the
/// XHTML namespace).
pub const MAX_NAMESPACE_DECLARATIONS: usize = 4;

const XHTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";
const DIV_PLACEHOLDER: &str = "rex-narrative-";

type R4Element = Element<{ FhirReleases::R4 }>;

/// Whether a Content-Type (or `_format` value) names FHIR XML. A space stands for the `+` of an
/// unencoded `_format=application/fhir+xml` in a query string.
pub fn is_xml_media_type(value: &str) -> bool {
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase().replace(' ', "+");
    matches!(mime.as_str(), "application/fhir+xml" | "application/xml" | "text/xml" | "application/xml+fhir" | "xml")
}

/// Parses a FHIR XML body into FHIR JSON: the same object a JSON body would give, no deeper than
/// `max_depth`. Hostile or malformed XML is refused before fhirbolt reads it (see the module
/// documentation).
pub fn from_xml(bytes: &[u8], max_depth: usize) -> Result<Value, Issue> {
    let guarded = guard(bytes, max_depth)?;
    let config = Some(DeserializationConfig { mode: DeserializationMode::Strict });
    let element: R4Element = fhirbolt::xml::from_slice(&guarded.xml, config)
        .map_err(|err| Issue::error(IssueCode::Structure, msg!("xml-not-fhir", error = err)))?;
    let mut value = fhirbolt::json::to_json_value(element, None)
        .map_err(|err| Issue::error(IssueCode::Structure, msg!("xml-not-fhir", error = err)))?;
    restore_narratives(&mut value, &guarded.narratives)?;
    if !value.is_object() {
        return Err(Issue::error(IssueCode::Structure, msg!("xml-not-resource")));
    }
    if depth(&value) > max_depth {
        return Err(too_deep(max_depth));
    }
    Ok(value)
}

/// Whether a body or file is XML rather than JSON: its first character (after a byte order mark
/// and whitespace) is `<`.
pub fn looks_like_xml(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// Parses a file of FHIR JSON or FHIR XML (the command line reads either).
pub fn parse_file(bytes: &[u8], max_depth: usize) -> Result<Value, Vec<Issue>> {
    if looks_like_xml(bytes) {
        from_xml(bytes, max_depth).map_err(|issue| vec![issue])
    } else {
        crate::json::parse_body(bytes, max_depth)
    }
}

/// Writes a FHIR JSON resource as FHIR XML. Fails only for content that is not FHIR (rex answers
/// with resources it checked, so a failure is a fault of rex).
pub fn to_xml(resource: &Value) -> Result<String, String> {
    let mut resource = resource.clone();
    resource_type_first(&mut resource);
    let mut narratives = Vec::new();
    take_narratives(&mut resource, &mut narratives);
    let config = Some(DeserializationConfig { mode: DeserializationMode::Strict });
    let element: R4Element = fhirbolt::json::from_json_value(resource, config).map_err(|err| err.to_string())?;
    let xml = fhirbolt::xml::to_string(&element, None).map_err(|err| err.to_string())?;
    put_narratives(&xml, &narratives)
}

/// Replaces every narrative by a numbered placeholder, keeping the narratives (fhirbolt would
/// re-indent and trim them when writing).
fn take_narratives(value: &mut Value, narratives: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, member) in map.iter_mut() {
                if key == "div"
                    && let Value::String(div) = member
                {
                    let placeholder = placeholder(narratives.len());
                    narratives.push(std::mem::replace(div, placeholder));
                } else {
                    take_narratives(member, narratives);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| take_narratives(item, narratives)),
        _ => {}
    }
}

/// Writes each narrative as it is where fhirbolt wrote its placeholder. Every XHTML `div` start tag
/// in fhirbolt's output is a placeholder's (text content is escaped, so `<div` cannot come from a
/// value).
fn put_narratives(xml: &str, narratives: &[String]) -> Result<String, String> {
    let start_tag = format!("<div xmlns=\"{XHTML_NAMESPACE}\">");
    let mut out = String::with_capacity(xml.len() + narratives.iter().map(String::len).sum::<usize>());
    let mut rest = xml;
    while let Some(start) = rest.find(&start_tag) {
        let after = &rest[start + start_tag.len()..];
        let end = after.find("</div>").ok_or("a narrative placeholder is not closed")?;
        let narrative = after[..end]
            .trim()
            .strip_prefix(DIV_PLACEHOLDER)
            .and_then(|index| index.parse::<usize>().ok())
            .and_then(|index| narratives.get(index))
            .ok_or("a narrative placeholder is unknown")?;
        out.push_str(&rest[..start]);
        out.push_str(narrative);
        rest = &after[end + "</div>".len()..];
    }
    out.push_str(rest);
    Ok(out)
}

fn placeholder(index: usize) -> String {
    format!("<div xmlns=\"{XHTML_NAMESPACE}\">{DIV_PLACEHOLDER}{index}</div>")
}

/// fhirbolt reads a resource only when `resourceType` is its first member; JSON does not promise
/// any order, so every (contained, entry, parameter) resource gets it first.
fn resource_type_first(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(resource_type) = map.shift_remove("resourceType") {
                let mut ordered = Map::with_capacity(map.len() + 1);
                ordered.insert("resourceType".to_string(), resource_type);
                ordered.append(map);
                *map = ordered;
            }
            map.values_mut().for_each(resource_type_first);
        }
        Value::Array(items) => items.iter_mut().for_each(resource_type_first),
        _ => {}
    }
}

/// A body that passed the guards: its XML with each narrative replaced by a placeholder (and no
/// XML declaration: fhirbolt refuses `encoding="utf-8"` in lower case), and the narratives.
struct Guarded {
    xml: Vec<u8>,
    narratives: Vec<String>,
}

fn guard(bytes: &[u8], max_depth: usize) -> Result<Guarded, Issue> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut out = Vec::with_capacity(bytes.len());
    let mut narratives = Vec::new();
    let mut copied = 0;
    let mut depth = 0usize;
    // Where the narrative `div` being read starts, and how many `div`s deep the reader is in it.
    let mut narrative: Option<(usize, usize)> = None;
    loop {
        let before = reader.buffer_position();
        let event = reader.read_event().map_err(|err| malformed(bytes, reader.buffer_position(), &err))?;
        let at = |message: fn(usize, usize) -> Message| located(bytes, before, IssueCode::Structure, message);
        match event {
            Event::Start(start) => {
                depth += 1;
                if depth > max_depth {
                    return Err(located(bytes, before, IssueCode::TooCostly, |line, column| {
                        msg!("xml-too-deep", limit = max_depth, line, column)
                    }));
                }
                check_tag(bytes, before, &start)?;
                let is_div = start.local_name().as_ref() == b"div";
                match &mut narrative {
                    Some((_, divs)) if is_div => *divs += 1,
                    Some(_) => {}
                    None if is_div => {
                        check_narrative_namespace(&start).map_err(|()| at(narrative_namespace))?;
                        narrative = Some((before, 1));
                    }
                    None => {
                        let end = reader.buffer_position();
                        copied = drop_prefixed_attributes(&mut out, bytes, copied, (before, end), &start, false);
                    }
                }
            }
            Event::Empty(start) => {
                check_tag(bytes, before, &start)?;
                let end = reader.buffer_position();
                if narrative.is_none() && start.local_name().as_ref() == b"div" {
                    check_narrative_namespace(&start).map_err(|()| at(narrative_namespace))?;
                    replace_narrative(&mut out, &mut narratives, &bytes[copied..before], &bytes[before..end])?;
                    copied = end;
                } else if narrative.is_none() {
                    copied = drop_prefixed_attributes(&mut out, bytes, copied, (before, end), &start, true);
                }
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                if let Some((start, divs)) = &mut narrative
                    && end.local_name().as_ref() == b"div"
                {
                    *divs -= 1;
                    if *divs == 0 {
                        let (start, finish) = (*start, reader.buffer_position());
                        replace_narrative(&mut out, &mut narratives, &bytes[copied..start], &bytes[start..finish])?;
                        copied = finish;
                        narrative = None;
                    }
                }
            }
            Event::Text(text) => check_references(&text).map_err(|entity| undefined_entity(bytes, before, entity))?,
            Event::Comment(_) => {}
            Event::Decl(decl) => {
                let encoding = decl.encoding().transpose().ok().flatten();
                if encoding.is_some_and(|encoding| !encoding.eq_ignore_ascii_case(b"utf-8")) {
                    return Err(at(|line, column| msg!("xml-not-utf8", line, column)));
                }
                out.extend_from_slice(&bytes[copied..before]);
                copied = reader.buffer_position();
            }
            Event::DocType(_) => {
                return Err(located(bytes, before, IssueCode::Security, |line, column| {
                    msg!("xml-doctype", line, column)
                }));
            }
            Event::PI(_) => return Err(at(|line, column| msg!("xml-processing-instruction", line, column))),
            Event::CData(_) => return Err(at(|line, column| msg!("xml-cdata", line, column))),
            Event::Eof => break,
        }
    }
    out.extend_from_slice(&bytes[copied..]);
    Ok(Guarded { xml: out, narratives })
}

/// Counts the attributes and namespace declarations of a start tag without quick-xml's duplicate
/// check (quadratic), refusing floods.
fn check_tag(bytes: &[u8], position: usize, start: &BytesStart) -> Result<(), Issue> {
    let (mut attributes, mut namespaces) = (0usize, 0usize);
    for attribute in start.attributes().with_checks(false) {
        let attribute = attribute.map_err(|err| {
            located(bytes, position, IssueCode::Structure, |line, column| {
                msg!("xml-malformed-attribute", error = err, line, column)
            })
        })?;
        attributes += 1;
        let key = attribute.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            namespaces += 1;
        }
        check_references(&attribute.value).map_err(|entity| undefined_entity(bytes, position, entity))?;
        if attributes > MAX_ATTRIBUTES || namespaces > MAX_NAMESPACE_DECLARATIONS {
            return Err(located(bytes, position, IssueCode::TooCostly, |line, column| {
                msg!(
                    "xml-too-many-attributes",
                    attributes = MAX_ATTRIBUTES,
                    namespaces = MAX_NAMESPACE_DECLARATIONS,
                    line,
                    column
                )
            }));
        }
    }
    Ok(())
}

/// Writes a FHIR element's start tag without prefixed attributes (`xmlns:xsi`,
/// `xsi:schemaLocation`...), which carry no FHIR content and which fhirbolt refuses; returns how
/// far the body is copied. Tags that carry none, or whose own name has a prefix, stay as written.
fn drop_prefixed_attributes(
    out: &mut Vec<u8>,
    bytes: &[u8],
    copied: usize,
    (start, end): (usize, usize),
    tag: &BytesStart,
    empty: bool,
) -> usize {
    let prefixed = |attribute: &quick_xml::events::attributes::Attribute| attribute.key.as_ref().contains(&b':');
    let attributes: Vec<_> = tag.attributes().with_checks(false).flatten().collect();
    if tag.name().as_ref().contains(&b':') || !attributes.iter().any(prefixed) {
        return copied;
    }
    out.extend_from_slice(&bytes[copied..start]);
    out.push(b'<');
    out.extend_from_slice(tag.name().as_ref());
    for attribute in attributes.iter().filter(|attribute| !prefixed(attribute)) {
        let quote = if attribute.value.contains(&b'"') { b'\'' } else { b'"' };
        out.push(b' ');
        out.extend_from_slice(attribute.key.as_ref());
        out.extend_from_slice(&[b'=', quote]);
        out.extend_from_slice(&attribute.value);
        out.push(quote);
    }
    out.extend_from_slice(if empty { b"/>" } else { b">" });
    end
}

/// The narrative must be `<div xmlns="http://www.w3.org/1999/xhtml">`, so that the XHTML as written
/// is also the JSON `div` (which must declare its namespace).
fn check_narrative_namespace(start: &BytesStart) -> Result<(), ()> {
    let declares =
        start.attributes().with_checks(false).flatten().any(|attribute| {
            attribute.key.as_ref() == b"xmlns" && attribute.value.as_ref() == XHTML_NAMESPACE.as_bytes()
        });
    if start.name().as_ref() != b"div" || !declares {
        return Err(());
    }
    Ok(())
}

fn narrative_namespace(line: usize, column: usize) -> Message {
    msg!("xml-narrative-namespace", namespace = XHTML_NAMESPACE, line, column)
}

/// Only the entities XML predefines and character references: without a DOCTYPE, anything else is
/// undefined (and fhirbolt would keep it as written inside a narrative). The error is the reference.
fn check_references(raw: &[u8]) -> Result<(), String> {
    let mut rest = raw;
    while let Some(amp) = rest.iter().position(|&b| b == b'&') {
        rest = &rest[amp + 1..];
        let end = rest.iter().position(|&b| b == b';').filter(|&end| end <= 32);
        let name = end.map(|end| &rest[..end]).unwrap_or_default();
        let character = |digits: &[u8], hex: bool| {
            !digits.is_empty() && digits.iter().all(|b| if hex { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
        };
        let known = match name {
            b"lt" | b"gt" | b"amp" | b"quot" | b"apos" => true,
            [b'#', b'x', hex @ ..] => character(hex, true),
            [b'#', digits @ ..] => character(digits, false),
            _ => false,
        };
        if !known {
            let shown = match end {
                Some(end) => format!("&{};", String::from_utf8_lossy(&rest[..end])),
                None => format!("&{}", String::from_utf8_lossy(&rest[..rest.len().min(16)])),
            };
            return Err(shown);
        }
    }
    Ok(())
}

fn undefined_entity(bytes: &[u8], position: usize, entity: String) -> Issue {
    located(bytes, position, IssueCode::Structure, |line, column| msg!("xml-undefined-entity", entity, line, column))
}

fn replace_narrative(out: &mut Vec<u8>, narratives: &mut Vec<String>, before: &[u8], div: &[u8]) -> Result<(), Issue> {
    let div =
        std::str::from_utf8(div).map_err(|_| Issue::error(IssueCode::Structure, msg!("xml-narrative-not-utf8")))?;
    out.extend_from_slice(before);
    out.extend_from_slice(placeholder(narratives.len()).as_bytes());
    narratives.push(div.to_string());
    Ok(())
}

/// Puts each narrative back where fhirbolt left its placeholder.
fn restore_narratives(value: &mut Value, narratives: &[String]) -> Result<(), Issue> {
    match value {
        Value::Object(map) => {
            for (key, member) in map.iter_mut() {
                if key == "div"
                    && let Value::String(div) = member
                {
                    let index = div
                        .strip_prefix(&format!("<div xmlns=\"{XHTML_NAMESPACE}\">{DIV_PLACEHOLDER}"))
                        .and_then(|rest| rest.strip_suffix("</div>"))
                        .and_then(|index| index.parse::<usize>().ok())
                        .and_then(|index| narratives.get(index));
                    match index {
                        Some(original) => *div = original.clone(),
                        None => return Err(Issue::error(IssueCode::Structure, msg!("xml-narrative-misplaced"))),
                    }
                } else {
                    restore_narratives(member, narratives)?;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                restore_narratives(item, narratives)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn malformed(bytes: &[u8], position: usize, err: &quick_xml::Error) -> Issue {
    located(bytes, position, IssueCode::Structure, |line, column| {
        msg!("xml-not-well-formed", error = err, line, column)
    })
}

/// An issue whose message says where in the body (line and column) it was found.
fn located(bytes: &[u8], position: usize, code: IssueCode, message: impl FnOnce(usize, usize) -> Message) -> Issue {
    let before = &bytes[..position.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len() - before.iter().rposition(|&b| b == b'\n').map_or(0, |newline| newline + 1) + 1;
    Issue::error(code, message(line, column))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    const DEPTH: usize = crate::json::DEFAULT_MAX_DEPTH;

    fn examples() -> Option<Vec<PathBuf>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fhir-r4-examples/package");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("skipped: {} is absent", dir.display());
            return None;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .filter(|path| !path.ends_with("index.json") && !path.ends_with("package.json"))
            .collect();
        files.sort();
        Some(files)
    }

    /// Every official R4 example goes JSON -> XML -> JSON unchanged: primitive extensions, narrative,
    /// contained and Bundle entry resources, decimals with their precision.
    #[test]
    fn official_examples_round_trip() {
        let Some(files) = examples() else { return };
        let mut failures = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let original: Value = serde_json::from_str(&text).unwrap();
            let back = to_xml(&original).map_err(|err| format!("to XML: {err}")).and_then(|xml| {
                from_xml(xml.as_bytes(), DEPTH).map_err(|issue| format!("from XML: {}", issue.diagnostics))
            });
            match back {
                Ok(back) if back == original => {}
                Ok(_) => failures.push(format!("{}: changed", file.display())),
                Err(err) => failures.push(format!("{}: {err}", file.display())),
            }
        }
        assert!(files.len() > 400, "only {} examples", files.len());
        assert!(failures.is_empty(), "{} of {} examples fail:\n{}", failures.len(), files.len(), failures.join("\n"));
    }

    #[test]
    fn reads_primitives_arrays_extensions_and_narrative() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <id value="p1"/>
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml" lang="es"><b>Nombre</b> Lucía <pre>a
  b</pre></div></text>
  <active value="true"/>
  <name>
    <family value="Hernández"/>
    <given value="Lucía"/>
    <given><extension url="http://example.org/x"><valueString value="y"/></extension></given>
  </name>
  <multipleBirthInteger value="2"/>
</Patient>"#;
        let value = from_xml(xml.as_bytes(), DEPTH).unwrap();
        assert_eq!(
            value,
            json!({
                "resourceType": "Patient",
                "id": "p1",
                "text": {
                    "status": "generated",
                    "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"es\"><b>Nombre</b> Lucía <pre>a\n  b</pre></div>"
                },
                "active": true,
                "name": [{
                    "family": "Hernández",
                    "given": ["Lucía", null],
                    "_given": [null, {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}]
                }],
                "multipleBirthInteger": 2
            })
        );
    }

    #[test]
    fn ignores_schema_hints() {
        let xml = r#"<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://hl7.org/fhir fhir-all.xsd"><gender value='a"b'/><active value="true" xsi:nil="false"/></Patient>"#;
        let value = from_xml(xml.as_bytes(), DEPTH).unwrap();
        assert_eq!(value, json!({"resourceType": "Patient", "gender": "a\"b", "active": true}));
    }

    #[test]
    fn keeps_decimal_precision() {
        let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1.50, "unit": "mg"}});
        let observation: Value = serde_json::from_str(&observation.to_string().replace("1.5", "1.50")).unwrap();
        let xml = to_xml(&observation).unwrap();
        assert!(xml.contains(r#"<value value="1.50"/>"#), "{xml}");
        assert_eq!(from_xml(xml.as_bytes(), DEPTH).unwrap().to_string(), observation.to_string());
    }

    fn refused(xml: &str) -> Issue {
        from_xml(xml.as_bytes(), DEPTH).expect_err("hostile XML must be refused")
    }

    #[test]
    fn refuses_attribute_floods() {
        let attributes: String = (0..10_000).map(|i| format!(" a{i}=\"x\"")).collect();
        let issue = refused(&format!("<Patient xmlns=\"http://hl7.org/fhir\"{attributes}/>"));
        assert_eq!(issue.code, IssueCode::TooCostly, "{}", issue.diagnostics);
        assert!(issue.diagnostics.contains("attributes"), "{}", issue.diagnostics);
    }

    #[test]
    fn refuses_namespace_floods() {
        let declarations: String = (0..100).map(|i| format!(" xmlns:n{i}=\"urn:n{i}\"")).collect();
        let issue = refused(&format!("<Patient xmlns=\"http://hl7.org/fhir\"{declarations}/>"));
        assert_eq!(issue.code, IssueCode::TooCostly, "{}", issue.diagnostics);
        // Declarations spread over nested tags are bounded by the depth limit.
        let nested: String = (0..1000).map(|i| format!("<extension xmlns:n{i}=\"urn:n{i}\">")).collect();
        let issue = refused(&format!("<Patient xmlns=\"http://hl7.org/fhir\">{nested}"));
        assert_eq!(issue.code, IssueCode::TooCostly, "{}", issue.diagnostics);
    }

    #[test]
    fn refuses_doctype_and_entities() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Patient xmlns="http://hl7.org/fhir"><id value="&lol2;"/></Patient>"#;
        let issue = refused(laughs);
        assert_eq!(issue.code, IssueCode::Security, "{}", issue.diagnostics);
        assert!(issue.diagnostics.contains("DOCTYPE") && issue.diagnostics.contains("line 2"), "{}", issue.diagnostics);
        let external = r#"<!DOCTYPE Patient SYSTEM "file:///etc/passwd"><Patient xmlns="http://hl7.org/fhir"/>"#;
        assert_eq!(refused(external).code, IssueCode::Security);
        // Without a DOCTYPE an entity is undefined, in values and in the narrative alike.
        let undefined = r#"<Patient xmlns="http://hl7.org/fhir"><id value="&lol;"/></Patient>"#;
        assert!(refused(undefined).diagnostics.contains("&lol;"));
        let in_narrative = r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">&nbsp;</div></text></Patient>"#;
        assert!(refused(in_narrative).diagnostics.contains("&nbsp;"));
        // The predefined entities and character references are fine.
        let fine = r#"<Patient xmlns="http://hl7.org/fhir"><id value="a"/><gender value="&#109;&#x61;le"/><name><text value="A &amp; B &lt;&gt;&quot;&apos;"/></name></Patient>"#;
        let value = from_xml(fine.as_bytes(), DEPTH).unwrap();
        assert_eq!(value["gender"], "male");
        assert_eq!(value["name"][0]["text"], "A & B <>\"'");
    }

    #[test]
    fn refuses_deep_nesting() {
        let nested = "<extension>".repeat(100_000);
        let issue = refused(&format!("<Patient xmlns=\"http://hl7.org/fhir\">{nested}"));
        assert_eq!(issue.code, IssueCode::TooCostly, "{}", issue.diagnostics);
        assert!(issue.diagnostics.contains("deeper"), "{}", issue.diagnostics);
    }

    #[test]
    fn refuses_malformed_and_unknown_content() {
        for (xml, expected) in [
            ("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"a\"></Patient>", "well-formed"),
            ("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"a/></Patient>", "line 1"),
            ("not xml at all", "FHIR XML"),
            ("<Patient xmlns=\"http://hl7.org/fhir\"><nmae value=\"a\"/></Patient>", "nmae"),
            ("<Patient xmlns=\"urn:other\"/>", "FHIR XML"),
            ("<Patient xmlns=\"http://hl7.org/fhir\"><?php x?></Patient>", "Processing instructions"),
            ("<Patient xmlns=\"http://hl7.org/fhir\"><id><![CDATA[x]]></id></Patient>", "CDATA"),
            ("<Patient xmlns=\"http://hl7.org/fhir\"><text><div>x</div></text></Patient>", "narrative"),
            ("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Patient xmlns=\"http://hl7.org/fhir\"/>", "UTF-8"),
        ] {
            let issue = refused(xml);
            assert_eq!(issue.code, IssueCode::Structure, "{xml}: {}", issue.diagnostics);
            assert!(issue.diagnostics.contains(expected), "{xml}: {}", issue.diagnostics);
        }
    }
}

/// Official XML written by HL7, not by rex: the inputs of the FHIRPath R4 suite (the fhir-test-cases
/// validator subset in `../shared` has no XML). All seven parse; two have an identical JSON twin in the
/// examples package, and rex's conversion equals it, narrative included (`observation-example.xml`
/// has an extension its JSON copy lacks, `patient-example-period.xml` is a changed copy).
#[cfg(test)]
mod official_xml {
    use std::path::PathBuf;

    use serde_json::Value;

    use super::from_xml;

    #[test]
    fn official_xml_parses_and_matches_its_json_twin() {
        let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
        let Ok(entries) = std::fs::read_dir(shared.join("conformance/fhirpath-r4")) else {
            eprintln!("skipped: ../shared/conformance/fhirpath-r4 is absent");
            return;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "xml"))
            .filter(|path| !path.ends_with("tests-fhir-r4.xml"))
            .collect();
        files.sort();
        let mut identical = Vec::new();
        for file in &files {
            let value = from_xml(&std::fs::read(file).unwrap(), 64)
                .unwrap_or_else(|issue| panic!("{}: {}", file.display(), issue.diagnostics));
            let twin = shared.join("fhir-r4-examples/package").join(format!(
                "{}-{}.json",
                value["resourceType"].as_str().unwrap(),
                value["id"].as_str().unwrap()
            ));
            if let Ok(text) = std::fs::read_to_string(&twin)
                && serde_json::from_str::<Value>(&text).unwrap() == value
            {
                identical.push(file.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        assert_eq!(files.len(), 7, "{files:?}");
        assert_eq!(identical, ["patient-example.xml", "questionnaire-example.xml"]);
    }
}
