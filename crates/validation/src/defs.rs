//! Loading conformance resources (StructureDefinitions, ValueSets, CodeSystems, Questionnaires) from the
//! embedded core package, folders and NPM packages (folders or `.tgz`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::ValidationError;

/// The compact, pre-stripped form of `hl7.fhir.r4.core` 4.0.1 shipped inside the crate (see
/// `examples/pack_core.rs`, which regenerates it from the official package).
static CORE_PACK: &[u8] = include_bytes!("../definitions/hl7.fhir.r4.core-4.0.1.min.json.gz");

/// The International Patient Summary 2.0.0 (`hl7.fhir.uv.ips`, CC0) in the same compact form, with the
/// resources of `hl7.terminology.r4` 7.0.1 and `hl7.fhir.uv.extensions.r4` 5.3.0-ballot-tc1 it refers to (see
/// `examples/pack_ips.rs`, which regenerates it).
static IPS_PACK: &[u8] = include_bytes!("../definitions/hl7.fhir.uv.ips-2.0.0.min.json.gz");

/// Loaded conformance resources, keyed by canonical URL (without version).
///
/// Built with [`Definitions::r4_core`] and extended with [`Definitions::add_folder`] /
/// [`Definitions::add_package`]; then handed to [`crate::Validator::new`], which generates the missing
/// snapshots and compiles everything once.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    pub(crate) structures: HashMap<String, Entry>,
    pub(crate) value_sets: HashMap<String, Entry>,
    pub(crate) code_systems: HashMap<String, Entry>,
    pub(crate) questionnaires: HashMap<String, Value>,
    /// Insertion order of structure URLs (for deterministic snapshot generation).
    pub(crate) order: Vec<String>,
    /// `ImplementationGuide.global` of the loaded guides: (resource type, profile every such resource must
    /// conform to).
    pub(crate) global_profiles: Vec<(String, String)>,
}

impl Definitions {
    /// An empty set of definitions (no base spec). Mostly useful for tests.
    pub fn empty() -> Definitions {
        Definitions::default()
    }

    /// The base specification `hl7.fhir.r4.core` 4.0.1 (StructureDefinitions with snapshots, ValueSets,
    /// CodeSystems), decompressed from the copy embedded in the binary. No file system access.
    ///
    /// The resources stay as text and are parsed when first used: the package is 10 MB of JSON, about
    /// 85 MB as `serde_json::Value`s, and validating referrals needs a few dozen of its 3,000 resources.
    pub fn r4_core() -> Result<Definitions, ValidationError> {
        let mut defs = Definitions::default();
        defs.add_pack(CORE_PACK, "core package", 10 << 20)?;
        Ok(defs)
    }

    /// Adds the International Patient Summary 2.0.0 (profiles, value sets, and the terminology and extensions
    /// they use), embedded in the binary as the core package is; parsed when first used too.
    pub fn add_ips(&mut self) -> Result<usize, ValidationError> {
        self.add_pack(IPS_PACK, "IPS package", 2 << 20)
    }

    /// Adds a package packed by [`pack_folder`] or [`pack_ips`] (gzipped JSON array), keeping each resource as
    /// text until it is used. A resource already loaded is kept: the core package's copies of HL7
    /// terminology code systems stay the ones core's value sets were written against.
    fn add_pack(&mut self, pack: &[u8], name: &str, capacity: usize) -> Result<usize, ValidationError> {
        let load = |e: &dyn std::fmt::Display| ValidationError::Load(format!("embedded {name}: {e}"));
        let mut text = String::with_capacity(capacity);
        flate2::read::GzDecoder::new(pack).read_to_string(&mut text).map_err(|e| load(&e))?;
        let text: Arc<str> = text.into();
        let items: Vec<&RawValue> = serde_json::from_str(&text).map_err(|e| load(&e))?;
        let mut n = 0;
        for item in items {
            let header: Header = serde_json::from_str(item.get()).map_err(|e| load(&e))?;
            let Some(url) = header.url.as_deref().map(canonical_base) else { continue };
            let loaded = match header.resource_type.as_str() {
                "StructureDefinition" => self.structures.contains_key(&url),
                "ValueSet" => self.value_sets.contains_key(&url),
                "CodeSystem" => self.code_systems.contains_key(&url),
                _ => false,
            };
            if loaded {
                continue;
            }
            let start = item.get().as_ptr() as usize - text.as_ptr() as usize;
            let resource_type = header.resource_type.clone();
            let core = CoreText { text: text.clone(), range: start..start + item.get().len() };
            n += self.insert(&resource_type, url, Entry { value: OnceLock::new(), core: Some((core, header)) });
        }
        Ok(n)
    }

