//! Compiled StructureDefinitions: a flat element arena with parent/child and slice links, parsed
//! types, bindings, fixed values and pre-parsed FHIRPath constraints.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use rex_fhir::BindingStrength;

use crate::defs::{canonical_base, s};
use crate::fhirpath::{self, Expr};
use crate::snapshot::id_segments;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Primitive,
    Complex,
    Resource,
    Logical,
}

#[derive(Debug)]
pub(crate) struct TypeRef {
    pub code: String,
    pub profiles: Vec<String>,
    pub target_profiles: Vec<String>,
    /// How a Reference may be held: `contained`, `referenced`, `bundled` (any when empty).
    pub aggregation: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiscKind {
    Value,
    Pattern,
    Type,
    Profile,
    Exists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rules {
    Open,
    Closed,
    OpenAtEnd,
}

#[derive(Debug)]
pub(crate) struct Slicing {
    pub discriminators: Vec<(DiscKind, String)>,
    pub ordered: bool,
    pub rules: Rules,
}

#[derive(Debug)]
pub(crate) struct Binding {
    pub strength: BindingStrength,
    pub value_set: String,
    /// Value sets of additional bindings (R5 `binding.additional`, as an extension in R4) whose purpose is
    /// `required`: a value must also be in each of them.
    pub required_additional: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Constraint {
    pub key: String,
    pub error: bool,
    pub human: String,
    #[allow(dead_code)] // kept for diagnostics
    pub expression: String,
    /// `None` (and no `native` either) for a constraint the options skip, which is then never evaluated.
    pub expr: Option<Arc<Expr>>,
    /// A native implementation of a hot core invariant (same semantics as the expression).
    pub native: Option<crate::native::Native>,
}

#[derive(Debug)]
pub(crate) struct Elem {
    pub id: String,
    pub path: String,
    /// Last path segment without `[x]`.
    pub name: String,
    pub choice: bool,
    pub slice_name: Option<String>,
    pub min: u32,
    pub max: Option<u32>,
    /// JSON form is an array (base cardinality allows more than one).
    pub array: bool,
    pub types: Vec<TypeRef>,
    pub content_ref: Option<String>,
    pub children: Vec<usize>,
    /// Position in `children` of each child that is not a choice, by name: the walk looks up every JSON
    /// property of an instance here.
    pub child_names: crate::FxMap<Box<str>, usize>,
    pub slicing: Option<Slicing>,
    pub slices: Vec<usize>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    pub binding: Option<Binding>,
    pub constraints: Vec<Constraint>,
    pub max_length: Option<usize>,
    pub min_value: Option<Value>,
    pub max_value: Option<Value>,
    pub is_modifier: bool,
}

/// A StructureDefinition compiled for validation: its snapshot as a flat element arena.
#[derive(Debug)]
pub(crate) struct CompiledStructure {
    pub url: String,
    pub name: String,
    pub type_name: String,
    pub kind: Kind,
    #[allow(dead_code)] // kept for diagnostics
    pub is_abstract: bool,
    pub base: Option<String>,
    pub elems: Vec<Elem>,
    pub by_path: crate::FxMap<String, usize>,
    pub is_modifier_ext: bool,
    /// For extensions: the element paths or types where the extension may be used (`context` of type
    /// `element`). `None` when unrestricted or when a context is of another kind (FHIRPath, extension).
    pub contexts: Option<Vec<String>>,
}

/// Cache of parsed FHIRPath expressions shared by all structures.
pub(crate) type ExprCache = HashMap<String, Option<Arc<Expr>>>;

/// `StructureDefinition.kind`.
pub(crate) fn kind(code: Option<&str>) -> Kind {
    match code {
        Some("primitive-type") => Kind::Primitive,
        Some("complex-type") => Kind::Complex,
        Some("resource") => Kind::Resource,
        _ => Kind::Logical,
    }
}

pub(crate) fn compile(
    sd: &Value,
    snapshot: &[Value],
    cache: &mut ExprCache,
    options: &crate::Options,
) -> CompiledStructure {
    let url = s(sd, "url").map(canonical_base).unwrap_or_default();
    let kind = kind(s(sd, "kind"));
    let mut elems = Vec::with_capacity(snapshot.len());
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut by_path = crate::FxMap::default();
    for (i, e) in snapshot.iter().enumerate() {
        let path = s(e, "path").unwrap_or("").to_string();
        let slice_name = s(e, "sliceName").map(str::to_string);
        let id = match s(e, "id") {
            Some(id) => id.to_string(),
            None => match &slice_name {
                Some(n) => format!("{path}:{n}"),
                None => path.clone(),
            },
        };
        let last = path.rsplit('.').next().unwrap_or("");
        let (name, choice) = match last.strip_suffix("[x]") {
            Some(stem) => (stem.to_string(), true),
            None => (last.to_string(), false),
        };
        // A definition that writes `max` as a JSON number (`"max": 0`) is read as the HL7 validator reads it.
        let max = match e.get("max") {
            Some(Value::String(m)) if m != "*" => m.parse().ok(),
            Some(Value::Number(n)) => n.as_u64().map(|n| n as u32),
            _ => None,
        };
        let base_max = e.get("base").and_then(|b| s(b, "max"));
        // R4 declares Resource.id as System.String; it is an `id` (the HL7 validator checks it as one).
        let resource_id = kind == Kind::Resource && path.matches('.').count() == 1 && path.ends_with(".id");
        let array = i > 0
            && match base_max {
                Some(m) => m != "1" && m != "0",
                None => max != Some(1) && max != Some(0),
            };
        let types = type_refs(e, &path, resource_id);
        let slicing = e.get("slicing").map(slicing_of);
        let mut fixed = None;
        let mut pattern = None;
        let mut min_value = None;
        let mut max_value = None;
        if let Some(o) = e.as_object() {
            for (k, v) in o {
                if k.starts_with("fixed") {
                    fixed = Some(v.clone());
                } else if k.starts_with("pattern") {
                    pattern = Some(v.clone());
                } else if k.starts_with("minValue") {
                    min_value = Some(v.clone());
                } else if k.starts_with("maxValue") {
                    max_value = Some(v.clone());
                }
            }
        }
        let binding = e.get("binding").and_then(binding_of);
        let constraints = constraints_of(e, cache, options);
        by_path.entry(path.clone()).or_insert(i);
        by_id.insert(id.clone(), i);
        elems.push(Elem {
            id,
            path,
            name,
            choice,
            slice_name,
            min: e.get("min").and_then(Value::as_u64).unwrap_or(0) as u32,
            max,
            array,
            types,
            content_ref: s(e, "contentReference").map(|c| c.rsplit('#').next().unwrap_or(c).to_string()),
            children: Vec::new(),
            child_names: crate::FxMap::default(),
            slicing,
            slices: Vec::new(),
            fixed,
            pattern,
            binding,
            constraints,
            max_length: e.get("maxLength").and_then(Value::as_u64).map(|n| n as usize),
            min_value,
            max_value,
            is_modifier: e.get("isModifier").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    link(&mut elems, &by_id);
    let type_name = s(sd, "type").unwrap_or("").to_string();
    let is_modifier_ext = type_name == "Extension" && elems.first().is_some_and(|e| e.is_modifier)
        || snapshot
            .iter()
            .any(|e| s(e, "path") == Some("Extension") && e.get("isModifier").and_then(Value::as_bool) == Some(true));
    CompiledStructure {
        url,
        name: s(sd, "name").unwrap_or("").to_string(),
        type_name,
        kind,
        is_abstract: sd.get("abstract").and_then(Value::as_bool).unwrap_or(false),
        base: s(sd, "baseDefinition").map(canonical_base),
        elems,
        by_path,
        is_modifier_ext,
        contexts: element_contexts(sd),
    }
}

/// The types an element allows, with FHIRPath system types named as FHIR types. `resource_id`: the
/// element is a resource's `id`, an `id` whatever R4 declares.
fn type_refs(e: &Value, path: &str, resource_id: bool) -> Vec<TypeRef> {
    e.get("type")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut code = s(t, "code").unwrap_or("").to_string();
                    let fhir_type = t
                        .get("extension")
                        .and_then(Value::as_array)
                        .and_then(|exts| {
                            exts.iter().find(|x| {
                                s(x, "url")
                                    == Some("http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type")
                            })
                        })
                        .and_then(|x| s(x, "valueUrl").or(s(x, "valueUri")));
                    if let (Some(ft), true) = (fhir_type, code.starts_with("http://hl7.org/fhirpath/System.")) {
                        code = ft.to_string();
                    } else if let Some(sys) = code.strip_prefix("http://hl7.org/fhirpath/System.") {
                        code = match sys {
                            "Boolean" => "boolean",
                            "Integer" => "integer",
                            "Decimal" => "decimal",
                            "Date" => "date",
                            "DateTime" => "dateTime",
                            "Time" => "time",
                            _ => "string",
                        }
                        .to_string();
                        if path.ends_with(".url") && path.matches('.').count() == 1 {
                            code = "uri".into();
                        }
                    }
                    if resource_id {
                        code = "id".into();
                    }
                    TypeRef {
                        code,
                        profiles: strings(t.get("profile")),
                        target_profiles: strings(t.get("targetProfile")),
                        aggregation: strings(t.get("aggregation")),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An element's `slicing`.
fn slicing_of(sl: &Value) -> Slicing {
    Slicing {
        discriminators: sl
            .get("discriminator")
            .and_then(Value::as_array)
            .map(|ds| {
                ds.iter()
                    .filter_map(|d| {
                        let kind = match s(d, "type")? {
                            "value" => DiscKind::Value,
                            "pattern" => DiscKind::Pattern,
                            "type" => DiscKind::Type,
                            "profile" => DiscKind::Profile,
                            "exists" => DiscKind::Exists,
                            _ => return None,
                        };
                        Some((kind, s(d, "path").unwrap_or("$this").to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ordered: sl.get("ordered").and_then(Value::as_bool).unwrap_or(false),
        rules: match s(sl, "rules") {
            Some("closed") => Rules::Closed,
            Some("openAtEnd") => Rules::OpenAtEnd,
            _ => Rules::Open,
        },
    }
}

/// An element's `binding`, with the value sets of its required additional bindings.
fn binding_of(b: &Value) -> Option<Binding> {
    let strength = match s(b, "strength")? {
        "required" => BindingStrength::Required,
        "extensible" => BindingStrength::Extensible,
        "preferred" => BindingStrength::Preferred,
        _ => BindingStrength::Example,
    };
    let required_additional = b
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|x| s(x, "url").is_some_and(crate::defs::is_additional_binding))
        .filter_map(|x| {
            let parts = x.get("extension")?.as_array()?;
            let part = |name: &str| parts.iter().find(|p| s(p, "url") == Some(name));
            let purpose = part("purpose").and_then(|p| s(p, "valueCode"));
            let vs = part("valueSet").and_then(|p| s(p, "valueCanonical"))?;
            (purpose == Some("required")).then(|| canonical_base(vs))
        })
        .collect();
    Some(Binding { strength, value_set: canonical_base(s(b, "valueSet")?), required_additional })
}

/// An element's constraints: each with its native implementation, or its parsed expression (shared
/// through `cache`), or neither when the options skip it.
fn constraints_of(e: &Value, cache: &mut ExprCache, options: &crate::Options) -> Vec<Constraint> {
    e.get("constraint")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let key = s(c, "key")?.to_string();
                    let expression = s(c, "expression")?.to_string();
                    let skipped = options.skips(&key);
                    let native = if skipped { None } else { crate::native::native_constraint(&key, &expression) };
                    let expr = if skipped || key == "ele-1" || native.is_some() {
                        None
                    } else {
                        cache
                            .entry(expression.clone())
                            .or_insert_with(|| fhirpath::parse(&expression).ok().map(Arc::new))
                            .clone()
                    };
                    Some(Constraint {
                        key,
                        error: s(c, "severity") == Some("error"),
                        human: s(c, "human").unwrap_or("").to_string(),
                        expression,
                        expr,
                        native,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Links the elements: a segment `name:slice` is a slice of `parent.name`, anything else a child of its parent.
fn link(elems: &mut [Elem], by_id: &HashMap<String, usize>) {
    for i in 1..elems.len() {
        let id = elems[i].id.clone();
        let segs = id_segments(&id);
        let last = segs[segs.len() - 1];
        let parent_id = segs[..segs.len() - 1].join(".");
        if let Some((name, _)) = last.split_once(':') {
            let base_id = if parent_id.is_empty() { name.to_string() } else { format!("{parent_id}.{name}") };
            if let Some(&b) = by_id.get(&base_id) {
                elems[b].slices.push(i);
                continue;
            }
        }
        if let Some(&p) = by_id.get(&parent_id) {
            if !elems[i].choice {
                let name = elems[i].name.as_str().into();
                let position = elems[p].children.len();
                elems[p].child_names.entry(name).or_insert(position);
            }
            elems[p].children.push(i);
        }
    }
}

fn element_contexts(sd: &Value) -> Option<Vec<String>> {
    let list = sd.get("context")?.as_array()?;
    if list.is_empty() {
        return None;
    }
    list.iter()
        .map(|c| (s(c, "type") == Some("element")).then(|| s(c, "expression").map(str::to_string)).flatten())
        .collect()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(canonical_base).collect())
        .unwrap_or_default()
}

impl Elem {
    /// The JSON property name for a type of a choice element (`value` + `Quantity`).
    pub(crate) fn type_for_suffix(&self, suffix: &str) -> Option<&TypeRef> {
        self.types.iter().find(|t| {
            let mut c = t.code.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase() == suffix.chars().next().unwrap_or(' ') && c.as_str() == &suffix[1..],
                None => false,
            }
        })
    }
}
