//! Local terminology: ValueSet expansion from local CodeSystems (concept lists, `is-a`/`descendent-of`/`=`
//! filters, nested value sets), cached per value set.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};

use serde_json::Value;

use crate::defs::{Entry, canonical_base, s};
use crate::{FxMap, FxSet};

/// Systems rex cannot check without a terminology server.
pub(crate) fn is_external_system(system: &str) -> bool {
    matches!(
        system,
        "http://snomed.info/sct"
            | "http://loinc.org"
            | "http://hl7.org/fhir/sid/icd-10"
            | "http://hl7.org/fhir/sid/icd-10-cm"
            | "http://www.nlm.nih.gov/research/umls/rxnorm"
            | "http://unitsofmeasure.org"
            | "urn:ietf:bcp:47"
            | "urn:ietf:bcp:13"
            | "urn:iso:std:iso:3166"
            | "http://hl7.org/fhir/sid/ndc"
            | "http://hl7.org/fhir/sid/cvx"
            | "http://www.ama-assn.org/go/cpt"
    ) || system.starts_with("urn:oid:")
}

/// Whether `tag` has the shape of a BCP-47 language tag: a 2-3 letter language (or 4-8 for
/// registered ones) followed by `-`-separated subtags of 1-8 letters or digits.
pub(crate) fn is_bcp47_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or_default();
    (2..=8).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[derive(Debug, Default)]
pub(crate) struct Expansion {
    /// system -> codes
    pub codes: FxMap<String, FxSet<String>>,
    /// every code, whatever its system
    pub all: FxSet<String>,
    /// Systems included in full or by filters that rex cannot evaluate.
    pub open_systems: HashSet<String>,
    pub unknown: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Membership {
    In,
    NotIn,
    /// Cannot be decided locally (external system or unknown value set); the string names why.
    Unknown(String),
}

struct CodeSystem {
    complete: bool,
    case_sensitive: bool,
    /// code -> (display, parent codes)
    concepts: FxMap<String, (Option<String>, Vec<String>)>,
}

pub(crate) struct Terminology {
    /// Read when a value set is first expanded (expansions are cached).
    value_sets: FxMap<String, Entry>,
    /// Compiled when first used: the core package has 1,062 code systems, a referral uses a few.
    code_systems: FxMap<String, (Entry, OnceLock<CodeSystem>)>,
    cache: RwLock<FxMap<String, Arc<Expansion>>>,
}

impl CodeSystem {
    fn new(cs: &Value) -> CodeSystem {
        let mut concepts = FxMap::default();
        fn walk(list: &Value, parent: Option<&str>, out: &mut FxMap<String, (Option<String>, Vec<String>)>) {
            for c in list.as_array().into_iter().flatten() {
                let Some(code) = s(c, "code") else { continue };
                let entry =
                    out.entry(code.to_string()).or_insert_with(|| (s(c, "display").map(str::to_string), Vec::new()));
                if let Some(p) = parent {
                    entry.1.push(p.to_string());
                }
                for p in c.get("property").and_then(Value::as_array).into_iter().flatten() {
                    if (s(p, "code") == Some("subsumedBy") || s(p, "code") == Some("parent"))
                        && let Some(pc) = s(p, "valueCode")
                    {
                        entry.1.push(pc.to_string());
                    }
                }
                if let Some(sub) = c.get("concept") {
                    walk(sub, Some(code), out);
                }
            }
        }
        if let Some(list) = cs.get("concept") {
            walk(list, None, &mut concepts);
        }
        CodeSystem {
            complete: s(cs, "content").unwrap_or("complete") == "complete",
            case_sensitive: cs.get("caseSensitive").and_then(Value::as_bool).unwrap_or(true),
            concepts,
        }
    }
}

impl Expansion {
    fn add(&mut self, system: &str, code: &str) {
        self.codes.entry(system.to_string()).or_default().insert(code.to_string());
        self.all.insert(code.to_string());
    }
    fn has(&self, system: &str, code: &str) -> bool {
        self.codes.get(system).is_some_and(|c| c.contains(code))
    }
    fn merge(&mut self, other: Expansion) {
        for (sys, codes) in other.codes {
            self.codes.entry(sys).or_default().extend(codes);
        }
        self.all.extend(other.all);
        self.open_systems.extend(other.open_systems);
        self.unknown |= other.unknown;
    }
}

impl Terminology {
    pub(crate) fn new(value_sets: HashMap<String, Entry>, code_systems: HashMap<String, Entry>) -> Terminology {
        let code_systems = code_systems.into_iter().map(|(url, cs)| (url, (cs, OnceLock::new()))).collect();
        let value_sets = value_sets.into_iter().collect();
        Terminology { value_sets, code_systems, cache: RwLock::default() }
    }