    /// Adds one conformance resource (or a Bundle of them). Returns how many were kept; resource types
    /// the validator does not use are ignored.
    pub fn add_resource(&mut self, mut resource: Value) -> usize {
        let Some(rt) = resource.get("resourceType").and_then(Value::as_str).map(str::to_string) else {
            return 0;
        };
        if rt == "Bundle" {
            let mut n = 0;
            if let Some(Value::Array(entries)) = resource.get_mut("entry") {
                for entry in entries.iter_mut() {
                    if let Some(r) = entry.get_mut("resource") {
                        n += self.add_resource(r.take());
                    }
                }
            }
            return n;
        }
        let Some(url) = resource.get("url").and_then(Value::as_str).map(canonical_base) else {
            return 0;
        };
        if rt == "ImplementationGuide" {
            let globals = resource.get("global").and_then(Value::as_array).into_iter().flatten();
            let before = self.global_profiles.len();
            self.global_profiles
                .extend(globals.filter_map(|g| Some((s(g, "type")?.to_string(), s(g, "profile")?.to_string()))));
            return self.global_profiles.len() - before;
        }
        strip(&mut resource);
        if rt == "Questionnaire" {
            self.questionnaires.insert(url, resource);
            return 1;
        }
        self.insert(&rt, url, Entry::parsed(resource))
    }

    fn insert(&mut self, resource_type: &str, url: String, entry: Entry) -> usize {
        let map = match resource_type {
            "StructureDefinition" => {
                if !self.structures.contains_key(&url) {
                    self.order.push(url.clone());
                }
                &mut self.structures
            }
            "ValueSet" => &mut self.value_sets,
            "CodeSystem" => &mut self.code_systems,
            _ => return 0,
        };
        map.insert(url, entry);
        1
    }

    /// Adds every `*.json` conformance resource found in `path` (not recursive), e.g. the repository's
    /// `profiles/` folder. Files that are not JSON resources are skipped; unreadable JSON is an error.
    pub fn add_folder(&mut self, path: &Path) -> Result<usize, ValidationError> {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| ValidationError::Load(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        let mut n = 0;
        for file in names {
            if file.file_name().is_some_and(|f| f == "package.json" || f == ".index.json") {
                continue;
            }
            let bytes = std::fs::read(&file).map_err(|e| ValidationError::Load(format!("{}: {e}", file.display())))?;
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ValidationError::Load(format!("{}: {e}", file.display())))?;
            n += self.add_resource(value);
        }
        Ok(n)
    }

