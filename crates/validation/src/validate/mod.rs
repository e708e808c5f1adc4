//! The validation walk: JSON instance x compiled element tree.
//!
//! This module walks a resource: its profiles (`resource`), each node against its element (`element`) and the
//! children of a complex node with their cardinality (`complex`). The rule families have a file each:
//! `slicing` (slices, discriminators, closed and ordered slicing, extensions by url), `extensions` (where an
//! extension may be used), `values` (fixed, pattern, maxLength, min/max), `bindings` (terminology),
//! `references`, `constraints` (FHIRPath invariants and their native versions) and `bundle` (Bundle rules).

use std::collections::HashSet;
use std::fmt::Write as _;

use rex_fhir::{Issue, IssueCode, Rule, Severity};
use serde_json::Value;

use crate::model::{CompiledStructure, Elem, Kind};
use crate::primitives;
use crate::{UnknownProfiles, Validator};

mod bindings;
mod bundle;
mod constraints;
mod extensions;
mod references;
mod slicing;
mod values;

pub(crate) struct Walk<'v> {
    pub v: &'v Validator,
    pub issues: Vec<Issue>,
    pub path: String,
    /// Resource stack for `%resource`; the first is `%rootResource`.
    pub resources: Vec<&'v Value>,
    pub reported_systems: HashSet<String>,
    /// Depth guard against pathological nesting.
    pub depth: usize,
    /// Length of `path` where each resource of `resources` starts, to name elements from their resource.
    pub resource_starts: Vec<usize>,
    /// Whether each resource of `resources` is a contained resource (its `%rootResource` is its container).
    pub contained: Vec<bool>,
    /// This walk checks a reference's target against a `targetProfile`: the target's own references are not
    /// followed again (references may form cycles).
    pub in_target_check: bool,
    /// For each reference met: how many entries of `resources[0]` (a Bundle) it names, and the resource of
    /// `resources[0]` it resolves to. Both scan the entries, and a Bundle's entries are walked once per
    /// definition and profile, each time meeting the same references.
    ref_targets: crate::FxMap<&'v str, (usize, Option<&'v Value>)>,
    /// The (resource, structure) pairs validated so far, in a walk that may skip validating one again: a
    /// Bundle's entries are reached once per definition of the Bundle (its base and each profile), and another
    /// pass would only repeat the issues of the first, which `Validator::validate` drops. `None` in the walks
    /// that count errors.
    pub validated: Option<crate::FxSet<(*const Value, *const CompiledStructure)>>,
    /// What a `meta.profile` the validator does not know does to the resource.
    pub unknown_claims: UnknownProfiles,
}

/// One occurrence of a child element in the JSON: its value and its companion (`_name`, holding the id and
/// extensions of a primitive), either of which may be missing, with the type it has, the JSON property
/// name and its index when the property is an array.
#[derive(Clone, Copy)]
struct Occurrence<'a> {
    value: Option<&'a Value>,
    companion: Option<&'a Value>,
    ty: &'a str,
    json_name: &'a str,
    index: Option<usize>,
}

fn issue(sev: Severity, code: IssueCode, msg: String, path: &str) -> Issue {
    Issue::new(sev, code, msg).at(path)
}