    fn code_system(&self, url: &str) -> Option<&CodeSystem> {
        let (entry, compiled) = self.code_systems.get(url)?;
        Some(compiled.get_or_init(|| CodeSystem::new(&entry.parse())))
    }

    pub(crate) fn has_value_set(&self, url: &str) -> bool {
        self.value_sets.contains_key(url)
    }

    /// Display of a code in a local code system, and whether the system is known and complete.
    pub(crate) fn lookup(&self, system: &str, code: &str) -> Option<Option<&str>> {
        let cs = self.code_system(system)?;
        if !cs.complete {
            return None;
        }
        match cs.concepts.get(code) {
            Some((d, _)) => Some(Some(d.as_deref().unwrap_or(""))),
            None => {
                if !cs.case_sensitive && cs.concepts.keys().any(|k| k.eq_ignore_ascii_case(code)) {
                    return Some(Some(""));
                }
                Some(None)
            }
        }
    }

    pub(crate) fn expansion(&self, url: &str) -> Arc<Expansion> {
        if let Some(e) = self.cache.read().ok().and_then(|c| c.get(url).cloned()) {
            return e;
        }
        let mut guard = HashSet::new();
        let e = Arc::new(self.expand(url, &mut guard));
        if let Ok(mut c) = self.cache.write() {
            c.insert(url.to_string(), e.clone());
        }
        e
    }

    fn expand(&self, url: &str, guard: &mut HashSet<String>) -> Expansion {
        let mut out = Expansion::default();
        if !guard.insert(url.to_string()) {
            return out;
        }
        let Some(vs) = self.value_sets.get(url).map(Entry::parse) else {
            out.unknown = true;
            return out;
        };
        if let Some(contains) = vs.get("expansion").and_then(|e| e.get("contains")) {
            fn walk(list: &Value, out: &mut Expansion) {
                for c in list.as_array().into_iter().flatten() {
                    if let (Some(sys), Some(code)) = (s(c, "system"), s(c, "code")) {
                        out.add(sys, code);
                    }
                    if let Some(sub) = c.get("contains") {
                        walk(sub, out);
                    }
                }
            }
            walk(contains, &mut out);
            return out;
        }
        let Some(compose) = vs.get("compose") else {
            out.unknown = true;
            return out;
        };
        for inc in compose.get("include").and_then(Value::as_array).into_iter().flatten() {
            let part = self.include(inc, guard);
            out.merge(part);
        }
        for exc in compose.get("exclude").and_then(Value::as_array).into_iter().flatten() {
            let part = self.include(exc, guard);
            for (sys, codes) in &part.codes {
                if let Some(set) = out.codes.get_mut(sys) {
                    for c in codes {
                        set.remove(c);
                        out.all.remove(c);
                    }
                }
            }
        }
        out
    }

