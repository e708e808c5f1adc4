//! Definitions as content, checked the way the HL7 validator and its snapshot generator check them: a
//! StructureDefinition's differential against its base (paths, their order, slicing, bindings, fixed values),
//! and an OperationDefinition's parameters against its input and output profiles.

use std::fmt::Write as _;

use rex_fhir::{IssueCode, Rule, Severity};
use serde_json::Value;

use crate::defs::{canonical_base, s};
use crate::model::CompiledStructure;
use crate::validate::{Walk, json_equal};

/// Types a binding can apply to.
const CODED: &[&str] =
    &["code", "Coding", "CodeableConcept", "CodeableReference", "Quantity", "string", "uri", "canonical"];

impl<'v> Walk<'v> {
    /// A profile's differential against its base. Problems that stop the HL7 snapshot generator are reported
    /// as "Error generating snapshot" (once, as it stops), besides the rules of the profile itself.
    pub(crate) fn structure_definition(&mut self, sd: &'v Value) {
        if s(sd, "derivation") != Some("constraint") {
            return;
        }
        let Some(base) = s(sd, "baseDefinition").and_then(|b| self.v.sd(&canonical_base(b))) else { return };
        let base: &'v CompiledStructure = base;
        let Some(diff) = sd.pointer("/differential/element").and_then(Value::as_array) else { return };
        let base_len = self.path.len();
        let mut last = 0;
        let mut unmatched = Vec::new();
        // The discriminators of each sliced element of the differential, by id.
        let mut slicings: Vec<(&str, Vec<String>)> = Vec::new();
        for (i, d) in diff.iter().enumerate() {
            let path = s(d, "path").unwrap_or("");
            let _ = write!(self.path, ".differential.element[{i}]");
            // Both a rule of profiles and a reason the snapshot cannot be generated.
            if !path.contains('.') && d.get("slicing").is_some() {
                self.err(IssueCode::Invalid, "Slicing is not allowed at the root of a profile");
                self.path.truncate(base_len);
                self.err(
                    IssueCode::Invalid,
                    format!(
                        "Error generating snapshot: the profile has slicing at the root ('{path}'), which is illegal"
                    ),
                );
                return;
            }
            let (esd, ei, top) = match self.locate(base, path) {
                Ok(found) => found,
                Err(why) => {
                    // The snapshot generator stops at the first element it cannot place.
                    self.path.truncate(base_len);
                    self.err(IssueCode::Invalid, format!("Error generating snapshot: {why}"));
                    return;
                }
            };
            // The differential follows the order of the base; an element out of order matches nothing.
            if top < last {
                self.err(
                    IssueCode::Invalid,
                    format!("No match found for {path} in the generated snapshot: check that the path and definitions are legal in the differential (including order)"),
                );
                unmatched.push(s(d, "id").unwrap_or(path));
            } else {
                last = top;
            }
            if let Some(slicing) = d.get("slicing") {
                self.slicing_rules(base, d, path, slicing, &mut slicings);
            }
            let elem = &esd.elems[ei];
            let types: Vec<&str> = match d.get("type").and_then(Value::as_array) {
                Some(ts) => ts.iter().filter_map(|t| s(t, "code")).collect(),
                None => elem.types.iter().map(|t| t.code.as_str()).collect(),
            };
            if d.get("binding").is_some() && !types.is_empty() && !types.iter().any(|t| CODED.contains(t)) {
                self.err(
                    IssueCode::Invalid,
                    format!(
                        "This element has a Binding but the types [{}] do not make this kind of constraint relevant",
                        types.join(", ")
                    ),
                );
            }
            let fixed = d.as_object().into_iter().flatten().find(|(k, _)| k.starts_with("fixed")).map(|(_, v)| v);
            if let (Some(value), Some(base_value)) = (fixed, &elem.fixed)
                && !json_equal(value, base_value)
            {
                self.report_rule(
                    Severity::Error,
                    IssueCode::Invalid,
                    format!("Value is '{value}' but is fixed to '{base_value}' in the base profile {}", base.url),
                    Rule::Profile { url: base.url.clone() },
                );
            }
            self.path.truncate(base_len);
        }
        if !unmatched.is_empty() {
            self.err(
                IssueCode::Invalid,
                format!(
                    "The profile has {} element(s) in the differential ({}) that don't have a matching element in the snapshot",
                    unmatched.len(),
                    unmatched.join(", ")
                ),
            );
        }
    }

