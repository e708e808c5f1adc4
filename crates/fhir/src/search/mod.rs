//! FHIR R4 search parameters: which exist for each resource type, and the index values a resource
//! yields for them.
//!
//! The definitions come from `definitions/r4-search.json`, generated from the official package by
//! `definitions/generate.py`. Each parameter's FHIRPath expression is compiled by the `path`
//! module, a deliberately small subset of FHIRPath; parameters it cannot compile are kept but
//! reported unsupported, so a client hears "not supported" instead of getting wrong results.
//!
//! Of the 1,339 non-composite, non-special R4 SearchParameters, 1,331 compile. The 8 that do not:
//! `_content`, `_query` and `_text` (no expression: full-text search), Patient `age` and
//! `birthOrderBoolean` (no expression), Patient `deceased` (`exists() and != false`), and Bundle
//! `composition` and `message` (`entry[0].resource` is a resource, not a reference). Counted per
//! resource type that is 2,506 of 2,946 parameters, as the three full-text ones apply to every type.
//! The `unsupported_parameters_are_known` test prints the list.

mod extract;
mod path;
mod reference;

use rex_i18n::msg;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::outcome::{Issue, IssueCode};
use path::Path;
pub use reference::split_reference;

/// Most search index values one resource may yield. The referrals rex receives yield at most a few
/// hundred per resource; a resource with thousands of repeated names or codes costs a write and an
/// index row each, and is refused instead.
pub const MAX_INDEX_VALUES: usize = 2_000;

/// The type of a search parameter, which decides how its values are indexed and matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

/// One search parameter of one resource type.
#[derive(Debug, Clone)]
pub struct SearchParamDef {
    /// The name used in queries (`name`, `birthdate`, `_tag`).
    pub code: String,
    pub param_type: ParamType,
    /// The part of the SearchParameter's FHIRPath that applies to this resource type; empty when
    /// the definition has none.
    pub expression: String,
    /// Resource types a reference parameter may point to.
    pub targets: Vec<String>,
    /// The FHIR type of what the expression selects, when the definitions give a single one: it
    /// tells an Identifier from a ContactPoint, both `{system, value}` in JSON. Choice elements
    /// (`Observation.effective`) may have several, but their JSON keys name the type.
    declared_type: Option<String>,
    /// The parameter holds BCP-47 language tags (`language`, rex's `patient-language`): a search for
    /// a language finds its regional variants (`ar` finds `ar-AE`, RFC 4647 basic filtering).
    language_tags: bool,
    /// `None` when the parameter cannot be indexed.
    path: Option<Path>,
}

impl SearchParamDef {
    /// Whether rex indexes and searches this parameter: false for composite and special parameters
    /// and for expressions outside the FHIRPath subset rex evaluates.
    pub fn is_supported(&self) -> bool {
        self.path.is_some()
    }
}

/// The search parameters of every resource type.
#[derive(Debug)]
pub struct SearchRegistry {
    /// Sorted, for binary search and ordered listing.
    resource_types: Vec<String>,
    /// Each list sorted by code.
    params: HashMap<String, Vec<SearchParamDef>>,
}

/// One value to index, in the form its parameter type is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// `normalized` (see [`normalize_string`]) serves the default and `:contains` matches,
    /// `exact` the `:exact` modifier.
    String {
        normalized: String,
        exact: String,
    },
    /// A code in a system; either may be absent (`system|`, `|code`).
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    /// A reference as written (`url`), split into type and id when it is a literal reference to a
    /// resource (`Patient/1`, `Patient/1/_history/2`, `https://host/fhir/Patient/1`); contained,
    /// `urn:` and canonical references have only the url.
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        url: String,
    },
    /// The span a date covers, in microseconds since the Unix epoch, both ends inclusive. Open
    /// Period ends are `i64::MIN` / `i64::MAX`.
    Date {
        low: i64,
        high: i64,
    },
    Number {
        value: f64,
    },
    /// Quantity and its profiles; Money has its currency as `code` in the ISO 4217 system; a Range
    /// is indexed as its two bounds.
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
    },
    Uri {
        value: String,
    },
}

/// A value of one search parameter of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The parameter code.
    pub param: String,
    pub value: IndexValue,
}

/// The string form searches compare: Unicode NFD with combining marks removed, lowercased, so that
/// `Müller` matches `muller` and `MULLER`. Used for indexing and for query values alike.
pub fn normalize_string(s: &str) -> String {
    s.to_lowercase().nfd().filter(|c| !is_combining_mark(*c)).collect()
}

static R4: LazyLock<SearchRegistry> = LazyLock::new(|| {
    SearchRegistry::from_json(include_str!("../../definitions/r4-search.json"))
        .expect("definitions/r4-search.json is generated and checked in")
});

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDefinitions {
    resource_types: Vec<String>,
    params: HashMap<String, Vec<RawParam>>,
}

#[derive(Deserialize)]
struct RawParam {
    code: String,
    #[serde(rename = "type")]
    param_type: ParamType,
    expression: String,
    targets: Vec<String>,
    types: Vec<String>,
    choices: Vec<String>,
}

