//! Slicing: which slice each item of a sliced element is in (discriminators), slice cardinality, closed,
//! ordered and open-at-end rules, and extensions checked against their definition by url.

use std::fmt::Write as _;

use rex_fhir::{BindingStrength, Issue, IssueCode, Rule, Severity};
use serde_json::Value;

use super::{Occurrence, Walk, is_example_url, json_contains, json_equal, push_step};
use crate::defs::field;
use crate::model::{CompiledStructure, DiscKind, Elem, Rules};
use crate::terminology::Membership;

impl<'v> Walk<'v> {
    /// Assigns items to slices and checks slice cardinality, closed and ordered rules. Extensions without
    /// a matching slice are checked against their definition by url.
    /// `holder_ty` is the type of the node whose children `items` are (where an extension is used).
    pub(super) fn slicing(
        &mut self,
        structure: &'v CompiledStructure,
        sliced: usize,
        items: &[Occurrence<'v>],
        base_len: usize,
        holder_ty: &str,
    ) -> Vec<Option<usize>> {
        let sliced_elem = &structure.elems[sliced];
        let mut out = vec![None; items.len()];
        for (ii, &Occurrence { value: m, ty: cty, .. }) in items.iter().enumerate() {
            let Some(m) = m else { continue };
            for &s in &sliced_elem.slices {
                if self.slice_matches(structure, sliced, s, m, cty) {
                    out[ii] = Some(s);
                    break;
                }
            }
        }
        let json_name = items[0].json_name;
        // slice cardinality
        for &s in &sliced_elem.slices {
            let slice_elem = &structure.elems[s];
            let n = out.iter().filter(|x| **x == Some(s)).count() as u32;
            if n < slice_elem.min {
                let _ = write!(self.path, ".{json_name}");
                self.missing_slice(sliced_elem, slice_elem, n);
                self.path.truncate(base_len);
            }
            if let Some(max) = slice_elem.max
                && n > max
            {
                let _ = write!(self.path, ".{json_name}");
                let name = slice_elem.slice_name.as_deref().unwrap_or("");
                let msg = format!("Slice '{}:{name}': max allowed = {max}, but found {n}", sliced_elem.path);
                self.report_rule(Severity::Error, IssueCode::Structure, msg, slice_rule(sliced_elem, slice_elem, n));
                self.path.truncate(base_len);
            }
        }
        if let Some(slicing) = &sliced_elem.slicing {
            let mut last = 0usize;
            let mut seen_unmatched = false;
            for (ii, item) in items.iter().enumerate() {
                let pos = out[ii].map(|s| sliced_elem.slices.iter().position(|x| *x == s).unwrap_or(0));
                let idx = item.index.unwrap_or(0);
                match pos {
                    None => {
                        seen_unmatched = true;
                        if slicing.rules == Rules::Closed && !(sliced_elem.name == "extension" && item.value.is_some())
                        {
                            let _ = write!(self.path, ".{json_name}[{idx}]");
                            self.report_rule(
                                Severity::Error,
                                IssueCode::Structure,
                                format!("This element does not match any known slice defined in the profile {} (slicing is closed)", structure.url),
                                Rule::ClosedSlicing { profile: structure.url.clone() },
                            );
                            self.path.truncate(base_len);
                        }
                    }
                    Some(p) => {
                        if slicing.ordered && p < last {
                            let _ = write!(self.path, ".{json_name}[{idx}]");
                            self.err(
                                IssueCode::Structure,
                                "As specified by profile, elements must be in the same order as the slices",
                            );
                            self.path.truncate(base_len);
                        }
                        if slicing.rules == Rules::OpenAtEnd && seen_unmatched {
                            let _ = write!(self.path, ".{json_name}[{idx}]");
                            self.err(
                                IssueCode::Structure,
                                "Unmatched elements must come after the sliced elements (openAtEnd)",
                            );
                            self.path.truncate(base_len);
                        }
                        last = p;
                    }
                }
            }
        }
        // Extensions without a slice: validate against their definition by url.
        if sliced_elem.name == "extension" || sliced_elem.name == "modifierExtension" {
            for (ii, &Occurrence { value: m, index: idx, .. }) in items.iter().enumerate() {
                let Some(m) = m else { continue };
                let slice_has_profile =
                    out[ii].is_some_and(|s| structure.elems[s].types.iter().any(|t| !t.profiles.is_empty()));
                push_step(&mut self.path, json_name, Some(idx.unwrap_or(0)));
                let url = field(m, "url").and_then(Value::as_str);
                match url {
                    None => self.err(
                        IssueCode::Structure,
                        "Extension.url is required in order to identify, use and validate the extension",
                    ),
                    Some(url) => match self.v.sd(crate::defs::canonical_base(url).as_str()) {
                        Some(ext) => {
                            let ext: &'v CompiledStructure = ext;
                            // the version of an extension is the one loaded, never one named in the url
                            if url.contains('|') {
                                self.err(IssueCode::Structure, "The extension URL must not contain a version");
                            }
                            if sliced_elem.name == "extension" {
                                self.extension_context(ext, &sliced_elem.path, holder_ty, base_len);
                            }
                            if !slice_has_profile {
                                self.complex(ext, 0, m, "Extension");
                            }
                            let rule = Rule::Extension { url: url.to_string() };
                            if sliced_elem.name == "modifierExtension" && !ext.is_modifier_ext {
                                self.report_rule(
                                    Severity::Error,
                                    IssueCode::Structure,
                                    format!("The extension '{url}' is not a modifier extension, but is used as one"),
                                    rule,
                                );
                            } else if sliced_elem.name == "extension" && ext.is_modifier_ext {
                                self.report_rule(Severity::Error, IssueCode::Structure, format!("The extension '{url}' is a modifier extension, and must be used as a modifierExtension"), rule);
                            }
                        }
                        None if out[ii].is_none() => {
                            let rule = Rule::Extension { url: url.to_string() };
                            if sliced_elem.name == "modifierExtension" {
                                self.report_rule(
                                    Severity::Error,
                                    IssueCode::Structure,
                                    format!("Unknown modifier extension '{url}': it cannot be safely ignored"),
                                    rule,
                                );
                            } else if !url.contains("://") && !url.starts_with("urn:") {
                                // relative urls name the parts of complex extensions
                            } else if self.v.options.unknown_extension_is_error
                                && (!is_example_url(url) || !self.v.options.allow_example_urls)
                            {
                                self.report_rule(
                                    Severity::Error,
                                    IssueCode::Structure,
                                    format!("The extension '{url}' is unknown, and not allowed here"),
                                    rule,
                                );
                            } else {
                                let msg = format!("The extension '{url}' is unknown");
                                self.report_rule(Severity::Warning, IssueCode::Structure, msg, rule);
                            }
                        }
                        None => {}
                    },
                }
                self.path.truncate(base_len);
            }
        }
        out
    }

    pub(super) fn slice_matches(
        &mut self,
        structure: &'v CompiledStructure,
        base: usize,
        slice: usize,
        item: &'v Value,
        item_ty: &str,
    ) -> bool {
        let sliced_elem = &structure.elems[base];
        let slice_elem = &structure.elems[slice];
        let discriminators: &[(DiscKind, String)] = match &sliced_elem.slicing {
            Some(s) if !s.discriminators.is_empty() => &s.discriminators,
            _ => {
                // Extension slicing without declared discriminator: by url.
                if sliced_elem.name == "extension" || sliced_elem.name == "modifierExtension" {
                    return slice_elem
                        .types
                        .iter()
                        .flat_map(|t| t.profiles.iter())
                        .any(|p| field(item, "url").and_then(Value::as_str) == Some(p));
                }
                return false;
            }
        };
        for (kind, path) in discriminators {
            let typed = select(item, path);
            let values: Vec<&Value> = typed.iter().map(|(v, _)| *v).collect();
            let def = self.nav(structure, slice, path);
            let ok = match kind {
                DiscKind::Value | DiscKind::Pattern => {
                    let expected = def.and_then(|(def_structure, def_index)| {
                        let d = &def_structure.elems[def_index];
                        d.fixed.as_ref().map(|f| (f, true)).or(d.pattern.as_ref().map(|p| (p, false)))
                    });
                    match expected {
                        Some((exp, fixed)) => {
                            values.iter().any(|v| if fixed { json_equal(v, exp) } else { json_contains(v, exp) })
                        }
                        None => {
                            if path == "url" || path.ends_with(".url") {
                                let urls: Vec<&String> =
                                    slice_elem.types.iter().flat_map(|t| t.profiles.iter()).collect();
                                !urls.is_empty()
                                    && values.iter().any(|v| urls.iter().any(|u| v.as_str() == Some(u.as_str())))
                            } else if let Some((def_structure, def_index)) = def {
                                match &def_structure.elems[def_index].binding {
                                    Some(b) if b.strength == BindingStrength::Required => values.iter().any(|v| {
                                        let code = v.as_str().or_else(|| v.get("code").and_then(Value::as_str));
                                        code.is_some_and(|code| {
                                            self.v.term.member(
                                                &b.value_set,
                                                v.get("system").and_then(Value::as_str),
                                                code,
                                            ) == Membership::In
                                        })
                                    }),
                                    // the slice does not constrain this discriminator
                                    _ => true,
                                }
                            } else {
                                false
                            }
                        }
                    }
                }
                DiscKind::Type => {
                    let (def_structure, def_index) = def.unwrap_or((structure, slice));
                    let types = &def_structure.elems[def_index].types;
                    if path == "$this" {
                        types.iter().any(|t| t.code == item_ty)
                            || item
                                .get("resourceType")
                                .and_then(Value::as_str)
                                .is_some_and(|rt| types.iter().any(|t| t.code == rt))
                    } else {
                        // The type of a value is its resourceType, or the type named by its choice suffix
                        // (`valueQuantity`); an element that is not polymorphic has the one type it declares.
                        typed.iter().any(|(v, suffix)| match (v.get("resourceType").and_then(Value::as_str), suffix) {
                            (Some(rt), _) => types.iter().any(|t| t.code == rt),
                            (None, Some(suffix)) => types.iter().any(|t| t.code == crate::fhirpath_type(suffix)),
                            (None, None) => types.len() == 1,
                        })
                    }
                }
                DiscKind::Profile => {
                    let (def_structure, def_index) = def.unwrap_or((structure, slice));
                    let profiles: Vec<&str> = def_structure.elems[def_index]
                        .types
                        .iter()
                        .flat_map(|t| t.profiles.iter().chain(t.target_profiles.iter()).map(String::as_str))
                        .collect();
                    values.iter().any(|v| {
                        profiles.iter().any(|p| match self.v.sd(p) {
                            Some(psd) => {
                                let mut sub = Walk::new(self.v);
                                sub.unknown_claims = self.unknown_claims;
                                sub.path = "x".into();
                                sub.resources = self.resources.clone();
                                sub.contained = self.contained.clone();
                                sub.in_target_check = self.in_target_check;
                                if v.get("resourceType").is_some() {
                                    sub.resource(v, &[p]);
                                } else {
                                    sub.complex(psd, 0, v, item_ty_of(psd));
                                }
                                !sub.issues.iter().any(Issue::is_error)
                            }
                            None => false,
                        })
                    })
                }
                DiscKind::Exists => {
                    let (def_structure, def_index) = def.unwrap_or((structure, slice));
                    let d = &def_structure.elems[def_index];
                    if d.max == Some(0) {
                        values.is_empty()
                    } else if d.min > 0 {
                        !values.is_empty()
                    } else {
                        true
                    }
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Element definition at a discriminator path below element `ei`.
    pub(super) fn nav(
        &self,
        structure: &'v CompiledStructure,
        elem_index: usize,
        path: &str,
    ) -> Option<(&'v CompiledStructure, usize)> {
        let mut cur = (structure, elem_index);
        for seg in split_path(path) {
            if seg == "$this" || seg.starts_with("ofType(") || seg == "resolve()" {
                continue;
            }
            if let Some(url) = seg.strip_prefix("extension('").and_then(|s| s.strip_suffix("')")) {
                let (step_structure, e) = cur;
                let ext = step_structure.elems[e]
                    .children
                    .iter()
                    .copied()
                    .find(|&k| step_structure.elems[k].name == "extension")?;
                let slice = step_structure.elems[ext]
                    .slices
                    .iter()
                    .copied()
                    .find(|&s| step_structure.elems[s].types.iter().any(|t| t.profiles.iter().any(|p| p == url)));
                cur = match slice {
                    Some(s) => (step_structure, s),
                    None => {
                        let extension_structure = self.v.sd(url)?;
                        (extension_structure, 0)
                    }
                };
                continue;
            }
            let (step_structure, e) = cur;
            let el = &step_structure.elems[e];
            let found = el.children.iter().copied().find(|&k| step_structure.elems[k].name == seg);
            cur = match found {
                Some(k) => (step_structure, k),
                None => {
                    // descend into the type's own definition (profile first)
                    let t = el.types.first()?;
                    let type_structure: &'v CompiledStructure =
                        match t.profiles.first().and_then(|p| self.v.sd(p.as_str())) {
                            Some(p) => p,
                            None => self.v.core_type(&t.code)?,
                        };
                    let k = type_structure.elems[0]
                        .children
                        .iter()
                        .copied()
                        .find(|&k| type_structure.elems[k].name == seg)?;
                    (type_structure, k)
                }
            };
        }
        Some(cur)
    }

    /// A slice with fewer than its minimum of items.
    pub(super) fn missing_slice(&mut self, sliced: &Elem, slice: &Elem, found: u32) {
        let msg = format!(
            "Slice '{}:{}': a matching slice is required, but not found (minimum required = {}, found {found})",
            sliced.path,
            slice.slice_name.as_deref().unwrap_or(""),
            slice.min
        );
        self.report_rule(Severity::Error, IssueCode::Required, msg, slice_rule(sliced, slice, found));
    }
}

pub(super) fn slice_rule(sliced: &Elem, slice: &Elem, found: u32) -> Rule {
    Rule::Slice {
        element: sliced.path.clone(),
        name: slice.slice_name.clone().unwrap_or_default(),
        min: slice.min,
        max: slice.max,
        found: found as usize,
    }
}

pub(super) fn item_ty_of(sd: &CompiledStructure) -> &str {
    sd.type_name.as_str()
}

pub(super) fn split_path(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in path.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '.' if depth == 0 => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out
}

/// Values at a discriminator path (simple dotted names, `extension('url')`, `$this`, `ofType()`), each with
/// the choice-type suffix of its JSON name when the last step matched a choice element (`valueQuantity`).
pub(super) fn select<'a>(item: &'a Value, path: &str) -> Vec<(&'a Value, Option<&'a str>)> {
    let mut cur: Vec<(&Value, Option<&str>)> = vec![(item, None)];
    for seg in split_path(path) {
        if seg == "$this" || seg.starts_with("ofType(") {
            continue;
        }
        if seg == "resolve()" {
            return Vec::new();
        }
        let mut next = Vec::new();
        if let Some(url) = seg.strip_prefix("extension('").and_then(|s| s.strip_suffix("')")) {
            for (v, _) in &cur {
                for e in v.get("extension").and_then(Value::as_array).into_iter().flatten() {
                    if field(e, "url").and_then(Value::as_str) == Some(url) {
                        next.push((e, None));
                    }
                }
            }
        } else {
            for (v, _) in &cur {
                let Some(o) = v.as_object() else { continue };
                let found = crate::defs::member(o, seg).map(|x| (x, None)).or_else(|| {
                    o.iter()
                        .find(|(k, _)| {
                            k.len() > seg.len()
                                && k.starts_with(seg)
                                && k[seg.len()..].starts_with(|c: char| c.is_ascii_uppercase())
                        })
                        .map(|(k, x)| (x, Some(&k[seg.len()..])))
                });
                match found {
                    Some((Value::Array(a), suffix)) => next.extend(a.iter().map(|x| (x, suffix))),
                    Some(x) => next.push(x),
                    None => {}
                }
            }
        }
        cur = next;
    }
    cur
}