    /// The parameters an OperationDefinition lists for `in` and `out` agree with the slices of `parameter` in its
    /// `inputProfile` and `outputProfile` (Parameters profiles): cardinality, types and target profiles.
    pub(crate) fn operation_definition(&mut self, od: &'v Value) {
        let params = od.get("parameter").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        // opd-3 as corrected in R5: a parameter that is a resource may name target profiles too.
        let base_len = self.path.len();
        for (i, p) in params.iter().enumerate() {
            let ty = s(p, "type").unwrap_or("");
            if p.get("targetProfile").is_some()
                && !matches!(ty, "Reference" | "canonical")
                && !self.v.is_resource_type(ty)
            {
                let _ = write!(self.path, ".parameter[{i}]");
                let human =
                    "A targetProfile can only be specified for parameters of type Reference, Canonical, or a Resource";
                let rule = Rule::Constraint { key: "opd-3".into(), human: human.into() };
                self.report_rule(
                    Severity::Error,
                    IssueCode::Invariant,
                    format!("Constraint failed: opd-3: '{human}'"),
                    rule,
                );
                self.path.truncate(base_len);
            }
        }
        for (use_, key) in [("in", "inputProfile"), ("out", "outputProfile")] {
            let Some(profile) = s(od, key).and_then(|p| self.v.sd(&canonical_base(p))) else { continue };
            let profile: &'v CompiledStructure = profile;
            let Some(&sliced) = profile.by_path.get("Parameters.parameter") else { continue };
            for &slice in &profile.elems[sliced].slices {
                let child = |name: &str| {
                    profile.elems[slice]
                        .children
                        .iter()
                        .map(|&k| &profile.elems[k])
                        .find(|e| e.name == name && e.max != Some(0))
                };
                let Some(name) = child("name").and_then(|e| e.fixed.as_ref()).and_then(Value::as_str) else { continue };
                let Some((i, param)) =
                    params.iter().enumerate().find(|(_, p)| s(p, "use") == Some(use_) && s(p, "name") == Some(name))
                else {
                    continue;
                };
                let _ = write!(self.path, ".{key}.parameter[{i}]");
                let elem = &profile.elems[slice];
                let min = param.get("min").and_then(Value::as_u64).unwrap_or(0);
                let max = s(param, "max").unwrap_or("*");
                let profile_max = elem.max.map_or("*".to_string(), |m| m.to_string());
                for (what, in_profile, in_od) in
                    [("min", elem.min.to_string(), min.to_string()), ("max", profile_max, max.to_string())]
                {
                    if in_profile != in_od {
                        self.err(
                            IssueCode::BusinessRule,
                            format!("The parameter '{name}' has a value for '{what}' of '{in_profile}' in the '{use_}' profile that is different to '{in_od}' which is the value in the parameter definition in the operation definition"),
                        );
                    }
                }
                let typed: Vec<&crate::model::TypeRef> =
                    ["resource", "value"].into_iter().filter_map(child).flat_map(|e| e.types.iter()).collect();
                let types: Vec<&str> = typed.iter().map(|t| t.code.as_str()).collect();
                let od_types: Vec<&str> = s(param, "type").into_iter().collect();
                for t in types.iter().filter(|t| !od_types.contains(t)) {
                    self.err(
                        IssueCode::BusinessRule,
                        format!("The type '{t}' is allowed for the parameter '{name}' in the '{use_}' profile but is not in the list of allowed types for the parameter in the operation definition: {}", od_types.join(", ")),
                    );
                }
                for t in od_types.iter().filter(|t| !types.is_empty() && !types.contains(t)) {
                    self.err(
                        IssueCode::BusinessRule,
                        format!("The type '{t}' is not allowed for the parameter '{name}' in the '{use_}' profile but is in the list of allowed types for the parameter in the operation definition (allowed types = {})", types.join(", ")),
                    );
                }
                let targets: Vec<&str> =
                    typed.iter().flat_map(|t| t.target_profiles.iter().map(String::as_str)).collect();
                let od_targets: Vec<&str> = param
                    .get("targetProfile")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for t in targets.iter().filter(|t| !od_targets.contains(t)) {
                    self.report_rule(
                        Severity::Error,
                        IssueCode::BusinessRule,
                        format!("The target profile '{t}' is allowed for the parameter '{name}' in the '{use_}' profile but is not in the list of target profiles for the parameter in the operation definition"),
                        Rule::Profile { url: t.to_string() },
                    );
                }
                for t in od_targets.iter().filter(|t| !targets.contains(t)) {
                    self.report_rule(
                        Severity::Error,
                        IssueCode::BusinessRule,
                        format!("The target profile '{t}' is not allowed for the parameter '{name}' in the '{use_}' profile but is in the list of target profiles for the parameter in the operation definition"),
                        Rule::Profile { url: t.to_string() },
                    );
                }
                self.path.truncate(base_len);
            }
        }
    }