    /// Adds the conformance resources of an NPM FHIR package: a folder (with or without a `package/`
    /// sub-folder) or a `.tgz` archive.
    pub fn add_package(&mut self, path: &Path) -> Result<usize, ValidationError> {
        if path.is_dir() {
            let inner = path.join("package");
            return self.add_folder(if inner.is_dir() { &inner } else { path });
        }
        let file = std::fs::File::open(path).map_err(|e| ValidationError::Load(format!("{}: {e}", path.display())))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut n = 0;
        let entries = archive.entries().map_err(|e| ValidationError::Load(format!("{}: {e}", path.display())))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ValidationError::Load(format!("{}: {e}", path.display())))?;
            let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            if !name.ends_with(".json") || name.ends_with("package.json") || name.contains(".index") {
                continue;
            }
            if name.contains("/example/") || name.contains("/other/") || name.contains("/openapi/") {
                continue;
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(|e| ValidationError::Load(format!("{name}: {e}")))?;
            if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                n += self.add_resource(value);
            }
        }
        Ok(n)
    }

    /// Every loaded StructureDefinition, ValueSet and CodeSystem.
    fn all(&self) -> impl Iterator<Item = &Value> {
        self.structures.values().chain(self.value_sets.values()).chain(self.code_systems.values()).map(Entry::value)
    }

    /// The StructureDefinition, ValueSet or CodeSystem with this canonical URL (without version).
    fn get(&self, url: &str) -> Option<&Value> {
        [&self.structures, &self.value_sets, &self.code_systems].into_iter().find_map(|m| m.get(url)).map(Entry::value)
    }

    /// The StructureDefinition with this canonical URL, if loaded.
    pub fn structure(&self, url: &str) -> Option<&Value> {
        self.structures.get(canonical_base(url).as_str()).map(Entry::value)
    }
}

/// The fields of a core package resource read at load time, before the resource itself is needed.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct Header {
    #[serde(rename = "resourceType")]
    resource_type: String,
    url: Option<String>,
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    pub kind: Option<String>,
    pub derivation: Option<String>,
    snapshot: Option<serde::de::IgnoredAny>,
}

/// One conformance resource: parsed, or still text inside the decompressed core package.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The parsed resource; for core text, filled by [`Entry::value`] (snapshot generation of profiles).
    value: OnceLock<Value>,
    core: Option<(CoreText, Header)>,
}

/// A resource's place in the shared, decompressed core package text.
#[derive(Clone)]
pub(crate) struct CoreText {
    text: Arc<str>,
    range: Range<usize>,
}

impl std::fmt::Debug for CoreText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "core package bytes {:?}", self.range)
    }
}

impl CoreText {
    /// Parses the resource. The text was checked as JSON when the package was loaded.
    pub(crate) fn parse(&self) -> Value {
        serde_json::from_str(&self.text[self.range.clone()]).unwrap_or(Value::Null)
    }
}

impl Entry {
    fn parsed(value: Value) -> Entry {
        Entry { value: OnceLock::from(value), core: None }
    }

    /// The resource, parsed once and kept.
    pub(crate) fn value(&self) -> &Value {
        self.value.get_or_init(|| self.core.as_ref().map_or(Value::Null, |(t, _)| t.parse()))
    }

    /// The resource, parsed again for this use unless it is already held (for data compiled once and cached).
    pub(crate) fn parse(&self) -> Cow<'_, Value> {
        match (self.value.get(), &self.core) {
            (Some(v), _) => Cow::Borrowed(v),
            (None, Some((t, _))) => Cow::Owned(t.parse()),
            (None, None) => Cow::Owned(Value::Null),
        }
    }

    /// A core StructureDefinition that has its snapshot, so it can be compiled when first used.
    pub(crate) fn lazy_core(&self) -> Option<(&CoreText, &Header)> {
        self.core.as_ref().filter(|(_, h)| h.snapshot.is_some()).map(|(t, h)| (t, h))
    }
}

/// `http://x/y|1.0` -> `http://x/y`.
pub(crate) fn canonical_base(url: &str) -> String {
    url.split('|').next().unwrap_or(url).to_string()
}

const DROP_ELEMENT_KEYS: &[&str] = &[
    "short",
    "definition",
    "comment",
    "requirements",
    "alias",
    "mapping",
    "isModifierReason",
    "isSummary",
    "example",
    "mustSupport",
    "meaningWhenMissing",
    "orderMeaning",
    "label",
    "code",
    "representation",
];

/// Removes the narrative and documentation parts of a conformance resource that validation never reads.
/// The url of an additional binding: R5 `ElementDefinition.binding.additional` as an extension.
pub(crate) fn is_additional_binding(url: &str) -> bool {
    url.ends_with("binding.additional") || url.ends_with("/additional-binding")
}