fn cap_first(code: &str) -> String {
    let mut c = code.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

impl<'v> Walk<'v> {
    pub(crate) fn new(v: &'v Validator) -> Walk<'v> {
        Walk {
            v,
            issues: Vec::new(),
            path: String::new(),
            resources: Vec::new(),
            reported_systems: HashSet::new(),
            depth: 0,
            resource_starts: Vec::new(),
            contained: Vec::new(),
            in_target_check: false,
            ref_targets: crate::FxMap::default(),
            validated: None,
            unknown_claims: v.options.unknown_claims(),
        }
    }

    pub(crate) fn err(&mut self, code: IssueCode, msg: impl Into<String>) {
        self.issues.push(issue(Severity::Error, code, msg.into(), &self.path));
    }

    fn warn(&mut self, code: IssueCode, msg: impl Into<String>) {
        self.issues.push(issue(Severity::Warning, code, msg.into(), &self.path));
    }

    fn info(&mut self, code: IssueCode, msg: impl Into<String>) {
        self.issues.push(issue(Severity::Information, code, msg.into(), &self.path));
    }

    /// Reports an issue at the current path with the rule it reports.
    pub(crate) fn report_rule(&mut self, severity: Severity, code: IssueCode, msg: impl Into<String>, rule: Rule) {
        self.issues.push(issue(severity, code, msg.into(), &self.path).rule(rule));
    }

    /// Validates a resource (at the current path) against its base definition, its meta.profile entries and
    /// `extra` profiles.
    pub(crate) fn resource(&mut self, res: &'v Value, extra: &[&str]) {
        let Some(rt) = res.get("resourceType").and_then(Value::as_str) else {
            self.err(IssueCode::Structure, "Unable to find resourceType property: this is not a FHIR resource");
            return;
        };
        let Some(base) = self.v.core_type(rt).filter(|sd| sd.kind == Kind::Resource) else {
            self.err(IssueCode::Structure, format!("Unknown resource type '{rt}'"));
            return;
        };
        if self.depth > 30 {
            self.err(IssueCode::Structure, "Resources are nested too deeply");
            return;
        }
        self.depth += 1;
        self.resources.push(res);
        self.resource_starts.push(self.path.len());
        let last_step = self.path.rfind('.').map_or("", |d| &self.path[d..]);
        self.contained.push(last_step.starts_with(".contained["));
        let base_first = self.first_visit(res, base);
        if base_first {
            self.complex(base, 0, res, rt);
        }
        // Declared profiles keep their place in meta.profile, so an unknown one is reported there.
        let mut profiles: Vec<(String, Option<usize>)> = Vec::new();
        if let Some(list) = res.get("meta").and_then(|m| m.get("profile")).and_then(Value::as_array) {
            profiles.extend(list.iter().enumerate().filter_map(|(i, p)| p.as_str().map(|p| (p.to_string(), Some(i)))));
        }
        profiles.extend(extra.iter().map(|s| (s.to_string(), None)));
        if self.v.options.apply_global_profiles {
            let globals = self.v.global_profiles.iter().filter(|(t, _)| t == rt);
            profiles.extend(globals.map(|(_, p)| (p.clone(), None)));
        }
        if self.v.options.imply_vital_signs_profiles
            && rt == "Observation"
            && let Some(p) = vital_signs_profile(res)
        {
            profiles.push((format!("http://hl7.org/fhir/StructureDefinition/{p}"), None));
        }
        let mut seen = HashSet::new();
        for (p, declared_at) in profiles {
            let url = crate::defs::canonical_base(&p);
            if !seen.insert(url.clone()) || url == base.url {
                continue;
            }
            match self.v.sd(&url) {
                None => {
                    // A claim in meta.profile follows the claim policy, unless it names a guide loaded whole; a
                    // profile the caller asks for follows the options.
                    let complete = self.v.options.complete_namespaces.iter().any(|n| url.starts_with(n.as_str()));
                    let (sev, msg, rule) = match declared_at {
                        Some(_) if !complete => (
                            self.unknown_claims.severity(),
                            crate::unknown_claim_message(&p, self.unknown_claims),
                            Rule::UnknownProfileClaim { url: p.clone() },
                        ),
                        _ => (
                            if complete || self.v.options.unknown_profile_is_error {
                                Severity::Error
                            } else {
                                Severity::Warning
                            },
                            format!("Profile reference '{p}' has not been checked because it is unknown"),
                            Rule::Profile { url: p.clone() },
                        ),
                    };
                    let at = match declared_at {
                        Some(i) => format!("{}.meta.profile[{i}]", self.path),
                        None => self.path.clone(),
                    };
                    self.issues.push(issue(sev, IssueCode::NotFound, msg, &at).rule(rule));
                }
                Some(sd) if sd.type_name != rt => {
                    let msg =
                        format!("The profile '{p}' is for the type '{}', but the resource is a '{rt}'", sd.type_name);
                    self.report_rule(Severity::Error, IssueCode::Structure, msg, Rule::Profile { url: p.clone() });
                }
                Some(sd) => {
                    let sd: &'v CompiledStructure = sd;
                    if self.first_visit(res, sd) {
                        self.complex(sd, 0, res, rt);
                    }
                }
            }
        }
        // Rules of the resource type itself, checked with its base definition.
        if base_first {
            match rt {
                "Bundle" => self.bundle_rules(res),
                "QuestionnaireResponse" => self.questionnaire_response(res),
                "StructureDefinition" => self.structure_definition(res),
                "OperationDefinition" => self.operation_definition(res),
                _ => {}
            }
        }
        self.resources.pop();
        self.resource_starts.pop();
        self.contained.pop();
        self.depth -= 1;
    }

    /// Whether `res` is yet to be validated against `sd` in this walk (see `validated`), now marked as done.
    fn first_visit(&mut self, res: &Value, sd: &CompiledStructure) -> bool {
        self.validated.as_mut().is_none_or(|done| done.insert((res as *const Value, sd as *const CompiledStructure)))
    }

    /// Validates one node against element `ei` of `sd`, where the node's type is `ty`.
    pub(crate) fn element(
        &mut self,
        structure: &'v CompiledStructure,
        elem_index: usize,
        node: Option<&'v Value>,
        companion: Option<&'v Value>,
        ty: &'v str,
    ) {
        let elem = &structure.elems[elem_index];
        if primitives::is_primitive(ty) {
            if let Some(val) = node {
                if let Some(msg) = primitives::check(ty, val) {
                    self.err(IssueCode::Value, msg);
                } else {
                    if ty == "xhtml" {
                        for msg in primitives::check_xhtml(val.as_str().unwrap_or("")) {
                            self.err(IssueCode::Value, msg);
                        }
                    }
                    if ty == "markdown"
                        && self.v.options.no_html_in_markdown
                        && let Some(tag) = val.as_str().and_then(embedded_html_tag)
                    {
                        self.err(
                            IssueCode::Value,
                            format!("The markdown contains content that appears to be an embedded HTML tag starting at '{tag}'"),
                        );
                    }
                    if !self.v.options.allow_example_urls
                        && matches!(ty, "uri" | "url" | "canonical")
                        && let Some(url) = val.as_str().filter(|u| is_example_url(u))
                    {
                        self.err(IssueCode::Value, format!("Example URLs are not allowed in this context ({url})"));
                    }
                    self.value_rules(elem, val, ty);
                }
            }
            // The companion (`_display`) holds the id and extensions of a value of type `ty`: its children are
            // those of Element, and an extension there is on a `ty` (a `string` context allows it).
            if let Some(c) = companion
                && let Some(el) = self.v.core_type("Element")
            {
                self.complex(el, 0, c, ty);
            }
            if node.is_some() || companion.is_some() {
                self.constraints(elem, node, companion, ty);
            }
            return;
        }
        let Some(node) = node else { return };
        if elem_index != 0
            && (ty == "Resource"
                || ty == "DomainResource"
                || (self.v.is_resource_type(ty) && node.get("resourceType").is_some()))
        {
            // The profiles of the type the resource has; a choice of resource types gives each its own.
            let rt = node.get("resourceType").and_then(Value::as_str).unwrap_or(ty);
            let code = if elem.types.iter().any(|t| t.code == rt) { rt } else { ty };
            let profiles: Vec<&str> = elem
                .types
                .iter()
                .filter(|t| t.code == code)
                .flat_map(|t| t.profiles.iter().map(String::as_str))
                .collect();
            if node.is_object() {
                let profiles = self.conforming_profile(node, profiles);
                self.resource(node, &profiles);
            } else {
                self.err(IssueCode::Structure, "A resource must be a JSON object");
            }
            return;
        }
        if !node.is_object() {
            self.err(
                IssueCode::Structure,
                format!("The property must be a JSON object ({ty}), not a {}", json_kind(node)),
            );
            return;
        }
        self.complex(structure, elem_index, node, ty);
        if ty == "Attachment" {
            self.attachment_size(node);
        }
        // Type profiles (extensions with a definition, profiled datatypes).
        for t in elem.types.iter().filter(|t| t.code == ty) {
            for p in &t.profiles {
                if let Some(psd) = self.v.sd(p.as_str()) {
                    let psd: &'v CompiledStructure = psd;
                    if !std::ptr::eq(psd, structure) {
                        self.complex(psd, 0, node, ty);
                    }
                } else if ty != "Extension" {
                    let msg = format!("Profile '{p}' is not known");
                    self.report_rule(Severity::Warning, IssueCode::NotFound, msg, Rule::Profile { url: p.clone() });
                }
            }
        }
    }

    /// A type that lists several profiles asks the resource to conform to one of them: the first that adds no
    /// error to the resource's own, or all of them (and all their errors) when none does.
    fn conforming_profile<'p>(&self, res: &'v Value, profiles: Vec<&'p str>) -> Vec<&'p str> {
        if profiles.len() < 2 {
            return profiles;
        }
        let errors = |profile: &[&str]| {
            let mut sub = Walk::new(self.v);
            sub.unknown_claims = self.unknown_claims;
            sub.path = self.path.clone();
            sub.resources = self.resources.clone();
            sub.contained = self.contained.clone();
            sub.in_target_check = self.in_target_check;
            sub.resource(res, profile);
            sub.issues.iter().filter(|i| i.is_error()).count()
        };
        let own = errors(&[]);
        match profiles.iter().find(|p| self.v.knows_profile(p) && errors(&[**p]) == own) {
            Some(p) => vec![*p],
            None => profiles,
        }
    }

    fn complex(&mut self, structure: &'v CompiledStructure, elem_index: usize, node: &'v Value, ty: &'v str) {
        let elem = &structure.elems[elem_index];
        let Some(obj) = node.as_object() else { return };
        if obj.is_empty() {
            let human = "All FHIR elements must have a @value or children";
            let rule = Rule::Constraint { key: "ele-1".into(), human: human.into() };
            self.report_rule(Severity::Error, IssueCode::Invariant, format!("ele-1: {human}"), rule);
        }
        // Where the children come from.
        let (child_structure, parent): (&'v CompiledStructure, usize) = if !elem.children.is_empty() {
            (structure, elem_index)
        } else if let Some(cr) = &elem.content_ref {
            match self.content_ref(structure, cr) {
                Some(x) => x,
                None => return,
            }
        } else if let Some(tsd) = self.v.core_type(ty) {
            (tsd, 0)
        } else {
            self.err(IssueCode::Structure, format!("Unknown type '{ty}'"));
            return;
        };
        let children = &child_structure.elems[parent].children;
        let child_names = &child_structure.elems[parent].child_names;
        let is_root_resource = elem_index == 0 && structure.kind == Kind::Resource;
        // Group the JSON properties by child definition.
        let mut flat: Vec<(usize, Occurrence<'v>)> = Vec::with_capacity(obj.len() + 2);
        let has_companions = obj.keys().any(|k| k.starts_with('_'));
        // children present with a type they do not allow: reported once, not again as missing
        let mut wrong_type: Vec<usize> = Vec::new();
        let base_len = self.path.len();
        for (key, val) in obj {
            if key == "resourceType" && is_root_resource
                || key == "contained" && is_root_resource && !self.v.options.validate_contained
            {
                continue;
            }
            let (name, is_companion) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            if is_companion && obj.contains_key(name) {
                continue;
            }
            let mut found = child_names.get(name).map(|&child| {
                let c = &child_structure.elems[children[child]];
                (child, c.types.first().map(|t| t.code.as_str()).unwrap_or("BackboneElement"))
            });
            // Otherwise a choice element (`value[x]`) whose name the property starts with.
            let choices = if found.is_none() { &children[..] } else { &[] };
            for (child, &k) in choices.iter().enumerate() {
                let c = &child_structure.elems[k];
                if c.choice && name.len() > c.name.len() && name.starts_with(c.name.as_str()) {
                    let suffix = &name[c.name.len()..];
                    if suffix.starts_with(|ch: char| ch.is_ascii_uppercase()) {
                        match c.type_for_suffix(suffix) {
                            Some(t) => found = Some((child, t.code.as_str())),
                            None => {
                                if c.types.is_empty() {
                                    found = Some((child, crate::fhirpath_type(suffix)));
                                } else {
                                    let _ = write!(self.path, ".{key}");
                                    self.err(
                                        IssueCode::Structure,
                                        format!(
                                            "The type '{suffix}' is not valid for {} (allowed: {})",
                                            c.path,
                                            type_list(c)
                                        ),
                                    );
                                    self.path.truncate(base_len);
                                    wrong_type.push(child);
                                    found = Some((usize::MAX, ""));
                                }
                            }
                        }
                        break;
                    }
                }
            }
            let Some((child, cty)) = found else {
                let _ = write!(self.path, ".{key}");
                self.err(IssueCode::Structure, format!("Unrecognized property '{key}'"));
                self.path.truncate(base_len);
                continue;
            };
            if child == usize::MAX {
                continue;
            }
            let c = &child_structure.elems[children[child]];
            let (main, comp) = if is_companion {
                (None, Some(val))
            } else if has_companions {
                (Some(val), crate::defs::companion(obj, key))
            } else {
                (Some(val), None)
            };
            let json_name: &'v str = if is_companion { &key[1..] } else { key.as_str() };
            let is_array = main.or(comp).is_some_and(Value::is_array);
            if c.array != is_array {
                let _ = write!(self.path, ".{json_name}");
                if c.array {
                    self.err(
                        IssueCode::Structure,
                        format!(
                            "The property '{json_name}' must be a JSON array, not a {}",
                            json_kind(main.or(comp).unwrap_or(&Value::Null))
                        ),
                    );
                } else {
                    self.err(IssueCode::Structure, format!("The property '{json_name}' must not be a JSON array"));
                }
                self.path.truncate(base_len);
                if !c.array {
                    continue;
                }
            }
            if is_array {
                let arr = main.and_then(Value::as_array);
                let carr = comp.and_then(Value::as_array);
                let n = arr.map_or(0, Vec::len).max(carr.map_or(0, Vec::len));
                if n == 0 {
                    let _ = write!(self.path, ".{json_name}");
                    self.err(
                        IssueCode::Structure,
                        "Array cannot be empty - the property should not be present if it has no values",
                    );
                    self.path.truncate(base_len);
                }
                if let (Some(a), Some(b)) = (arr, carr)
                    && a.len() != b.len()
                {
                    let _ = write!(self.path, ".{json_name}");
                    self.err(
                        IssueCode::Structure,
                        format!("The arrays '{json_name}' and '_{json_name}' have different lengths"),
                    );
                    self.path.truncate(base_len);
                }
                for i in 0..n {
                    let m = arr.and_then(|a| a.get(i)).filter(|x| !x.is_null());
                    let cm = carr.and_then(|a| a.get(i)).filter(|x| !x.is_null());
                    if m.is_none() && cm.is_none() {
                        let _ = write!(self.path, ".{json_name}[{i}]");
                        self.err(
                            IssueCode::Structure,
                            "Null values are not allowed in arrays unless matched by an extension",
                        );
                        self.path.truncate(base_len);
                        continue;
                    }
                    flat.push((child, Occurrence { value: m, companion: cm, ty: cty, json_name, index: Some(i) }));
                }
            } else {
                if main.is_some_and(Value::is_null) {
                    let _ = write!(self.path, ".{json_name}");
                    self.err(IssueCode::Structure, format!("The property '{json_name}' cannot be null"));
                    self.path.truncate(base_len);
                    continue;
                }
                flat.push((child, Occurrence { value: main, companion: comp, ty: cty, json_name, index: None }));
            }
        }
        // Per child definition: cardinality, slicing, recursion.
        flat.sort_by_key(|x| x.0);
        let mut pos = 0;
        let mut items: Vec<Occurrence<'v>> = Vec::new();
        for (child, &k) in children.iter().enumerate() {
            let c = &child_structure.elems[k];
            items.clear();
            while pos < flat.len() && flat[pos].0 == child {
                items.push(flat[pos].1);
                pos += 1;
            }
            let items = &items;
            if (items.len() as u32) < c.min && !wrong_type.contains(&child) {
                let _ = write!(self.path, ".{}", c.name);
                let profile = self.profile_name(child_structure);
                let from = profile_note(profile.as_deref());
                let msg = format!("{}: minimum required = {}, but only found {}{from}", c.path, c.min, items.len());
                let rule = cardinality(c, items.len(), profile);
                self.report_rule(Severity::Error, IssueCode::Required, msg, rule);
                self.path.truncate(base_len);
            }
            if let Some(max) = c.max
                && items.len() as u32 > max
            {
                let _ = write!(self.path, ".{}", c.name);
                let profile = self.profile_name(child_structure);
                let from = profile_note(profile.as_deref());
                let msg = format!("{}: max allowed = {max}, but found {}{from}", c.path, items.len());
                let rule = cardinality(c, items.len(), profile);
                self.report_rule(Severity::Error, IssueCode::Structure, msg, rule);
                self.path.truncate(base_len);
            }
            if items.is_empty() {
                // Required slices are missing too.
                for &s in c.slices.iter().filter(|&&s| child_structure.elems[s].min > 0) {
                    let _ = write!(self.path, ".{}", c.name);
                    self.missing_slice(c, &child_structure.elems[s], 0);
                    self.path.truncate(base_len);
                }
                continue;
            }
            // The slice each item is in; empty (no allocation) where the element is not sliced.
            let slice_of: Vec<Option<usize>> = if !c.slices.is_empty()
                || c.slicing.is_some()
                || c.name == "extension"
                || c.name == "modifierExtension"
            {
                self.slicing(child_structure, k, items, base_len, ty)
            } else {
                Vec::new()
            };
            for (ii, &Occurrence { value: m, companion: cm, ty: cty, json_name, index: idx }) in
                items.iter().enumerate()
            {
                push_step(&mut self.path, json_name, idx);
                self.element(child_structure, k, m, cm, cty);
                if let Some(&Some(s)) = slice_of.get(ii) {
                    self.element(child_structure, s, m, cm, cty);
                }
                if cty == "Reference"
                    && let Some(m) = m
                {
                    self.reference(c, m);
                }
                self.path.truncate(base_len);
            }
        }
        self.value_rules(elem, node, ty);
        self.constraints(elem, Some(node), None, ty);
        // The invariants of the datatype itself (per-1, qty-3, ref-1...) live on its root element.
        if elem_index != 0
            && let Some(tsd) = self.v.core_type(ty)
        {
            let root = &tsd.elems[0];
            if !root.constraints.is_empty() && !std::ptr::eq(root, elem) {
                self.type_constraints(root, elem, node, ty);
            }
        }
    }

    /// The name of `sd` when it is a profile, `None` for a base definition: a profile's cardinality is another
    /// rule than the base one, and both are reported (as the HL7 validator does). The name, not the url:
    /// issue readers take a StructureDefinition url in the text as the profile declared.
    fn profile_name(&self, sd: &CompiledStructure) -> Option<String> {
        match self.v.core_type(&sd.type_name) {
            Some(base) if std::ptr::eq(base, sd) => None,
            _ if sd.name.is_empty() => Some(sd.url.rsplit('/').next().unwrap_or("").to_string()),
            _ => Some(sd.name.clone()),
        }
    }

    /// The element a `contentReference` names: in the core type it starts with, as the HL7 snapshot generator
    /// points a profile's inherited `#Parameters.parameter` at the base definition (so the profile's
    /// constraints on `parameter` do not apply again to `parameter.part`); else in `sd`.
    pub(crate) fn content_ref(
        &self,
        structure: &'v CompiledStructure,
        reference: &str,
    ) -> Option<(&'v CompiledStructure, usize)> {
        let root = reference.split('.').next()?;
        if let Some(core) = self.v.core_type(root)
            && let Some(&i) = core.by_path.get(reference)
        {
            return Some((core, i));
        }
        let &i = structure.by_path.get(reference)?;
        Some((structure, i))
    }
}

/// The core vital signs profile (`bodytemp`) an Observation's code implies: R4 requires vital signs to conform
/// to them. The codes are those the HL7 validator recognises.
fn vital_signs_profile(obs: &Value) -> Option<&'static str> {
    const LOINC: &[(&str, &[&str])] = &[
        ("vitalspanel", &["85353-1"]),
        ("resprate", &["9279-1", "76170-0", "76172-6", "76171-8", "19840-8", "33438-3", "76270-8", "11291-2"]),
        (
            "heartrate",
            &[
                "60978-4", "73795-7", "73799-9", "76476-1", "76477-9", "8867-4", "8889-8", "8890-6", "8891-4",
                "8892-2", "8893-0", "40443-4", "55425-3", "68999-2", "11328-2", "69000-8", "8886-4",
            ],
        ),
        (
            "oxygensat",
            &[
                "2708-6", "19224-5", "20564-1", "2709-4", "2710-2", "2713-6", "51733-4", "59408-5", "59417-6",
                "89276-0", "97549-0",
            ],
        ),
        (
            "bodytemp",
            &[
                "8310-5", "60834-9", "60835-6", "60836-4", "60838-0", "60955-2", "61009-7", "75539-7", "75987-8",
                "76010-8", "76011-6", "76278-1", "8309-7", "8328-7", "8329-5", "8330-3", "8331-1", "8332-9", "8333-7",
                "8334-5", "91371-5", "98657-0", "98663-8",
            ],
        ),
        ("bodyheight", &["8302-2", "3137-7", "3138-5", "8306-3", "8308-9"]),
        ("headcircum", &["9843-4", "8287-5"]),
        ("bodyweight", &["29463-7", "3141-9", "3142-7", "75292-3", "79348-9", "8350-1", "8351-9"]),
        ("bmi", &["39156-5", "59574-4", "89270-3"]),
        ("bp", &["85354-9", "35094-2", "8459-0", "76534-7", "55284-4", "8480-6"]),
    ];
    const SNOMED: &[(&str, &[&str])] = &[
        ("vitalspanel", &["46680005"]),
        ("bp", &["86290005", "271625008", "271306003"]),
        ("heartrate", &["249043002", "444981005", "399017001", "251670001", "429525003", "429614003"]),
        ("oxygensat", &["103228002", "442349007", "442476006", "442440005", "431314004", "442734002", "713194001"]),
        (
            "bodytemp",
            &[
                "386725007",
                "276885007",
                "300076005",
                "1222808002",
                "364246006",
                "307047009",
                "708499008",
                "431598003",
                "698831002",
                "698832009",
                "415882003",
                "415974002",
                "415929009",
                "415945006",
            ],
        ),
        (
            "bodyheight",
            &["1153637007", "1162419008", "50373000", "1162418000", "1230278008", "1162392001", "1162417005"],
        ),
        ("headcircum", &["363812007", "169876006", "1269262007", "363811000"]),
        ("bodyweight", &["60621009", "735395000", "425024002", "424927000", "784399000", "1162416001", "1162415002"]),
        (
            "bp",
            &[
                "251076008",
                "163033001",
                "163035008",
                "386534000",
                "386536003",
                "271649006",
                "271650006",
                "407556006",
                "407554009",
                "716579001",
                "399304008",
            ],
        ),
    ];
    let codings = obs.pointer("/code/coding").and_then(Value::as_array)?;
    let find = |system: &str, table: &[(&'static str, &[&str])]| {
        let codes: Vec<&str> = codings
            .iter()
            .filter(|c| c.get("system").and_then(Value::as_str) == Some(system))
            .filter_map(|c| c.get("code").and_then(Value::as_str))
            .collect();
        table.iter().find(|(_, list)| list.iter().any(|c| codes.contains(c))).map(|(p, _)| *p)
    };
    find("http://loinc.org", LOINC).or_else(|| find("http://snomed.info/sct", SNOMED))
}

/// Appends `.name`, or `.name[index]`, to a path: done for every node, where `write!` would cost several times
/// more.
fn push_step(path: &mut String, name: &str, index: Option<usize>) {
    path.push('.');
    path.push_str(name);
    if let Some(mut i) = index {
        path.push('[');
        let start = path.len();
        loop {
            path.insert(start, char::from(b'0' + (i % 10) as u8));
            i /= 10;
            if i == 0 {
                break;
            }
        }
        path.push(']');
    }
}

/// ` (profile <name>)` after a cardinality message for a profile's bounds.
fn profile_note(profile: Option<&str>) -> String {
    profile.map(|name| format!(" (profile {name})")).unwrap_or_default()
}

fn cardinality(elem: &Elem, found: usize, profile: Option<String>) -> Rule {
    Rule::Cardinality { element: elem.path.clone(), min: elem.min, max: elem.max, found, profile }
}

fn type_list(c: &Elem) -> String {
    c.types.iter().map(|t| cap_first(&t.code)).collect::<Vec<_>>().join(", ")
}

/// The start (`<r`) of the first thing in markdown text that looks like an HTML tag.
fn embedded_html_tag(text: &str) -> Option<&str> {
    let at = text
        .match_indices('<')
        .map(|(i, _)| i)
        .find(|&i| text[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/'))?;
    Some(&text[at..at + 2])
}

fn is_example_url(url: &str) -> bool {
    url.contains("example.org") || url.contains("example.com") || url.contains("acme.")
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equal(v, w)),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Pattern matching: every property of the pattern is present in the value (arrays: each pattern item
/// matched by some value item).
pub(crate) fn json_contains(v: &Value, p: &Value) -> bool {
    match (v, p) {
        (Value::Object(x), Value::Object(y)) => {
            y.iter().all(|(k, pv)| x.get(k).is_some_and(|vv| json_contains(vv, pv)))
        }
        (Value::Array(x), Value::Array(y)) => y.iter().all(|pv| x.iter().any(|vv| json_contains(vv, pv))),
        (Value::Array(x), y) => x.iter().any(|vv| json_contains(vv, y)),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => v == p,
    }
}