    fn include(&self, inc: &Value, guard: &mut HashSet<String>) -> Expansion {
        let mut out = Expansion::default();
        let system = s(inc, "system").map(canonical_base);
        let nested: Vec<String> = inc
            .get("valueSet")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(canonical_base).collect())
            .unwrap_or_default();
        if let Some(sys) = &system {
            let cs = self.code_system(sys);
            if let Some(concepts) = inc.get("concept").and_then(Value::as_array) {
                for c in concepts {
                    if let Some(code) = s(c, "code") {
                        out.add(sys, code);
                    }
                }
            } else if let Some(filters) = inc.get("filter").and_then(Value::as_array) {
                match cs.filter(|cs| cs.complete) {
                    None => {
                        out.open_systems.insert(sys.clone());
                    }
                    Some(cs) => {
                        let mut set: Option<FxSet<String>> = None;
                        for f in filters {
                            let (prop, op, value) =
                                (s(f, "property").unwrap_or(""), s(f, "op").unwrap_or(""), s(f, "value").unwrap_or(""));
                            let matched: FxSet<String> = match (prop, op) {
                                ("concept", "is-a") | ("concept", "descendent-of") => {
                                    let mut m: FxSet<String> =
                                        cs.concepts.keys().filter(|c| is_descendant(cs, c, value)).cloned().collect();
                                    if op == "is-a" && cs.concepts.contains_key(value) {
                                        m.insert(value.to_string());
                                    } else {
                                        m.remove(value);
                                    }
                                    m
                                }
                                ("concept", "is-not-a") => cs
                                    .concepts
                                    .keys()
                                    .filter(|c| *c != value && !is_descendant(cs, c, value))
                                    .cloned()
                                    .collect(),
                                ("concept", "in") => value.split(',').map(|x| x.trim().to_string()).collect(),
                                _ => {
                                    out.open_systems.insert(sys.clone());
                                    return out;
                                }
                            };
                            set = Some(match set {
                                None => matched,
                                Some(prev) => prev.intersection(&matched).cloned().collect(),
                            });
                        }
                        for c in set.unwrap_or_default() {
                            out.add(sys, &c);
                        }
                    }
                }
            } else {
                match cs.filter(|cs| cs.complete) {
                    Some(cs) => {
                        for c in cs.concepts.keys() {
                            out.add(sys, c);
                        }
                    }
                    None => {
                        out.open_systems.insert(sys.clone());
                    }
                }
            }
        }
        for vs in nested {
            let part = self.expand(&vs, guard);
            out.merge(part);
        }
        out
    }

    /// Whether `(system, code)` is in the value set. A missing system matches any system of the expansion.
    pub(crate) fn member(&self, vs_url: &str, system: Option<&str>, code: &str) -> Membership {
        let exp = self.expansion(vs_url);
        if exp.unknown && exp.codes.is_empty() && exp.open_systems.is_empty() {
            return Membership::Unknown(format!("value set {vs_url} is not known"));
        }
        match system {
            Some(sys) => {
                if exp.has(sys, code) {
                    return Membership::In;
                }
                if exp.open_systems.contains(sys) {
                    if let Some(cs) = self.code_system(sys).filter(|c| c.complete)
                        && !cs.concepts.contains_key(code)
                    {
                        return Membership::NotIn;
                    }
                    return Membership::Unknown(sys.to_string());
                }
                if exp.unknown {
                    return Membership::Unknown(vs_url.to_string());
                }
                Membership::NotIn
            }
            None => {
                if exp.all.contains(code) {
                    return Membership::In;
                }
                if let Some(sys) = exp.open_systems.iter().next() {
                    return Membership::Unknown(sys.clone());
                }
                if exp.unknown {
                    return Membership::Unknown(vs_url.to_string());
                }
                Membership::NotIn
            }
        }
    }
}

fn is_descendant(cs: &CodeSystem, code: &str, ancestor: &str) -> bool {
    let mut stack: Vec<&str> = vec![code];
    let mut seen = HashSet::new();
    while let Some(c) = stack.pop() {
        if !seen.insert(c) {
            continue;
        }
        if let Some((_, parents)) = cs.concepts.get(c) {
            for p in parents {
                if p == ancestor {
                    return true;
                }
                stack.push(p);
            }
        }
    }
    false
}

#[cfg(test)]
mod bcp47_tests {
    #[test]
    fn language_tag_shapes() {
        for good in ["en", "pt-BR", "zh-Hant-HK", "yue", "es-419", "fil"] {
            assert!(super::is_bcp47_tag(good), "{good}");
        }
        for bad in ["pt_BR", "", "e", "english language", "en--US", "123"] {
            assert!(!super::is_bcp47_tag(bad), "{bad}");
        }
    }
}
