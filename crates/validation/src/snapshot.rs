//! Snapshot generation: differential + base snapshot -> snapshot (profiles on profiles, slices,
//! extensions, constraints on elements of complex types that the base snapshot does not expand).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::defs::{Definitions, canonical_base, s};

/// Generates (or returns) the snapshot elements of every structure that needs one; results are keyed by
/// URL. Failures are reported as messages (the structure is then left without a snapshot). Core
/// structures that ship their snapshot are left out: they are compiled from it when first used.
pub(crate) fn generate_all(defs: &Definitions) -> (HashMap<String, Vec<Value>>, Vec<String>) {
    let mut done: HashMap<String, Vec<Value>> = HashMap::new();
    let mut errors = Vec::new();
    for url in &defs.order {
        if defs.structures.get(url).is_some_and(|e| e.lazy_core().is_some()) {
            continue;
        }
        let mut work = Work::default();
        if let Err(e) = snapshot_of(defs, url, &mut done, &mut work) {
            errors.push(format!("{url}: {e}"));
        }
        errors.append(&mut work.skipped);
    }
    (done, errors)
}

/// The state of one generation: the structures being generated (to catch circular bases), and the
/// differential elements left out because they could not be applied.
#[derive(Default)]
struct Work {
    stack: HashSet<String>,
    skipped: Vec<String>,
}

fn snapshot_of(
    defs: &Definitions,
    url: &str,
    done: &mut HashMap<String, Vec<Value>>,
    work: &mut Work,
) -> Result<(), String> {
    if done.contains_key(url) {
        return Ok(());
    }
    let sd = defs.structures.get(url).ok_or_else(|| format!("unknown structure {url}"))?.value();
    if let Some(Value::Array(elements)) = sd.get("snapshot").and_then(|s| s.get("element")) {
        if !elements.is_empty() && sd.get("differential").is_none() {
            done.insert(url.to_string(), elements.clone());
            return Ok(());
        }
        if !elements.is_empty() && s(sd, "derivation") != Some("constraint") {
            done.insert(url.to_string(), elements.clone());
            return Ok(());
        }
    }
    if !work.stack.insert(url.to_string()) {
        return Err("circular baseDefinition".into());
    }
    let base_url = s(sd, "baseDefinition").map(canonical_base).ok_or("no snapshot and no baseDefinition")?;
    snapshot_of(defs, &base_url, done, work)?;
    let base = done.get(&base_url).cloned().ok_or("base has no snapshot")?;
    let diff: Vec<Value> =
        sd.get("differential").and_then(|d| d.get("element")).and_then(Value::as_array).cloned().unwrap_or_default();
    let ty = s(sd, "type").unwrap_or("").to_string();
    let mut g = Gen { defs, done, work, elements: base };
    // Specialisations (logical models, new types) re-root the base under the new type name.
    let base_root = g.elements.first().and_then(|e| s(e, "path")).unwrap_or("").to_string();
    if !ty.is_empty() && base_root != ty && !ty.contains('/') {
        let base_ty = base_root.clone();
        for e in g.elements.iter_mut() {
            reroot(e, &base_ty, &ty, &base_ty, &ty);
        }
    }
    // As in the HL7 snapshot generator, an element that cannot be applied (a wrong path) is reported and left
    // out; the rest of the profile still applies.
    for d in &diff {
        if let Err(e) = g.apply(d) {
            g.work.skipped.push(format!("{url}: {e}"));
        }
    }
    let elements = g.elements;
    work.stack.remove(url);
    done.insert(url.to_string(), elements);
    Ok(())
}

struct Gen<'a> {
    defs: &'a Definitions,
    done: &'a mut HashMap<String, Vec<Value>>,
    work: &'a mut Work,
    elements: Vec<Value>,
}

/// Splits an element id into segments at dots that are not inside a slice name.
pub(crate) fn id_segments(id: &str) -> Vec<&str> {
    id.split('.').collect()
}

fn diff_id(d: &Value) -> String {
    if let Some(id) = s(d, "id") {
        return id.to_string();
    }
    let path = s(d, "path").unwrap_or("");
    match s(d, "sliceName") {
        Some(name) => format!("{path}:{name}"),
        None => path.to_string(),
    }
}