    /// A slice may not change the slicing of the element it slices, and a discriminator must name an element
    /// of the sliced element.
    fn slicing_rules(
        &mut self,
        base: &'v CompiledStructure,
        d: &'v Value,
        path: &'v str,
        slicing: &Value,
        slicings: &mut Vec<(&'v str, Vec<String>)>,
    ) {
        let discriminators: Vec<(&str, &str)> = slicing
            .get("discriminator")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|x| (s(x, "type").unwrap_or(""), s(x, "path").unwrap_or("")))
            .collect();
        let summary: Vec<String> = discriminators.iter().map(|(t, p)| format!("{t}={p}")).collect();
        let id = s(d, "id").unwrap_or(path);
        if s(d, "sliceName").is_some()
            && let Some((sliced, _)) = id.rsplit_once(':')
            && let Some((_, before)) = slicings.iter().find(|(other, _)| *other == sliced)
            && *before != summary
        {
            self.err(
                IssueCode::Invalid,
                format!(
                    "The element at {sliced} defines the slicing [{}] but then the slice {id} tries to redefine the slicing to [{}]",
                    before.join(", "),
                    summary.join(", ")
                ),
            );
        }
        slicings.push((id, summary));
        // Plain element names only: `$this`, `ofType()`, `extension()` and `resolve()` are not checked here.
        for (_, disc) in discriminators {
            let plain = disc.split('.').all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric()));
            if plain && self.locate(base, &format!("{path}.{disc}")).is_err() {
                let _ = write!(self.path, ".slicing.discriminator");
                self.err(
                    IssueCode::Invalid,
                    format!("The discriminator path '{disc}' does not appear to be valid for the element that is being sliced '{path}'"),
                );
                let len = self.path.len() - ".slicing.discriminator".len();
                self.path.truncate(len);
            }
        }
    }

    /// The element of `base` a differential path names, descending into datatypes and content references:
    /// its structure, its index there, and the index in `base` of its first-level ancestor (for the order).
    fn locate(&self, base: &'v CompiledStructure, path: &str) -> Result<(&'v CompiledStructure, usize, usize), String> {
        let segs: Vec<&str> = path.split('.').collect();
        if segs.iter().any(|seg| seg.is_empty()) {
            return Err(format!("invalid path '{path}' in the differential: name portion missing ('..')"));
        }
        if segs[0] != base.elems[0].path {
            return Err(format!("the path '{path}' is not in the type {}", base.elems[0].path));
        }
        let (mut sd, mut ei, mut top) = (base, 0, 0);
        // The type a choice element was named for (`valueIdentifier`): its children are that type's.
        let mut chosen: Option<&str> = None;
        for (depth, &seg) in segs[1..].iter().enumerate() {
            let elem = &sd.elems[ei];
            let (csd, parent) = if !elem.children.is_empty() {
                (sd, ei)
            } else if let Some(cr) = &elem.content_ref {
                self.content_ref(sd, cr).ok_or_else(|| format!("the content reference of {} is unknown", elem.path))?
            } else {
                let code = chosen.or(elem.types.first().map(|t| t.code.as_str())).unwrap_or("");
                (self.v.core_type(code).ok_or_else(|| format!("no match found for {path}"))?, 0)
            };
            chosen = None;
            let kids = &csd.elems[parent].children;
            let named = kids.iter().copied().find(|&k| {
                let e = &csd.elems[k];
                e.slice_name.is_none()
                    && if e.choice { seg.strip_suffix("[x]") == Some(e.name.as_str()) } else { e.name == seg }
            });
            let k = match named {
                Some(k) => k,
                None => {
                    // a choice element named for one of its types (`valueQuantity`)
                    let choice = kids.iter().copied().find(|&k| {
                        let e = &csd.elems[k];
                        e.choice && seg.len() > e.name.len() && seg.starts_with(e.name.as_str())
                    });
                    match choice {
                        Some(k) if let Some(t) = csd.elems[k].type_for_suffix(&seg[csd.elems[k].name.len()..]) => {
                            chosen = Some(t.code.as_str());
                            k
                        }
                        Some(k) => {
                            return Err(format!(
                                "the path must be '{}' not '{path}' when the type list is not constrained",
                                csd.elems[k].path
                            ));
                        }
                        None => return Err(format!("no match found for {path}")),
                    }
                }
            };
            if depth == 0 {
                top = k;
            }
            (sd, ei) = (csd, k);
        }
        Ok((sd, ei, top))
    }
}