pub(crate) fn strip(resource: &mut Value) {
    let Some(obj) = resource.as_object_mut() else { return };
    for key in ["text", "description", "purpose", "copyright", "contact", "mapping", "publisher", "useContext"] {
        obj.remove(key);
    }
    if obj.get("resourceType").and_then(Value::as_str) == Some("Questionnaire") {
        return;
    }
    for list in ["snapshot", "differential"] {
        if let Some(Value::Array(elements)) = obj.get_mut(list).and_then(|s| s.get_mut("element")) {
            for e in elements.iter_mut() {
                if let Some(e) = e.as_object_mut() {
                    for key in DROP_ELEMENT_KEYS {
                        e.remove(*key);
                    }
                    e.retain(|k, _| !k.starts_with("example"));
                    if let Some(Value::Array(cs)) = e.get_mut("constraint") {
                        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                            c.remove("xpath");
                            c.remove("requirements");
                        }
                    }
                    if let Some(Value::Object(b)) = e.get_mut("binding") {
                        b.remove("description");
                        // Of the binding's extensions, only additional bindings are rules.
                        if let Some(Value::Array(exts)) = b.get_mut("extension") {
                            exts.retain(|x| s(x, "url").is_some_and(is_additional_binding));
                        }
                        if b.get("extension").and_then(Value::as_array).is_some_and(Vec::is_empty) {
                            b.remove("extension");
                        }
                    }
                    if let Some(Value::Object(b)) = e.get_mut("base") {
                        b.remove("min");
                    }
                }
            }
        }
    }
    if let Some(Value::Array(concepts)) = obj.get_mut("concept") {
        strip_concepts(concepts);
    }
}

fn strip_concepts(concepts: &mut [Value]) {
    for c in concepts.iter_mut().filter_map(Value::as_object_mut) {
        c.remove("definition");
        c.remove("designation");
        c.remove("extension");
        if let Some(Value::Array(props)) = c.get_mut("property") {
            props.retain(|p| {
                matches!(
                    p.get("code").and_then(Value::as_str),
                    Some("notSelectable" | "status" | "inactive" | "abstract")
                )
            });
            if props.is_empty() {
                c.remove("property");
            }
        }
        if let Some(Value::Array(sub)) = c.get_mut("concept") {
            strip_concepts(sub);
        }
    }
}

/// Reads an unpacked official package folder and returns the compact form embedded by [`Definitions::r4_core`].
pub fn pack_folder(folder: &Path) -> Result<Vec<u8>, ValidationError> {
    let mut names: Vec<_> = std::fs::read_dir(folder)
        .map_err(|e| ValidationError::Load(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let f = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
            f.ends_with(".json")
                && (f.starts_with("StructureDefinition-") || f.starts_with("ValueSet-") || f.starts_with("CodeSystem-"))
        })
        .collect();
    names.sort();
    let mut out = Vec::new();
    for file in names {
        let bytes = std::fs::read(&file).map_err(|e| ValidationError::Load(e.to_string()))?;
        let mut v: Value = serde_json::from_slice(&bytes).map_err(|e| ValidationError::Load(e.to_string()))?;
        strip(&mut v);
        compact(&mut v);
        out.push(v);
    }
    serde_json::to_vec(&Value::Array(out)).map_err(|e| ValidationError::Load(e.to_string()))
}

/// Drops what a packed resource does not need: its differential (the published snapshot is used), and
/// the metadata and element extensions validation never reads (obligations, documentation; the extensions
/// that are rules sit on an element's types and bindings).
fn compact(v: &mut Value) {
    let Some(o) = v.as_object_mut() else { return };
    for key in ["differential", "meta", "extension", "identifier", "date", "jurisdiction"] {
        o.remove(key);
    }
    if let Some(Value::Array(elements)) = o.get_mut("snapshot").and_then(|s| s.get_mut("element")) {
        for e in elements.iter_mut().filter_map(Value::as_object_mut) {
            e.remove("extension");
        }
    }
}