fn reroot(e: &mut Value, from_id: &str, to_id: &str, from_path: &str, to_path: &str) {
    if let Some(o) = e.as_object_mut() {
        if let Some(Value::String(id)) = o.get_mut("id")
            && let Some(rest) = id.strip_prefix(from_id)
        {
            *id = format!("{to_id}{rest}");
        }
        if let Some(Value::String(p)) = o.get_mut("path")
            && let Some(rest) = p.strip_prefix(from_path)
        {
            *p = format!("{to_path}{rest}");
        }
    }
}

fn id_of(e: &Value) -> String {
    if let Some(id) = s(e, "id") {
        return id.to_string();
    }
    let path = s(e, "path").unwrap_or("");
    match s(e, "sliceName") {
        Some(name) => format!("{path}:{name}"),
        None => path.to_string(),
    }
}

impl Gen<'_> {
    fn find(&self, id: &str) -> Option<usize> {
        self.elements.iter().position(|e| id_of(e) == id)
    }

    /// Index after the last element belonging to `id` (itself, its descendants and its slices).
    fn end_of(&self, idx: usize) -> usize {
        let id = id_of(&self.elements[idx]);
        let mut i = idx + 1;
        while i < self.elements.len() {
            let other = id_of(&self.elements[i]);
            if other.starts_with(&format!("{id}.")) || other.starts_with(&format!("{id}:")) {
                i += 1;
            } else {
                break;
            }
        }
        i
    }

    fn apply(&mut self, d: &Value) -> Result<(), String> {
        let mut id = diff_id(d);
        // The type-specific name of a choice element (`Observation.valueQuantity`) restricts the element to that
        // type. A type slice (`value[x]:valueQuantity`) is a slice like any other (see `ensure`): it constrains the
        // values of its type and leaves the element's other types allowed.
        let mut restrict_type: Option<String> = None;
        let segs: Vec<String> = id_segments(&id).into_iter().map(str::to_string).collect();
        let mut fixed_segs = Vec::with_capacity(segs.len());
        for (i, seg) in segs.iter().enumerate() {
            let prefix: String = fixed_segs.join(".");
            let (name, slice) = match seg.split_once(':') {
                Some((n, sl)) => (n.to_string(), Some(sl.to_string())),
                None => (seg.clone(), None),
            };
            if name.ends_with("[x]") {
                // kept as written
            } else if i > 0 && self.find(&format!("{prefix}.{name}")).is_none() {
                // valueQuantity -> value[x]
                let split = name.char_indices().find(|(_, c)| c.is_ascii_uppercase()).map(|(p, _)| p);
                if let Some(p) = split {
                    let stem = &name[..p];
                    if self.find(&format!("{prefix}.{stem}[x]")).is_some() {
                        if i == segs.len() - 1 {
                            restrict_type = Some(name[p..].to_string());
                        }
                        fixed_segs.push(match &slice {
                            Some(sl) => format!("{stem}[x]:{sl}"),
                            None => format!("{stem}[x]"),
                        });
                        continue;
                    }
                }
            }
            fixed_segs.push(seg.clone());
        }
        id = fixed_segs.join(".");
        let idx = self.ensure(&id)?;
        merge(&mut self.elements[idx], d);
        if let Some(t) = restrict_type
            && d.get("type").is_none()
        {
            restrict_types(&mut self.elements[idx], &t);
        }
        Ok(())
    }

    /// Makes sure an element with this id exists in the snapshot, expanding types and creating slices.
    fn ensure(&mut self, id: &str) -> Result<usize, String> {
        if let Some(i) = self.find(id) {
            return Ok(i);
        }
        let segs = id_segments(id);
        if segs.len() < 2 {
            return Err(format!("element {id} not found in base"));
        }
        let parent_id = segs[..segs.len() - 1].join(".");
        let last = segs[segs.len() - 1];
        if let Some((name, slice)) = last.split_once(':') {
            let base_id = format!("{parent_id}.{name}");
            let base_idx = self.ensure(&base_id)?;
            let base = self.elements[base_idx].clone();
            let base_path = s(&base, "path").unwrap_or("").to_string();
            let (slice_base_id, slice_name) = match slice.rsplit_once('/') {
                // re-slice: `a:s/t` is a slice of `a:s`
                Some((parent_slice, _)) => (format!("{base_id}:{parent_slice}"), slice.to_string()),
                None => (base_id.clone(), slice.to_string()),
            };
            let source_idx = self.find(&slice_base_id).unwrap_or(base_idx);
            let source_id = id_of(&self.elements[source_idx]);
            let mut copy = vec![self.elements[source_idx].clone()];
            let end = self.end_of(source_idx);
            for e in &self.elements[source_idx + 1..end] {
                let eid = id_of(e);
                if eid.starts_with(&format!("{source_id}.")) {
                    copy.push(e.clone());
                }
            }
            for e in copy.iter_mut() {
                reroot(e, &source_id, id, &base_path, &base_path);
                if let Some(o) = e.as_object_mut()
                    && !o.contains_key("id")
                {
                    o.insert("id".into(), Value::String(id_of(&Value::Object(o.clone()))));
                }
            }
            if let Some(o) = copy[0].as_object_mut() {
                o.remove("slicing");
                o.insert("id".into(), Value::String(id.to_string()));
                o.insert("sliceName".into(), Value::String(slice_name));
            }
            if let Some(ty) = choice_type_slice(name, slice) {
                restrict_types(&mut copy[0], ty);
                // A type slice where the profile declares no slicing: the slicing is by type, as the HL7
                // snapshot generator assumes.
                if let Some(o) = self.elements[base_idx].as_object_mut()
                    && !o.contains_key("slicing")
                {
                    let slicing =
                        serde_json::json!({"discriminator": [{"type": "type", "path": "$this"}], "rules": "open"});
                    o.insert("slicing".into(), slicing);
                }
            }
            let insert_at = self.end_of(base_idx);
            let at = insert_at;
            self.elements.splice(at..at, copy);
            return Ok(at);
        }
        let parent_idx = self.ensure(&parent_id)?;
        self.expand(parent_idx)?;
        self.find(id).ok_or_else(|| format!("element {id} not found"))
    }

    /// Inserts the children of an element's type (or content reference) right after it.
    fn expand(&mut self, idx: usize) -> Result<(), String> {
        let e = self.elements[idx].clone();
        let eid = id_of(&e);
        let epath = s(&e, "path").unwrap_or("").to_string();
        let end = self.end_of(idx);
        if self.elements[idx + 1..end].iter().any(|c| id_of(c).starts_with(&format!("{eid}."))) {
            return Ok(());
        }
        let (source, from_id, from_path): (Vec<Value>, String, String) = if let Some(cr) = s(&e, "contentReference") {
            let target = cr.trim_start_matches('#').split_once('#').map(|x| x.1).unwrap_or(cr.trim_start_matches('#'));
            // The target is the element of the base type, as the HL7 snapshot generator has it: a profile's
            // constraints on `Parameters.parameter` do not also apply to `Parameters.parameter.part`.
            let base = format!("http://hl7.org/fhir/StructureDefinition/{}", target.split('.').next().unwrap_or(""));
            let from_base =
                self.defs.structures.contains_key(&base) && snapshot_of(self.defs, &base, self.done, self.work).is_ok();
            let elements = match self.done.get(&base) {
                Some(snap) if from_base => snap.as_slice(),
                _ => self.elements.as_slice(),
            };
            let t_idx = elements
                .iter()
                .position(|x| s(x, "path") == Some(target) && s(x, "sliceName").is_none())
                .ok_or_else(|| format!("content reference {cr} not found"))?;
            let tid = id_of(&elements[t_idx]);
            let (child, slice) = (format!("{tid}."), format!("{tid}:"));
            let src = elements[t_idx + 1..]
                .iter()
                .take_while(|x| id_of(x).starts_with(&child) || id_of(x).starts_with(&slice))
                .filter(|x| id_of(x).starts_with(&child))
                .cloned()
                .collect();
            (src, tid, target.to_string())
        } else {
            let types = e.get("type").and_then(Value::as_array).cloned().unwrap_or_default();
            if types.len() != 1 {
                return Err(format!("cannot expand {eid}: {} types", types.len()));
            }
            let t = &types[0];
            let code = s(t, "code").unwrap_or("");
            let url = t
                .get("profile")
                .and_then(Value::as_array)
                .and_then(|p| p.first())
                .and_then(Value::as_str)
                .map(canonical_base)
                .filter(|u| self.defs.structures.contains_key(u))
                .unwrap_or_else(|| {
                    if code.contains(':') {
                        code.to_string()
                    } else {
                        format!("http://hl7.org/fhir/StructureDefinition/{code}")
                    }
                });
            snapshot_of(self.defs, &url, self.done, self.work)?;
            let snap = self.done.get(&url).ok_or_else(|| format!("no snapshot for {url}"))?;
            let root_id = snap.first().map(id_of).unwrap_or_default();
            let root_path = snap.first().and_then(|x| s(x, "path")).unwrap_or("").to_string();
            (snap[1..].to_vec(), root_id, root_path)
        };
        let mut copy = source;
        for c in copy.iter_mut() {
            if let Some(o) = c.as_object_mut()
                && !o.contains_key("id")
            {
                let id = id_of(&Value::Object(o.clone()));
                o.insert("id".into(), Value::String(id));
            }
            reroot(c, &from_id, &eid, &from_path, &epath);
        }
        self.elements.splice(idx + 1..idx + 1, copy);
        Ok(())
    }
}