impl SearchRegistry {
    /// The FHIR R4 (4.0.1) search parameters, parsed on first use.
    pub fn r4() -> &'static SearchRegistry {
        &R4
    }

    fn from_json(json: &str) -> serde_json::Result<SearchRegistry> {
        let raw: RawDefinitions = serde_json::from_str(json)?;
        let mut resource_types = raw.resource_types;
        resource_types.sort();
        let params = raw
            .params
            .into_iter()
            .map(|(resource_type, raw_params)| {
                let mut defs: Vec<_> = raw_params.into_iter().map(|raw| compile(raw, &resource_type)).collect();
                defs.sort_by(|a, b| a.code.cmp(&b.code));
                (resource_type, defs)
            })
            .collect();
        Ok(SearchRegistry { resource_types, params })
    }

    /// Every concrete resource type, sorted.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.resource_types.iter().map(String::as_str)
    }

    /// Whether `name` is a concrete resource type (`Patient`, not `patient` or `DomainResource`).
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resource_types.binary_search_by(|t| t.as_str().cmp(name)).is_ok()
    }

    /// The search parameters of a resource type, sorted by code; empty for unknown types.
    pub fn params(&self, resource_type: &str) -> &[SearchParamDef] {
        self.params.get(resource_type).map_or(&[], Vec::as_slice)
    }

    /// The parameter `code` of a resource type, supported or not.
    pub fn param(&self, resource_type: &str, code: &str) -> Option<&SearchParamDef> {
        let params = self.params(resource_type);
        params.binary_search_by(|def| def.code.as_str().cmp(code)).ok().map(|at| &params[at])
    }

    /// The index values of a resource of `resource_type`, one entry per distinct value of each
    /// supported parameter. `_id` and `_lastUpdated` are left out: the store keeps them as columns.
    /// More than [`MAX_INDEX_VALUES`] is refused (`too-costly`, located at the parameter that
    /// crossed the limit): each value is a row written with the resource and read by searches.
    pub fn extract(&self, resource_type: &str, resource: &Value) -> Result<Vec<IndexEntry>, Issue> {
        let mut entries = Vec::new();
        for def in self.params(resource_type) {
            let Some(path) = &def.path else { continue };
            if def.code == "_id" || def.code == "_lastUpdated" {
                continue;
            }
            let mut values = Vec::new();
            for node in path.evaluate(resource) {
                extract::index_values(def.param_type, node, def.declared_type.as_deref(), &mut values);
            }
            if def.language_tags {
                values = extract::with_language_ranges(values);
            }
            entries.extend(distinct(values).into_iter().map(|value| IndexEntry { param: def.code.clone(), value }));
            if entries.len() > MAX_INDEX_VALUES {
                let location = def.expression.split('|').next().unwrap_or(resource_type).trim();
                return Err(Issue::error(
                    IssueCode::TooCostly,
                    msg!("too-many-index-values", resource_type, limit = MAX_INDEX_VALUES, code = def.code),
                )
                .at(location));
            }
        }
        Ok(entries)
    }
}

/// `values` without repeats, in their order. A hash set, not a scan of the values kept so far: a
/// resource may repeat a value thousands of times, and the scan was quadratic.
fn distinct(values: Vec<IndexValue>) -> Vec<IndexValue> {
    let mut seen = HashSet::with_capacity(values.len());
    let keep: Vec<bool> = values.iter().map(|value| seen.insert(Exact(value))).collect();
    values.into_iter().zip(keep).filter_map(|(value, keep)| keep.then_some(value)).collect()
}

/// An index value compared and hashed exactly, numbers by their bits (`f64` has no `Eq`).
struct Exact<'a>(&'a IndexValue);

impl Exact<'_> {
    /// The value's fields, numbers as bits.
    fn key(&self) -> (u8, [Option<&str>; 3], [u64; 2]) {
        match self.0 {
            IndexValue::String { normalized, exact } => (0, [Some(normalized), Some(exact), None], [0, 0]),
            IndexValue::Token { system, code } => (1, [system.as_deref(), code.as_deref(), None], [0, 0]),
            IndexValue::Reference { target_type, target_id, url } => {
                (2, [target_type.as_deref(), target_id.as_deref(), Some(url)], [0, 0])
            }
            IndexValue::Date { low, high } => (3, [None, None, None], [*low as u64, *high as u64]),
            IndexValue::Number { value } => (4, [None, None, None], [value.to_bits(), 0]),
            IndexValue::Quantity { value, system, code, unit } => {
                (5, [system.as_deref(), code.as_deref(), unit.as_deref()], [value.to_bits(), 0])
            }
            IndexValue::Uri { value } => (6, [Some(value), None, None], [0, 0]),
        }
    }
}

impl PartialEq for Exact<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Exact<'_> {}

impl std::hash::Hash for Exact<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

fn compile(raw: RawParam, resource_type: &str) -> SearchParamDef {
    let indexable = !matches!(raw.param_type, ParamType::Composite | ParamType::Special) && !raw.expression.is_empty();
    let path = indexable.then(|| Path::compile(&raw.expression, resource_type, &raw.choices).ok()).flatten();
    // The generator checks that only choice elements, typed by their keys, give several types.
    let declared_type = match raw.types.as_slice() {
        [single] => Some(single.clone()),
        _ => None,
    };
    // Every R4 parameter named `language` and rex's `*-language` ones select BCP-47 tags.
    let language_tags =
        raw.param_type == ParamType::Token && (raw.code == "language" || raw.code.ends_with("-language"));
    SearchParamDef {
        code: raw.code,
        param_type: raw.param_type,
        expression: raw.expression,
        targets: raw.targets,
        language_tags,
        declared_type,
        path,
    }
}

#[cfg(test)]
mod tests;