/// Packs an implementation guide (a package folder or `.tgz`) with what it uses from `dependencies`: the
/// guide's StructureDefinitions, ValueSets and CodeSystems, then every StructureDefinition, ValueSet and
/// CodeSystem of the dependencies they refer to (base definitions, type and target profiles, bindings, value
/// set includes), transitively. The result has the form [`Definitions::add_ips`] reads (before gzip).
pub fn pack_ips(guide: &Path, dependencies: &[&Path]) -> Result<Vec<u8>, ValidationError> {
    let mut own = Definitions::default();
    own.add_package(guide)?;
    let mut deps = Definitions::default();
    for d in dependencies {
        deps.add_package(d)?;
    }
    let mut todo: Vec<Value> = own.all().cloned().collect();
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut out = Vec::new();
    while let Some(mut v) = todo.pop() {
        for url in references(&v) {
            if taken.insert(url.clone())
                && let Some(dep) = deps.get(&url)
            {
                todo.push(dep.clone());
            }
        }
        compact(&mut v);
        out.push(v);
    }
    out.sort_by(|a, b| (s(a, "resourceType"), s(a, "url")).cmp(&(s(b, "resourceType"), s(b, "url"))));
    out.dedup_by(|a, b| s(a, "url") == s(b, "url") && s(a, "resourceType") == s(b, "resourceType"));
    serde_json::to_vec(&Value::Array(out)).map_err(|e| ValidationError::Load(e.to_string()))
}

/// The canonical URLs (without version) a conformance resource refers to.
fn references(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |u: Option<&str>| out.extend(u.map(canonical_base));
    add(s(v, "baseDefinition"));
    let elements = v.pointer("/snapshot/element").and_then(Value::as_array).into_iter().flatten();
    for e in elements {
        for t in e.get("type").and_then(Value::as_array).into_iter().flatten() {
            for key in ["profile", "targetProfile"] {
                t.get(key).and_then(Value::as_array).into_iter().flatten().for_each(|p| add(p.as_str()));
            }
        }
        if let Some(b) = e.get("binding") {
            add(s(b, "valueSet"));
            for x in b.get("extension").and_then(Value::as_array).into_iter().flatten() {
                add(x
                    .pointer("/extension")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find_map(|p| (s(p, "url") == Some("valueSet")).then(|| s(p, "valueCanonical")).flatten()));
            }
        }
    }
    for part in ["include", "exclude"] {
        for i in v.pointer("/compose").and_then(|c| c.get(part)).and_then(Value::as_array).into_iter().flatten() {
            add(s(i, "system"));
            i.get("valueSet").and_then(Value::as_array).into_iter().flatten().for_each(|u| add(u.as_str()));
        }
    }
    add(s(v, "supplements"));
    out
}

/// Helper: object field as str.
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    field(v, key).and_then(Value::as_str)
}

/// `v.get(key)`, faster on small objects: `serde_json` maps hash every key with SipHash, while a scan
/// of a few keys compares lengths first and rarely touches the bytes.
pub(crate) fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    member(v.as_object()?, key)
}

/// `obj.get(key)`, faster on small objects (see [`field`]).
pub(crate) fn member<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if obj.len() > 8 {
        return obj.get(key);
    }
    obj.iter().find_map(|(k, v)| (k == key).then_some(v))
}

/// The primitive extension companion `_name` of property `name`: a scan of the keys, which start with `_`
/// rarely, is cheaper than formatting `_name` and hashing it, up to objects far larger than FHIR's.
pub(crate) fn companion<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if obj.len() > 32 {
        return obj.get(&format!("_{name}"));
    }
    obj.iter().find_map(|(k, v)| (k.strip_prefix('_') == Some(name)).then_some(v))
}

/// A resource's `resourceType`, looked for first where JSON resources have it, as their first property.
pub(crate) fn resource_type(v: &Value) -> Option<&str> {
    let obj = v.as_object()?;
    match obj.iter().next() {
        Some((k, t)) if k == "resourceType" => t.as_str(),
        _ => obj.get("resourceType").and_then(Value::as_str),
    }
}

#[allow(dead_code)]
pub(crate) fn obj(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}
