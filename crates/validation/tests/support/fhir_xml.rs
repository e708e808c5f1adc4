//! FHIR XML to FHIR JSON, for test inputs that exist only as XML (the FHIRPath suite's inputs).
//!
//! The JSON shape follows the core StructureDefinitions: repeating elements become arrays, primitives take
//! their JSON type (boolean, number, string), primitive `id`/`extension` go to the `_name` companion, choice
//! elements keep their typed name (`valueQuantity`) and the XHTML `div` is kept as text. Test support only:
//! no DTDs, no CDATA, no processing of namespaces beyond ignoring them.

use std::collections::HashMap;

use rex_validation::Definitions;
use serde_json::{Map, Value};

struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    /// The element's own source text (kept for XHTML).
    raw: String,
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        let Some(end) = rest[p..].find(';') else {
            out.push_str(&rest[p..]);
            return out;
        };
        let entity = &rest[p + 1..p + end];
        let c = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&rest[p..=p + end]),
        }
        rest = &rest[p + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Parses the element starting at `pos` (which points at `<`); returns it and the position after it.
fn parse_element(src: &str, pos: usize) -> Option<(Node, usize)> {
    let b = src.as_bytes();
    let mut i = pos + 1;
    let name_end = i + src[i..].find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
    let name = src[i..name_end].to_string();
    i = name_end;
    let mut attrs = Vec::new();
    loop {
        while b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b[i] == b'/' {
            return Some((Node { name, attrs, children: vec![], raw: src[pos..i + 2].to_string() }, i + 2));
        }
        if b[i] == b'>' {
            i += 1;
            break;
        }
        let eq = i + src[i..].find('=')?;
        let key = src[i..eq].trim().to_string();
        let quote = b[eq + 1] as char;
        let vend = eq + 2 + src[eq + 2..].find(quote)?;
        attrs.push((key, unescape(&src[eq + 2..vend])));
        i = vend + 1;
    }
    let mut children = Vec::new();
    loop {
        let lt = i + src[i..].find('<')?;
        if src[lt..].starts_with("<!--") {
            i = lt + src[lt..].find("-->")? + 3;
        } else if src[lt..].starts_with("</") {
            let end = lt + src[lt..].find('>')? + 1;
            return Some((Node { name, attrs, children, raw: src[pos..end].to_string() }, end));
        } else {
            let (child, next) = parse_element(src, lt)?;
            children.push(child);
            i = next;
        }
    }
}

fn parse(src: &str) -> Option<Node> {
    let mut i = 0;
    loop {
        let lt = i + src[i..].find('<')?;
        if src[lt..].starts_with("<?") {
            i = lt + src[lt..].find("?>")? + 2;
        } else if src[lt..].starts_with("<!--") {
            i = lt + src[lt..].find("-->")? + 3;
        } else {
            return parse_element(src, lt).map(|(n, _)| n);
        }
    }
}

/// Appends `v` at index `len` of the array `key`, padding with nulls; a missing `v` only pads an existing array.
fn push_at(obj: &mut Map<String, Value>, key: String, v: Option<Value>, len: usize) {
    let list = match v {
        Some(_) => obj.entry(key).or_insert_with(|| Value::Array(Vec::new())),
        None => match obj.get_mut(&key) {
            Some(list) => list,
            None => return,
        },
    };
    if let Value::Array(a) = list {
        a.resize(len, Value::Null);
        a.push(v.unwrap_or(Value::Null));
    }
}

/// Element definitions of the core types, by path.
pub struct Model<'d> {
    defs: &'d Definitions,
    cache: HashMap<String, HashMap<String, &'d Value>>,
}

const PRIMITIVE_NUMBERS: &[&str] = &["integer", "decimal", "positiveInt", "unsignedInt"];