const FIXED_PREFIXES: [&str; 2] = ["fixed", "pattern"];

/// The type a slice of a choice element is for, when its name is the element's name for a type
/// (`value[x]` sliced as `valueQuantity`: `Quantity`).
fn choice_type_slice<'a>(name: &str, slice: &'a str) -> Option<&'a str> {
    let stem = name.strip_suffix("[x]")?;
    let ty = slice.strip_prefix(stem)?;
    ty.starts_with(char::is_uppercase).then_some(ty)
}

/// Keeps only the type whose choice suffix is `suffix` (`Quantity`, `DateTime` for `dateTime`).
fn restrict_types(element: &mut Value, suffix: &str) {
    if let Some(Value::Array(types)) = element.get_mut("type") {
        types.retain(|ty| {
            s(ty, "code").is_some_and(|c| {
                let mut cs = c.chars();
                cs.next().map(|f| f.to_ascii_uppercase().to_string() + cs.as_str()).as_deref() == Some(suffix)
            })
        });
    }
}

fn merge(target: &mut Value, d: &Value) {
    let (Some(t), Some(d)) = (target.as_object_mut(), d.as_object()) else { return };
    for (k, v) in d {
        match k.as_str() {
            "id" | "path" => {}
            "constraint" => {
                let list = t.entry("constraint").or_insert_with(|| Value::Array(Vec::new()));
                if let (Value::Array(list), Value::Array(new)) = (list, v) {
                    for c in new {
                        let key = s(c, "key");
                        list.retain(|x| s(x, "key") != key);
                        list.push(c.clone());
                    }
                }
            }
            "slicing" => {
                let mut merged: Map<String, Value> =
                    t.get("slicing").and_then(Value::as_object).cloned().unwrap_or_default();
                if let Value::Object(new) = v {
                    for (a, b) in new {
                        merged.insert(a.clone(), b.clone());
                    }
                }
                t.insert("slicing".into(), Value::Object(merged));
            }
            "binding" => {
                let mut merged: Map<String, Value> =
                    t.get("binding").and_then(Value::as_object).cloned().unwrap_or_default();
                if let Value::Object(new) = v {
                    for (a, b) in new {
                        merged.insert(a.clone(), b.clone());
                    }
                }
                t.insert("binding".into(), Value::Object(merged));
            }
            _ => {
                if FIXED_PREFIXES.iter().any(|p| k.starts_with(p)) {
                    t.retain(|x, _| !FIXED_PREFIXES.iter().any(|p| x.starts_with(p)));
                }
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_respect_slices() {
        assert_eq!(id_segments("Observation.component:systolic.code"), ["Observation", "component:systolic", "code"]);
    }
}
