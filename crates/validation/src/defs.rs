//! Loading conformance resources (StructureDefinitions, ValueSets, CodeSystems, Questionnaires) from the
//! embedded core package, folders and NPM packages (folders or `.tgz`).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::ValidationError;

/// The compact, pre-stripped form of `hl7.fhir.r4.core` 4.0.1 shipped inside the crate (see
/// `examples/pack_core.rs`, which regenerates it from the official package).
static CORE_PACK: &[u8] = include_bytes!("../definitions/hl7.fhir.r4.core-4.0.1.min.json.gz");

/// Loaded conformance resources, keyed by canonical URL (without version).
///
/// Built with [`Definitions::r4_core`] and extended with [`Definitions::add_folder`] /
/// [`Definitions::add_package`]; then handed to [`crate::Validator::new`], which generates the missing
/// snapshots and compiles everything once.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    pub(crate) structures: HashMap<String, Value>,
    pub(crate) value_sets: HashMap<String, Value>,
    pub(crate) code_systems: HashMap<String, Value>,
    pub(crate) questionnaires: HashMap<String, Value>,
    /// Insertion order of structure URLs (for deterministic snapshot generation).
    pub(crate) order: Vec<String>,
}

impl Definitions {
    /// An empty set of definitions (no base spec). Mostly useful for tests.
    pub fn empty() -> Definitions {
        Definitions::default()
    }

    /// The base specification `hl7.fhir.r4.core` 4.0.1 (StructureDefinitions with snapshots, ValueSets,
    /// CodeSystems), decompressed from the copy embedded in the binary. No file system access.
    pub fn r4_core() -> Result<Definitions, ValidationError> {
        let mut text = Vec::with_capacity(16 << 20);
        flate2::read::GzDecoder::new(CORE_PACK)
            .read_to_end(&mut text)
            .map_err(|e| ValidationError::Load(format!("embedded core package: {e}")))?;
        let value: Value =
            serde_json::from_slice(&text).map_err(|e| ValidationError::Load(format!("embedded core package: {e}")))?;
        let mut defs = Definitions::default();
        if let Value::Array(items) = value {
            for item in items {
                defs.add_resource(item);
            }
        }
        Ok(defs)
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
        strip(&mut resource);
        let map = match rt.as_str() {
            "StructureDefinition" => {
                if !self.structures.contains_key(&url) {
                    self.order.push(url.clone());
                }
                &mut self.structures
            }
            "ValueSet" => &mut self.value_sets,
            "CodeSystem" => &mut self.code_systems,
            "Questionnaire" => &mut self.questionnaires,
            _ => return 0,
        };
        map.insert(url, resource);
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

    /// The StructureDefinition with this canonical URL, if loaded.
    pub fn structure(&self, url: &str) -> Option<&Value> {
        self.structures.get(canonical_base(url).as_str())
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
                        b.retain(|k, _| k != "extension");
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
        if let Some(o) = v.as_object_mut() {
            o.remove("differential");
            o.remove("meta");
            o.remove("extension");
            o.remove("identifier");
            o.remove("date");
            o.remove("jurisdiction");
        }
        out.push(v);
    }
    serde_json::to_vec(&Value::Array(out)).map_err(|e| ValidationError::Load(e.to_string()))
}

/// Helper: object field as str.
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

#[allow(dead_code)]
pub(crate) fn obj(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}