impl<'d> Model<'d> {
    pub fn new(defs: &'d Definitions) -> Model<'d> {
        Model { defs, cache: HashMap::new() }
    }

    fn element(&mut self, ty: &str, path: &str) -> Option<&'d Value> {
        let defs = self.defs;
        let table = self.cache.entry(ty.to_string()).or_insert_with(|| {
            let sd = defs.structure(&format!("http://hl7.org/fhir/StructureDefinition/{ty}"));
            sd.and_then(|sd| sd["snapshot"]["element"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|e| Some((e["path"].as_str()?.to_string(), e)))
                .collect()
        });
        table.get(path).copied()
    }

    /// Converts a FHIR XML document to FHIR JSON.
    pub fn convert(&mut self, xml: &str) -> Option<Value> {
        let root = parse(xml)?;
        Some(self.resource(&root))
    }

    fn resource(&mut self, node: &Node) -> Value {
        let mut obj = Map::new();
        obj.insert("resourceType".into(), Value::String(node.name.clone()));
        self.fill(&mut obj, node, &node.name, &node.name);
        Value::Object(obj)
    }

    /// Adds the children of `node` (of type `ty`, at element `path` in that type) to `obj`.
    fn fill(&mut self, obj: &mut Map<String, Value>, node: &Node, ty: &str, path: &str) {
        for (k, v) in &node.attrs {
            if k == "id" || k == "url" {
                obj.insert(k.clone(), Value::String(v.clone()));
            }
        }
        for child in &node.children {
            let Some((json_name, cty, cpath, array)) = self.child_info(ty, path, &child.name) else { continue };
            let (value, companion) = match cty.as_str() {
                "xhtml" => (Some(Value::String(child.raw.clone())), None),
                "Resource" => (child.children.first().map(|r| self.resource(r)), None),
                t if t.starts_with(|c: char| c.is_ascii_lowercase()) => self.primitive(child, t),
                "BackboneElement" | "Element" => {
                    let mut o = Map::new();
                    self.fill(&mut o, child, ty, &cpath);
                    (Some(Value::Object(o)), None)
                }
                t => {
                    let mut o = Map::new();
                    self.fill(&mut o, child, t, t);
                    (Some(Value::Object(o)), None)
                }
            };
            if array {
                let len = [json_name.clone(), format!("_{json_name}")]
                    .iter()
                    .filter_map(|k| obj.get(k).and_then(Value::as_array).map(Vec::len))
                    .max()
                    .unwrap_or(0);
                push_at(obj, json_name.clone(), value, len);
                push_at(obj, format!("_{json_name}"), companion, len);
            } else {
                if let Some(v) = value {
                    obj.insert(json_name.clone(), v);
                }
                if let Some(c) = companion {
                    obj.insert(format!("_{json_name}"), c);
                }
            }
        }
    }

    /// A primitive element: its JSON value and its `_name` companion (id, extensions).
    fn primitive(&mut self, node: &Node, ty: &str) -> (Option<Value>, Option<Value>) {
        let value = node.attrs.iter().find(|(k, _)| k == "value").map(|(_, v)| match ty {
            "boolean" => Value::Bool(v == "true"),
            t if PRIMITIVE_NUMBERS.contains(&t) => serde_json::from_str(v).unwrap_or(Value::String(v.clone())),
            _ => Value::String(v.clone()),
        });
        let mut companion = Map::new();
        self.fill(&mut companion, node, "Element", "Element");
        (value, (!companion.is_empty()).then_some(Value::Object(companion)))
    }

    /// (JSON name, type, element path, repeats) of the child `name` of element `path` in type `ty`.
    fn child_info(&mut self, ty: &str, path: &str, name: &str) -> Option<(String, String, String, bool)> {
        let direct = format!("{path}.{name}");
        let (elem, json_type) = match self.element(ty, &direct) {
            Some(e) => (e, None),
            None => {
                // a choice element: valueQuantity -> value[x] of type Quantity
                let (base, suffix) = (1..name.len())
                    .rev()
                    .filter(|&i| name.as_bytes()[i].is_ascii_uppercase())
                    .find_map(|i| self.element(ty, &format!("{path}.{}[x]", &name[..i])).map(|e| (e, &name[i..])))?;
                let t = base["type"]
                    .as_array()?
                    .iter()
                    .filter_map(|t| t["code"].as_str())
                    .find(|c| c.eq_ignore_ascii_case(suffix))?;
                (base, Some(t.to_string()))
            }
        };
        let array = elem["max"].as_str().is_some_and(|m| m != "1" && m != "0");
        if let Some(cr) = elem["contentReference"].as_str() {
            return Some((name.to_string(), "BackboneElement".into(), cr.trim_start_matches('#').into(), array));
        }
        let code = json_type
            .or_else(|| elem["type"][0]["code"].as_str().map(str::to_string))
            .unwrap_or_else(|| "BackboneElement".into());
        // the primitive value types of the core model are System types
        let code = code.strip_prefix("http://hl7.org/fhirpath/System.").map_or(code.clone(), |s| s.to_lowercase());
        let code = if code == "Resource" || code == "DomainResource" { "Resource".into() } else { code };
        Some((name.to_string(), code, direct, array))
    }
}
