//! The validation walk: JSON instance x compiled element tree.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use rex_fhir::{BindingStrength, Issue, IssueCode, Rule, Severity};
use serde_json::Value;

use crate::defs::{field, resource_type};
use crate::fhirpath::{self, Env, Item};
use crate::model::{Constraint, DiscKind, Elem, Kind, Rules, Sd};
use crate::primitives;
use crate::terminology::{Membership, is_external_system};
use crate::{UnknownProfiles, Validator};

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
    pub validated: Option<crate::FxSet<(*const Value, *const Sd)>>,
    /// What a `meta.profile` the validator does not know does to the resource.
    pub unknown_claims: UnknownProfiles,
}

type Entry<'a> = (Option<&'a Value>, Option<&'a Value>, &'a str, &'a str, Option<usize>);

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
                    let sd: &'v Sd = sd;
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
    fn first_visit(&mut self, res: &Value, sd: &Sd) -> bool {
        self.validated.as_mut().is_none_or(|done| done.insert((res as *const Value, sd as *const Sd)))
    }

    /// Validates one node against element `ei` of `sd`, where the node's type is `ty`.
    pub(crate) fn element(
        &mut self,
        sd: &'v Sd,
        ei: usize,
        node: Option<&'v Value>,
        companion: Option<&'v Value>,
        ty: &'v str,
    ) {
        let elem = &sd.elems[ei];
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
        if ei != 0
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
        self.complex(sd, ei, node, ty);
        if ty == "Attachment" {
            self.attachment_size(node);
        }
        // Type profiles (extensions with a definition, profiled datatypes).
        for t in elem.types.iter().filter(|t| t.code == ty) {
            for p in &t.profiles {
                if let Some(psd) = self.v.sd(p.as_str()) {
                    let psd: &'v Sd = psd;
                    if !std::ptr::eq(psd, sd) {
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

    fn complex(&mut self, sd: &'v Sd, ei: usize, node: &'v Value, ty: &'v str) {
        let elem = &sd.elems[ei];
        let Some(obj) = node.as_object() else { return };
        if obj.is_empty() {
            let human = "All FHIR elements must have a @value or children";
            let rule = Rule::Constraint { key: "ele-1".into(), human: human.into() };
            self.report_rule(Severity::Error, IssueCode::Invariant, format!("ele-1: {human}"), rule);
        }
        // Where the children come from.
        let (csd, parent): (&'v Sd, usize) = if !elem.children.is_empty() {
            (sd, ei)
        } else if let Some(cr) = &elem.content_ref {
            match self.content_ref(sd, cr) {
                Some(x) => x,
                None => return,
            }
        } else if let Some(tsd) = self.v.core_type(ty) {
            (tsd, 0)
        } else {
            self.err(IssueCode::Structure, format!("Unknown type '{ty}'"));
            return;
        };
        let kids = &csd.elems[parent].children;
        let child_names = &csd.elems[parent].child_names;
        let is_root_resource = ei == 0 && sd.kind == Kind::Resource;
        // Group the JSON properties by child definition.
        let mut flat: Vec<(usize, Entry<'v>)> = Vec::with_capacity(obj.len() + 2);
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
            let mut found = child_names.get(name).map(|&gi| {
                let c = &csd.elems[kids[gi]];
                (gi, c.types.first().map(|t| t.code.as_str()).unwrap_or("BackboneElement"))
            });
            // Otherwise a choice element (`value[x]`) whose name the property starts with.
            let choices = if found.is_none() { &kids[..] } else { &[] };
            for (gi, &k) in choices.iter().enumerate() {
                let c = &csd.elems[k];
                if c.choice && name.len() > c.name.len() && name.starts_with(c.name.as_str()) {
                    let suffix = &name[c.name.len()..];
                    if suffix.starts_with(|ch: char| ch.is_ascii_uppercase()) {
                        match c.type_for_suffix(suffix) {
                            Some(t) => found = Some((gi, t.code.as_str())),
                            None => {
                                if c.types.is_empty() {
                                    found = Some((gi, crate::fhirpath_type(suffix)));
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
                                    wrong_type.push(gi);
                                    found = Some((usize::MAX, ""));
                                }
                            }
                        }
                        break;
                    }
                }
            }
            let Some((gi, cty)) = found else {
                let _ = write!(self.path, ".{key}");
                self.err(IssueCode::Structure, format!("Unrecognized property '{key}'"));
                self.path.truncate(base_len);
                continue;
            };
            if gi == usize::MAX {
                continue;
            }
            let c = &csd.elems[kids[gi]];
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
                    flat.push((gi, (m, cm, cty, json_name, Some(i))));
                }
            } else {
                if main.is_some_and(Value::is_null) {
                    let _ = write!(self.path, ".{json_name}");
                    self.err(IssueCode::Structure, format!("The property '{json_name}' cannot be null"));
                    self.path.truncate(base_len);
                    continue;
                }
                flat.push((gi, (main, comp, cty, json_name, None)));
            }
        }
        // Per child definition: cardinality, slicing, recursion.
        flat.sort_by_key(|x| x.0);
        let mut pos = 0;
        let mut items: Vec<Entry<'v>> = Vec::new();
        for (gi, &k) in kids.iter().enumerate() {
            let c = &csd.elems[k];
            items.clear();
            while pos < flat.len() && flat[pos].0 == gi {
                items.push(flat[pos].1);
                pos += 1;
            }
            let items = &items;
            if (items.len() as u32) < c.min && !wrong_type.contains(&gi) {
                let _ = write!(self.path, ".{}", c.name);
                let profile = self.profile_name(csd);
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
                let profile = self.profile_name(csd);
                let from = profile_note(profile.as_deref());
                let msg = format!("{}: max allowed = {max}, but found {}{from}", c.path, items.len());
                let rule = cardinality(c, items.len(), profile);
                self.report_rule(Severity::Error, IssueCode::Structure, msg, rule);
                self.path.truncate(base_len);
            }
            if items.is_empty() {
                // Required slices are missing too.
                for &s in c.slices.iter().filter(|&&s| csd.elems[s].min > 0) {
                    let _ = write!(self.path, ".{}", c.name);
                    self.missing_slice(c, &csd.elems[s], 0);
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
                self.slicing(csd, k, items, base_len, ty)
            } else {
                Vec::new()
            };
            for (ii, &(m, cm, cty, json_name, idx)) in items.iter().enumerate() {
                push_step(&mut self.path, json_name, idx);
                self.element(csd, k, m, cm, cty);
                if let Some(&Some(s)) = slice_of.get(ii) {
                    self.element(csd, s, m, cm, cty);
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
        if ei != 0
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
    fn profile_name(&self, sd: &Sd) -> Option<String> {
        match self.v.core_type(&sd.type_name) {
            Some(base) if std::ptr::eq(base, sd) => None,
            _ if sd.name.is_empty() => Some(sd.url.rsplit('/').next().unwrap_or("").to_string()),
            _ => Some(sd.name.clone()),
        }
    }

    fn type_constraints(&mut self, root: &'v Elem, elem: &Elem, node: &'v Value, ty: &'v str) {
        if root.constraints.iter().all(|c| elem.constraints.iter().any(|e| e.key == c.key)) {
            return;
        }
        let before = self.issues.len();
        self.constraints(root, Some(node), None, ty);
        // drop duplicates of constraints the element already declared
        let keys: Vec<&str> = elem.constraints.iter().map(|c| c.key.as_str()).collect();
        let mut i = before;
        while i < self.issues.len() {
            let duplicate = matches!(self.issues[i].rule.as_deref(), Some(Rule::Constraint { key, .. }) if keys.contains(&key.as_str()));
            if duplicate {
                self.issues.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// The stated size of an Attachment must be the size of its inline data.
    fn attachment_size(&mut self, node: &Value) {
        if let (Some(size), Some(data)) =
            (node.get("size").and_then(Value::as_u64), node.get("data").and_then(Value::as_str))
            && primitives::check("base64Binary", &Value::String(data.to_string())).is_none()
        {
            let actual = primitives::base64_decoded_len(data) as u64;
            if actual != size {
                self.err(
                    IssueCode::Value,
                    format!("Stated Attachment Size {size} does not match actual attachment size {actual}"),
                );
            }
        }
    }

    /// The element a `contentReference` names: in the core type it starts with, as the HL7 snapshot generator
    /// points a profile's inherited `#Parameters.parameter` at the base definition (so the profile's
    /// constraints on `parameter` do not apply again to `parameter.part`); else in `sd`.
    pub(crate) fn content_ref(&self, sd: &'v Sd, cr: &str) -> Option<(&'v Sd, usize)> {
        let root = cr.split('.').next()?;
        if let Some(tsd) = self.v.core_type(root)
            && let Some(&i) = tsd.by_path.get(cr)
        {
            return Some((tsd, i));
        }
        let &i = sd.by_path.get(cr)?;
        Some((sd, i))
    }

    /// Assigns items to slices and checks slice cardinality, closed and ordered rules. Extensions without
    /// a matching slice are checked against their definition by url.
    /// `holder_ty` is the type of the node whose children `items` are (where an extension is used).
    fn slicing(
        &mut self,
        sd: &'v Sd,
        k: usize,
        items: &[Entry<'v>],
        base_len: usize,
        holder_ty: &str,
    ) -> Vec<Option<usize>> {
        let c = &sd.elems[k];
        let mut out = vec![None; items.len()];
        for (ii, &(m, _, cty, _, _)) in items.iter().enumerate() {
            let Some(m) = m else { continue };
            for &s in &c.slices {
                if self.slice_matches(sd, k, s, m, cty) {
                    out[ii] = Some(s);
                    break;
                }
            }
        }
        let json_name = items[0].3;
        // slice cardinality
        for &s in &c.slices {
            let se = &sd.elems[s];
            let n = out.iter().filter(|x| **x == Some(s)).count() as u32;
            if n < se.min {
                let _ = write!(self.path, ".{json_name}");
                self.missing_slice(c, se, n);
                self.path.truncate(base_len);
            }
            if let Some(max) = se.max
                && n > max
            {
                let _ = write!(self.path, ".{json_name}");
                let name = se.slice_name.as_deref().unwrap_or("");
                let msg = format!("Slice '{}:{name}': max allowed = {max}, but found {n}", c.path);
                self.report_rule(Severity::Error, IssueCode::Structure, msg, slice_rule(c, se, n));
                self.path.truncate(base_len);
            }
        }
        if let Some(slicing) = &c.slicing {
            let mut last = 0usize;
            let mut seen_unmatched = false;
            for (ii, item) in items.iter().enumerate() {
                let pos = out[ii].map(|s| c.slices.iter().position(|x| *x == s).unwrap_or(0));
                let idx = item.4.unwrap_or(0);
                match pos {
                    None => {
                        seen_unmatched = true;
                        if slicing.rules == Rules::Closed && !(c.name == "extension" && item.0.is_some()) {
                            let _ = write!(self.path, ".{json_name}[{idx}]");
                            self.report_rule(
                                Severity::Error,
                                IssueCode::Structure,
                                format!("This element does not match any known slice defined in the profile {} (slicing is closed)", sd.url),
                                Rule::ClosedSlicing { profile: sd.url.clone() },
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
        if c.name == "extension" || c.name == "modifierExtension" {
            for (ii, &(m, _, _, _, idx)) in items.iter().enumerate() {
                let Some(m) = m else { continue };
                let slice_has_profile =
                    out[ii].is_some_and(|s| sd.elems[s].types.iter().any(|t| !t.profiles.is_empty()));
                push_step(&mut self.path, json_name, Some(idx.unwrap_or(0)));
                let url = field(m, "url").and_then(Value::as_str);
                match url {
                    None => self.err(
                        IssueCode::Structure,
                        "Extension.url is required in order to identify, use and validate the extension",
                    ),
                    Some(url) => match self.v.sd(crate::defs::canonical_base(url).as_str()) {
                        Some(ext) => {
                            let ext: &'v Sd = ext;
                            // the version of an extension is the one loaded, never one named in the url
                            if url.contains('|') {
                                self.err(IssueCode::Structure, "The extension URL must not contain a version");
                            }
                            if c.name == "extension" {
                                self.extension_context(ext, &c.path, holder_ty, base_len);
                            }
                            if !slice_has_profile {
                                self.complex(ext, 0, m, "Extension");
                            }
                            let rule = Rule::Extension { url: url.to_string() };
                            if c.name == "modifierExtension" && !ext.is_modifier_ext {
                                self.report_rule(
                                    Severity::Error,
                                    IssueCode::Structure,
                                    format!("The extension '{url}' is not a modifier extension, but is used as one"),
                                    rule,
                                );
                            } else if c.name == "extension" && ext.is_modifier_ext {
                                self.report_rule(Severity::Error, IssueCode::Structure, format!("The extension '{url}' is a modifier extension, and must be used as a modifierExtension"), rule);
                            }
                        }
                        None if out[ii].is_none() => {
                            let rule = Rule::Extension { url: url.to_string() };
                            if c.name == "modifierExtension" {
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

    /// `%rootResource`: the resource that holds the current one when it is contained; otherwise the current
    /// resource itself (a Bundle entry or a Parameters resource is its own root).
    fn root_resource(&self) -> Option<&'v Value> {
        let mut i = self.resources.len().checked_sub(1)?;
        while i > 0 && self.contained.get(i).copied().unwrap_or(false) {
            i -= 1;
        }
        self.resources.get(i).copied()
    }

    /// The element path of the node at `path[..len]` within its resource (`Patient.name`, indexes dropped).
    fn element_path(&self, len: usize) -> String {
        let start = self.resource_starts.last().copied().unwrap_or(0).min(len);
        let rt = self.resources.last().and_then(|r| r.get("resourceType")).and_then(Value::as_str).unwrap_or("");
        let mut out = rt.to_string();
        let mut depth = 0;
        for ch in self.path[start..len].chars() {
            match ch {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ if depth == 0 => out.push(ch),
                _ => {}
            }
        }
        out
    }

    /// An extension is used where its definition's `context` allows it. `extension_path` is the path of the
    /// `extension` element in the structure that holds it (`HumanName.extension`), `holder_ty` the datatype of
    /// the element that holds it (`string` for `Condition.code.coding.display`).
    fn extension_context(&mut self, ext: &Sd, extension_path: &str, holder_ty: &str, base_len: usize) {
        let Some(contexts) = &ext.contexts else { return };
        let here = self.element_path(base_len);
        let holder_type = extension_path.strip_suffix(".extension").unwrap_or(extension_path);
        let allowed = contexts.iter().any(|e| {
            let e = e.as_str();
            e == "Element"
                || e == "Base"
                || e == here
                || e == holder_type
                || self.v.is_subtype_name(holder_type, e)
                // a datatype context allows every element of that type, wherever it is
                || e == holder_ty
                || self.v.is_subtype_name(holder_ty, e)
                // R5 interfaces used by the extensions pack: a canonical resource is one with a `url`
                || (e == "CanonicalResource" || e == "MetadataResource")
                    && self.v.core_type(holder_type).is_some_and(|t| {
                        t.kind == Kind::Resource && t.by_path.contains_key(format!("{holder_type}.url").as_str())
                    })
                || e.strip_suffix("[x]").is_some_and(|p| here.starts_with(p))
                // a path inside a datatype (`HumanName.family`) where the element is named from its resource
                // (`Patient.name.family`)
                || e.split_once('.').is_some_and(|(ty, rest)| {
                    self.v.core_type(ty).is_some_and(|t| t.kind != Kind::Resource) && here.ends_with(&format!(".{rest}"))
                })
        });
        if !allowed {
            self.report_rule(
                Severity::Error,
                IssueCode::Structure,
                format!(
                    "The extension {} is not allowed to be used at this point (this element is {here}; allowed: {})",
                    ext.url,
                    contexts.join(", ")
                ),
                Rule::Extension { url: ext.url.clone() },
            );
        }
    }

    fn slice_matches(&mut self, sd: &'v Sd, base: usize, slice: usize, item: &'v Value, item_ty: &str) -> bool {
        let c = &sd.elems[base];
        let se = &sd.elems[slice];
        let discs: &[(DiscKind, String)] = match &c.slicing {
            Some(s) if !s.discriminators.is_empty() => &s.discriminators,
            _ => {
                // Extension slicing without declared discriminator: by url.
                if c.name == "extension" || c.name == "modifierExtension" {
                    return se
                        .types
                        .iter()
                        .flat_map(|t| t.profiles.iter())
                        .any(|p| field(item, "url").and_then(Value::as_str) == Some(p));
                }
                return false;
            }
        };
        for (kind, path) in discs {
            let typed = select(item, path);
            let values: Vec<&Value> = typed.iter().map(|(v, _)| *v).collect();
            let def = self.nav(sd, slice, path);
            let ok = match kind {
                DiscKind::Value | DiscKind::Pattern => {
                    let expected = def.and_then(|(dsd, di)| {
                        let d = &dsd.elems[di];
                        d.fixed.as_ref().map(|f| (f, true)).or(d.pattern.as_ref().map(|p| (p, false)))
                    });
                    match expected {
                        Some((exp, fixed)) => {
                            values.iter().any(|v| if fixed { json_equal(v, exp) } else { json_contains(v, exp) })
                        }
                        None => {
                            if path == "url" || path.ends_with(".url") {
                                let urls: Vec<&String> = se.types.iter().flat_map(|t| t.profiles.iter()).collect();
                                !urls.is_empty()
                                    && values.iter().any(|v| urls.iter().any(|u| v.as_str() == Some(u.as_str())))
                            } else if let Some((dsd, di)) = def {
                                match &dsd.elems[di].binding {
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
                    let (dsd, di) = def.unwrap_or((sd, slice));
                    let types = &dsd.elems[di].types;
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
                    let (dsd, di) = def.unwrap_or((sd, slice));
                    let profiles: Vec<&str> = dsd.elems[di]
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
                    let (dsd, di) = def.unwrap_or((sd, slice));
                    let d = &dsd.elems[di];
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
    fn nav(&self, sd: &'v Sd, ei: usize, path: &str) -> Option<(&'v Sd, usize)> {
        let mut cur = (sd, ei);
        for seg in split_path(path) {
            if seg == "$this" || seg.starts_with("ofType(") || seg == "resolve()" {
                continue;
            }
            if let Some(url) = seg.strip_prefix("extension('").and_then(|s| s.strip_suffix("')")) {
                let (csd, e) = cur;
                let ext = csd.elems[e].children.iter().copied().find(|&k| csd.elems[k].name == "extension")?;
                let slice = csd.elems[ext]
                    .slices
                    .iter()
                    .copied()
                    .find(|&s| csd.elems[s].types.iter().any(|t| t.profiles.iter().any(|p| p == url)));
                cur = match slice {
                    Some(s) => (csd, s),
                    None => {
                        let esd = self.v.sd(url)?;
                        (esd, 0)
                    }
                };
                continue;
            }
            let (csd, e) = cur;
            let el = &csd.elems[e];
            let found = el.children.iter().copied().find(|&k| csd.elems[k].name == seg);
            cur = match found {
                Some(k) => (csd, k),
                None => {
                    // descend into the type's own definition (profile first)
                    let t = el.types.first()?;
                    let tsd: &'v Sd = match t.profiles.first().and_then(|p| self.v.sd(p.as_str())) {
                        Some(p) => p,
                        None => self.v.core_type(&t.code)?,
                    };
                    let k = tsd.elems[0].children.iter().copied().find(|&k| tsd.elems[k].name == seg)?;
                    (tsd, k)
                }
            };
        }
        Some(cur)
    }

    /// Fixed, pattern, maxLength, min/max values and bindings.
    fn value_rules(&mut self, elem: &Elem, val: &Value, ty: &str) {
        if let Some(f) = &elem.fixed {
            let mut problems = Vec::new();
            fixed_mismatches(val, f, &mut problems);
            for msg in problems {
                self.err(IssueCode::Value, msg);
            }
        }
        if let Some(p) = &elem.pattern
            && !json_contains(val, p)
        {
            self.err(
                IssueCode::Value,
                format!("The value does not match the pattern {} required by the profile", short_json(p)),
            );
        }
        if let (Some(max), Some(s)) = (elem.max_length, val.as_str())
            && s.chars().count() > max
        {
            self.err(IssueCode::TooLong, format!("value is longer than permitted maximum length of {max}"));
        }
        if elem.min_value.is_some() || elem.max_value.is_some() {
            self.min_max(elem, val, ty);
        }
        if let Some(b) = &elem.binding {
            // The HL7 validator holds a Quantity to a required binding only where Quantity is the one type
            // allowed; on a choice of types (the vital signs `component.value[x]`) a unit outside the value
            // set is a warning.
            let strength = match b.strength {
                BindingStrength::Required if ty == "Quantity" && elem.types.len() > 1 => BindingStrength::Extensible,
                other => other,
            };
            if strength != BindingStrength::Example {
                self.binding(strength, &b.value_set, val, ty);
            }
            for vs in &b.required_additional {
                self.additional_binding(vs, val, ty);
            }
        }
    }

    /// A required additional binding: some coding of the value must be in the value set.
    fn additional_binding(&mut self, vs: &str, val: &Value, ty: &str) {
        let Some(codings) = codings_of(val, ty) else { return };
        let members: Vec<Membership> =
            codings.iter().map(|(sys, code, _)| self.v.term.member(vs, *sys, code)).collect();
        if !members.is_empty() && members.iter().all(|m| *m == Membership::NotIn) {
            let shown: Vec<String> = codings.iter().map(|(s, c, _)| format!("{}#{c}", s.unwrap_or(""))).collect();
            self.report_rule(
                Severity::Error,
                IssueCode::CodeInvalid,
                format!(
                    "None of the codings provided are in the value set '{vs}' specified in an additional binding, and a coding from this value set is required (codes = {})",
                    shown.join(", ")
                ),
                Rule::Binding { value_set: vs.to_string(), strength: BindingStrength::Required },
            );
        }
    }

    fn min_max(&mut self, elem: &Elem, val: &Value, ty: &str) {
        let (n, unit) = match ty {
            "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity" | "MoneyQuantity" => {
                (val.get("value").and_then(Value::as_f64), val.get("code").and_then(Value::as_str))
            }
            _ => (val.as_f64(), None),
        };
        let cmp_str = |limit: &Value| -> Option<std::cmp::Ordering> {
            match (val.as_str(), limit.as_str()) {
                (Some(a), Some(b)) => Some(a.cmp(b)),
                _ => None,
            }
        };
        for (limit, is_min) in [(&elem.min_value, true), (&elem.max_value, false)] {
            let Some(limit) = limit else { continue };
            let bad = if let Some(n) = n {
                let (l, lunit) = match limit {
                    Value::Object(o) => (o.get("value").and_then(Value::as_f64), o.get("code").and_then(Value::as_str)),
                    other => (other.as_f64(), None),
                };
                let order = match (l, lunit, unit) {
                    (Some(l), None, _) => n.partial_cmp(&l),
                    (Some(l), Some(lu), Some(u)) => crate::ucum::compare((n, u), (l, lu)),
                    _ => None,
                };
                order == Some(if is_min { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater })
            } else if let (Some(v), Some(d), Some(code)) =
                (val.as_str(), limit.get("value").and_then(Value::as_f64), limit.get("code").and_then(Value::as_str))
            {
                // a Duration limit on a date: no earlier than today - duration, no later than today + duration
                match crate::fhirpath::today_offset(if is_min { -d } else { d }, code) {
                    Some(bound) => {
                        let len = v.len().min(bound.len());
                        let o = v[..len].cmp(&bound[..len]);
                        o == if is_min { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater }
                    }
                    None => false,
                }
            } else {
                match cmp_str(limit) {
                    Some(o) => {
                        if is_min {
                            o == std::cmp::Ordering::Less
                        } else {
                            o == std::cmp::Ordering::Greater
                        }
                    }
                    None => false,
                }
            };
            if bad {
                self.err(
                    IssueCode::Value,
                    format!(
                        "The value {} is {} the {} allowed value {}",
                        short_json(val),
                        if is_min { "below" } else { "above" },
                        if is_min { "minimum" } else { "maximum" },
                        short_json(limit)
                    ),
                );
            }
        }
    }

    fn binding(&mut self, strength: BindingStrength, vs: &str, val: &Value, ty: &str) {
        let Some(codings) = codings_of(val, ty) else { return };
        let rule = Rule::Binding { value_set: vs.to_string(), strength };
        if codings.is_empty() {
            if ty == "CodeableConcept" && strength == BindingStrength::Required && val.get("text").is_none() {
                let msg = format!("No code provided, and a code is required from the value set '{vs}'");
                self.report_rule(Severity::Error, IssueCode::CodeInvalid, msg, rule);
            }
            return;
        }
        // Language tags cannot be checked against a code list here, but their shape can.
        for (sys, code, _) in &codings {
            if *sys == Some("urn:ietf:bcp:47") && !crate::terminology::is_bcp47_tag(code) {
                self.err(
                    IssueCode::CodeInvalid,
                    format!("'{code}' is not a well-formed BCP-47 language tag (e.g. pt-BR)"),
                );
                return;
            }
        }
        if !self.v.term.has_value_set(vs) {
            if strength == BindingStrength::Required {
                self.note_system(&format!("value set {vs}"));
            }
            return;
        }
        let mut any_in = false;
        let mut unknown = None;
        let mut bad = Vec::new();
        for (sys, code, display) in &codings {
            match self.v.term.member(vs, *sys, code) {
                Membership::In => {
                    any_in = true;
                    if let (Some(sys), Some(d)) = (sys, display)
                        && let Some(Some(expected)) = self.v.term.lookup(sys, code)
                        && !expected.is_empty()
                        && !expected.eq_ignore_ascii_case(d)
                    {
                        self.warn(
                            IssueCode::Invalid,
                            format!("Wrong Display Name '{d}' for {sys}#{code}: should be '{expected}'"),
                        );
                    }
                }
                Membership::NotIn => bad.push((*sys, *code)),
                Membership::Unknown(why) => unknown = Some(why),
            }
            if let Some(sys) = sys
                && let Some(None) = self.v.term.lookup(sys, code)
            {
                self.err(IssueCode::CodeInvalid, format!("Unknown code '{sys}#{code}'"));
                return;
            }
        }
        if any_in {
            return;
        }
        if let Some(why) = unknown {
            if is_external_system(&why) || why.starts_with("http") {
                self.note_system(&why);
            }
            return;
        }
        let shown: Vec<String> = bad
            .iter()
            .map(|(s, c)| match s {
                Some(s) => format!("{s}#{c}"),
                None => c.to_string(),
            })
            .collect();
        let msg = format!("The code(s) {} are not in the value set '{vs}'", shown.join(", "));
        match strength {
            BindingStrength::Required => {
                // A bare `code` takes its system from the value set; a code in none of its systems has none,
                // which the HL7 validator reports as an error of its own.
                if ty == "code" {
                    self.report_rule(
                        Severity::Error,
                        IssueCode::CodeInvalid,
                        format!(
                            "The System URI could not be determined for the code '{}' in the ValueSet '{vs}'",
                            shown.join(", ")
                        ),
                        rule.clone(),
                    );
                }
                self.report_rule(Severity::Error, IssueCode::CodeInvalid, msg, rule)
            }
            BindingStrength::Extensible => {
                if ty != "code" {
                    self.report_rule(Severity::Warning, IssueCode::CodeInvalid, msg, rule)
                }
            }
            BindingStrength::Preferred => self.report_rule(Severity::Information, IssueCode::CodeInvalid, msg, rule),
            BindingStrength::Example => {}
        }
    }

    fn note_system(&mut self, system: &str) {
        if self.reported_systems.insert(system.to_string()) {
            let p = std::mem::take(&mut self.path);
            self.path = self
                .resources
                .first()
                .and_then(|r| r.get("resourceType"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            self.info(
                IssueCode::Informational,
                format!(
                    "Codes from {system} cannot be checked locally (no terminology server); they were not validated"
                ),
            );
            self.path = p;
        }
    }

    /// The number of entries of `resources[0]` that `reference` names, and the resource of `resources[0]` it
    /// resolves to.
    fn ref_target(&mut self, reference: &'v str) -> (usize, Option<&'v Value>) {
        let Some(root) = self.resources.first().copied() else { return (0, None) };
        if let Some(&t) = self.ref_targets.get(reference) {
            return t;
        }
        let t = (bundle_matches(root, reference).len(), self.v.resolve_in(Some(root), reference));
        self.ref_targets.insert(reference, t);
        t
    }

    fn reference(&mut self, c: &Elem, r: &'v Value) {
        let Some(reference) = field(r, "reference").and_then(Value::as_str) else { return };
        if reference.contains(char::is_whitespace) {
            self.err(IssueCode::Structure, format!("The reference '{reference}' is not a valid reference"));
        }
        if let Some(id) = reference.strip_prefix('#') {
            let found = self.resources.iter().rev().any(|res| {
                res.get("contained")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| cs.iter().any(|x| x.get("id").and_then(Value::as_str) == Some(id)))
            });
            if !found && !id.is_empty() {
                self.err(
                    IssueCode::NotFound,
                    format!("The reference '{reference}' refers to a contained resource that does not exist"),
                );
            }
            return;
        }
        if let Some(root) = self.resources.first().copied() {
            self.reference_resolves(root, reference);
            self.aggregation(c, root, reference);
        }
        let targets: Vec<&str> = c
            .types
            .iter()
            .filter(|t| t.code == "Reference")
            .flat_map(|t| t.target_profiles.iter())
            .filter_map(|p| self.v.sd(p.as_str()).map(|s| s.type_name.as_str()))
            .collect();
        // type implied by the URL, or by the resolved Bundle entry
        let mut rtype: Option<String> = None;
        if let Some(t) = self.ref_target(reference).1.and_then(|x| x.get("resourceType")).and_then(Value::as_str) {
            rtype = Some(t.to_string());
        } else if !reference.starts_with("urn:") {
            let parts: Vec<&str> = reference.split('/').collect();
            let n = parts.len();
            let t = if n >= 4 && parts[n - 2] == "_history" {
                parts.get(n - 4)
            } else if n >= 2 {
                parts.get(n - 2)
            } else {
                None
            };
            if let Some(t) = t
                && t.starts_with(|c: char| c.is_ascii_uppercase())
            {
                if self.v.is_resource_type(t) {
                    rtype = Some(t.to_string());
                } else {
                    self.err(
                        IssueCode::Structure,
                        format!("Unknown resource type '{t}' in the reference '{reference}'"),
                    );
                    return;
                }
            }
        }
        if let Some(declared) = field(r, "type").and_then(Value::as_str)
            && let Some(rt) = &rtype
            && rt != declared
        {
            self.err(
                IssueCode::Structure,
                format!("The type '{declared}' does not match the type of the reference '{reference}' ({rt})"),
            );
        }
        if self.v.options.check_target_profiles && !self.in_target_check {
            self.target_profiles(c, reference);
        }
        if let Some(rt) = rtype
            && !targets.is_empty()
            && !targets
                .iter()
                .any(|t| *t == rt || *t == "Resource" || *t == "DomainResource" || self.v.is_subtype_name(&rt, t))
        {
            self.err(
                    IssueCode::Structure,
                    format!("The type '{rt}' implied by the reference URL {reference} is not a valid Target for this element (must be one of [{}])", targets.join(", ")),
                );
        }
    }

    /// A reference to a resource of the Bundle being validated, where the element names profiles (not just
    /// resource types) as targets: the resource must conform to one of them.
    fn target_profiles(&mut self, c: &Elem, reference: &'v str) {
        let Some(target) = self.ref_target(reference).1 else { return };
        let rt = target.get("resourceType").and_then(Value::as_str).unwrap_or("");
        let all: Vec<&str> = c
            .types
            .iter()
            .filter(|t| t.code == "Reference")
            .flat_map(|t| t.target_profiles.iter().map(String::as_str))
            .collect();
        let unknown: Vec<&str> = all.iter().copied().filter(|p| !self.v.knows_profile(p)).collect();
        for p in &unknown {
            let msg = format!("Unable to resolve the profile reference '{p}'");
            self.report_rule(Severity::Error, IssueCode::NotFound, msg, Rule::Profile { url: p.to_string() });
        }
        if !all.is_empty() && unknown.len() == all.len() {
            self.err(
                IssueCode::Structure,
                format!("Invalid Resource target type. Found {rt}, but expected one of ([])"),
            );
            return;
        }
        let profiles: Vec<&str> = all
            .into_iter()
            .filter(|p| {
                self.v.sd(&crate::defs::canonical_base(p)).is_some_and(|sd| {
                    sd.type_name == rt && self.v.core_type(rt).is_none_or(|base| !std::ptr::eq(base, sd))
                })
            })
            .collect();
        if profiles.is_empty() {
            return;
        }
        let conforms = |p: &str| {
            let mut sub = Walk::new(self.v);
            sub.unknown_claims = self.unknown_claims;
            sub.path = rt.to_string();
            sub.resources = self.resources.clone();
            sub.contained = self.contained.clone();
            sub.in_target_check = true;
            sub.resource(target, &[p]);
            !sub.issues.iter().any(Issue::is_error)
        };
        if !profiles.iter().any(|p| conforms(p)) {
            self.report_rule(
                Severity::Error,
                IssueCode::Structure,
                format!(
                    "The resource '{reference}' does not conform to any of the target profiles {}",
                    profiles.join(", ")
                ),
                Rule::Profile { url: profiles[0].to_string() },
            );
        }
    }

    /// A profile may require a reference to be to a contained resource or to a resource of the same Bundle
    /// (`aggregation` without `referenced`). References to contained resources (`#id`) are checked before.
    fn aggregation(&mut self, c: &Elem, root: &'v Value, reference: &'v str) {
        let modes: Vec<&str> = c
            .types
            .iter()
            .filter(|t| t.code == "Reference")
            .flat_map(|t| t.aggregation.iter().map(String::as_str))
            .collect();
        if modes.is_empty() || modes.contains(&"referenced") {
            return;
        }
        let bundled = modes.contains(&"bundled")
            && root.get("resourceType").and_then(Value::as_str) == Some("Bundle")
            && self.ref_target(reference).1.is_some();
        if !bundled {
            self.err(
                IssueCode::Structure,
                format!("Bundled or contained reference not found within the bundle/resource {reference}"),
            );
        }
    }

    /// Reference resolution inside the resource being validated: a reference to a Bundle entry must name one
    /// entry, and (in `references_must_resolve` mode) a relative one must name a resource of the Bundle or
    /// Parameters.
    fn reference_resolves(&mut self, root: &'v Value, reference: &'v str) {
        let root_type = root.get("resourceType").and_then(Value::as_str);
        if root_type == Some("Bundle")
            && root.get("type").and_then(Value::as_str) != Some("history")
            && !reference.contains("/_history/")
            && self.ref_target(reference).0 > 1
        {
            self.err(IssueCode::NotFound, format!("Multiple matches in bundle for reference {reference}"));
        }
        let relative = !reference.contains(':') && reference.split('/').count() == 2;
        if self.v.options.references_must_resolve
            && relative
            && matches!(root_type, Some("Bundle" | "Parameters"))
            && self.ref_target(reference).1.is_none()
        {
            self.err(IssueCode::NotFound, format!("Unable to resolve resource with reference '{reference}'"));
        }
    }

    /// The entries of a document must include every resource its Composition's sections list.
    fn section_entries(&mut self, bundle: &'v Value, sections: &'v Value, path_len: usize) {
        for (i, section) in sections.as_array().into_iter().flatten().enumerate() {
            let _ = write!(self.path, ".section[{i}]");
            let len = self.path.len();
            for (j, entry) in section.get("entry").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let Some(reference) = entry.get("reference").and_then(Value::as_str).filter(|r| !r.starts_with('#'))
                else {
                    continue;
                };
                let _ = write!(self.path, ".entry[{j}]");
                match bundle_matches(bundle, reference).len() {
                    0 => {
                        self.err(IssueCode::NotFound, format!("Can't find '{reference}' in the bundle (Section Entry)"))
                    }
                    1 => {}
                    n => self.err(
                        IssueCode::NotFound,
                        format!("Found {n} matches for '{reference}' in the bundle (Section Entry)"),
                    ),
                }
                self.path.truncate(len);
            }
            if let Some(sub) = section.get("section") {
                self.section_entries(bundle, sub, len);
            }
            self.path.truncate(path_len);
        }
    }

    fn constraints(&mut self, elem: &Elem, node: Option<&'v Value>, companion: Option<&'v Value>, ty: &'v str) {
        for c in &elem.constraints {
            if let Some(f) = c.native {
                if !f(node.unwrap_or(&Value::Null), self.root_resource()) {
                    self.constraint_failed(c);
                }
                continue;
            }
            let Some(expr) = &c.expr else { continue };
            let root = self.root_resource();
            let cur = self.resources.last().copied();
            let env = Env {
                model: self.v,
                resource: cur.map(|r| Item::Node(Some(r), None, resource_type(r).unwrap_or(""))),
                root_resource: root.map(|r| Item::Node(Some(r), None, resource_type(r).unwrap_or(""))),
                context: Some(Item::Node(node, companion, ty)),
            };
            // A resource has the type its structure's root element names; the lookup is skipped for other nodes.
            let is_root = !elem.path.contains('.');
            let item_ty =
                if is_root && node.and_then(|n| n.get("resourceType")).is_some() { elem.path.as_str() } else { ty };
            let item = Item::Node(node, companion, item_ty);
            match fhirpath::check(expr, item, &env) {
                Ok(true) => {}
                Ok(false) => self.constraint_failed(c),
                Err(e) => {
                    let msg = format!("Constraint {} could not be evaluated: {e}", c.key);
                    let rule = Rule::ConstraintNotEvaluated { key: c.key.clone(), error: e.to_string() };
                    self.report_rule(Severity::Information, IssueCode::Informational, msg, rule);
                }
            }
        }
    }

    fn constraint_failed(&mut self, constraint: &Constraint) {
        let msg = format!("Constraint failed: {}: '{}'", constraint.key, constraint.human);
        let severity = if constraint.error { Severity::Error } else { Severity::Warning };
        let rule = Rule::Constraint { key: constraint.key.clone(), human: constraint.human.clone() };
        self.report_rule(severity, IssueCode::Invariant, msg, rule);
    }

    /// A slice with fewer than its minimum of items.
    fn missing_slice(&mut self, sliced: &Elem, slice: &Elem, found: u32) {
        let msg = format!(
            "Slice '{}:{}': a matching slice is required, but not found (minimum required = {}, found {found})",
            sliced.path,
            slice.slice_name.as_deref().unwrap_or(""),
            slice.min
        );
        self.report_rule(Severity::Error, IssueCode::Required, msg, slice_rule(sliced, slice, found));
    }

    fn bundle_rules(&mut self, b: &'v Value) {
        let base_len = self.path.len();
        // paging links name one page each
        let mut relations = HashSet::new();
        for (i, link) in b.get("link").and_then(Value::as_array).into_iter().flatten().enumerate() {
            if let Some(rel) = link.get("relation").and_then(Value::as_str)
                && matches!(rel, "self" | "first" | "previous" | "prev" | "next" | "last")
                && !relations.insert(rel)
            {
                let _ = write!(self.path, ".link[{i}]");
                self.err(IssueCode::Invalid, format!("The link relationship type '{rel}' can only occur once"));
                self.path.truncate(base_len);
            }
        }
        let Some(entries) = b.get("entry").and_then(Value::as_array) else { return };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let Some(full) = e.get("fullUrl").and_then(Value::as_str) else { continue };
            if !full.contains(':') {
                let _ = write!(self.path, ".entry[{i}]");
                self.err(IssueCode::Invalid, format!("The fullUrl must be an absolute URL (not '{full}')"));
                self.path.truncate(base_len);
            }
            let version =
                e.get("resource").and_then(|r| r.get("meta")).and_then(|m| m.get("versionId")).and_then(Value::as_str);
            let key = format!("{full}|{}", version.unwrap_or(""));
            if let Some(first) = seen.insert(key, i) {
                let _ = write!(self.path, ".entry[{i}]");
                self.err(IssueCode::Duplicate, format!("Duplicate fullUrl '{full}' (also used by entry[{first}])"));
                self.path.truncate(base_len);
            }
            if let (Some(id), Some(rt)) = (
                e.get("resource").and_then(|r| r.get("id")).and_then(Value::as_str),
                e.get("resource").and_then(|r| r.get("resourceType")).and_then(Value::as_str),
            ) && full.starts_with("http")
                && !full.ends_with(&format!("/{rt}/{id}"))
                && !full.contains("/_history/")
            {
                let _ = write!(self.path, ".entry[{i}]");
                self.err(
                    IssueCode::Invalid,
                    format!("The fullUrl '{full}' does not match the resource id '{rt}/{id}'"),
                );
                self.path.truncate(base_len);
            }
        }
        let btype = b.get("type").and_then(Value::as_str).unwrap_or("");
        if btype == "document" || btype == "message" {
            let first_rt = entries
                .first()
                .and_then(|e| e.get("resource"))
                .and_then(|r| r.get("resourceType"))
                .and_then(Value::as_str);
            let want = if btype == "document" { "Composition" } else { "MessageHeader" };
            if first_rt != Some(want) {
                let _ = write!(self.path, ".entry[0]");
                self.err(IssueCode::Invalid, format!("The first entry of a {btype} Bundle must be a {want}"));
                self.path.truncate(base_len);
            } else if let Some(sections) = entries[0].get("resource").and_then(|c| c.get("section"))
                && btype == "document"
            {
                let _ = write!(self.path, ".entry[0].resource");
                let len = self.path.len();
                self.section_entries(b, sections, len);
                self.path.truncate(base_len);
            }
        }
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

/// A coding's (system, code, display).
type Coded<'a> = (Option<&'a str>, &'a str, Option<&'a str>);

/// The (system, code, display) of each coding of a coded value; `None` when the type is not coded or the value
/// has no code.
fn codings_of<'a>(val: &'a Value, ty: &str) -> Option<Vec<Coded<'a>>> {
    let str_of = |v: &'a Value, key: &str| field(v, key).and_then(Value::as_str);
    Some(match ty {
        "code" | "string" | "uri" => vec![(None, val.as_str()?, None)],
        "Coding" => vec![(str_of(val, "system"), str_of(val, "code")?, str_of(val, "display"))],
        "CodeableConcept" => val
            .get("coding")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| Some((str_of(c, "system"), str_of(c, "code")?, str_of(c, "display"))))
            .collect(),
        "Quantity" | "Age" | "Duration" | "Distance" | "Count" => {
            vec![(str_of(val, "system"), str_of(val, "code")?, None)]
        }
        _ => return None,
    })
}

/// The entries of `bundle` a reference names: by fullUrl (equal, or ending with `/` + a relative reference),
/// and for a versioned reference (`Type/id/_history/v`) only the entry with that `meta.versionId`.
fn bundle_matches<'a>(bundle: &'a Value, reference: &str) -> Vec<&'a Value> {
    let (target, version) = match reference.split_once("/_history/") {
        Some((t, v)) => (t, Some(v)),
        None => (reference, None),
    };
    let relative = !target.contains(':');
    let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    entries
        .iter()
        .filter(|e| {
            let full = field(e, "fullUrl").and_then(Value::as_str).unwrap_or("");
            let url_matches =
                full == target || relative && full.strip_suffix(target).is_some_and(|base| base.ends_with('/'));
            // Called for every reference against every entry: the version is looked up only for a
            // versioned reference to this entry (a JSON pointer allocates per segment).
            url_matches && version.is_none_or(|v| e["resource"]["meta"]["versionId"].as_str() == Some(v))
        })
        .collect()
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

fn slice_rule(sliced: &Elem, slice: &Elem, found: u32) -> Rule {
    Rule::Slice {
        element: sliced.path.clone(),
        name: slice.slice_name.clone().unwrap_or_default(),
        min: slice.min,
        max: slice.max,
        found: found as usize,
    }
}

fn item_ty_of(sd: &Sd) -> &str {
    sd.type_name.as_str()
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

fn short_json(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.len() > 200 { format!("{}...", &s[..s.char_indices().nth(200).map(|x| x.0).unwrap_or(s.len())]) } else { s }
}

/// The differences between a value and a fixed value, as the HL7 validator reports them: one per property
/// of a complex value (a different value, a missing property, or a property the fixed value does not have).
fn fixed_mismatches(val: &Value, fixed: &Value, out: &mut Vec<String>) {
    match (val, fixed) {
        (Value::Object(v), Value::Object(f)) => {
            for (k, fv) in f {
                match v.get(k) {
                    Some(vv) => fixed_mismatches(vv, fv, out),
                    None => out.push(format!("Missing element '{k}' - required by fixed value assigned in profile")),
                }
            }
            for k in v.keys().filter(|k| !f.contains_key(*k)) {
                out.push(format!(
                    "The element {k} is present in the instance but not allowed in the applicable fixed value specified in profile"
                ));
            }
        }
        (Value::Array(v), Value::Array(f)) if v.len() == f.len() => {
            v.iter().zip(f).for_each(|(vv, fv)| fixed_mismatches(vv, fv, out));
        }
        _ if !json_equal(val, fixed) => {
            out.push(format!("Value is '{}' but must be '{}'", short_json(val), short_json(fixed)))
        }
        _ => {}
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

fn split_path(path: &str) -> Vec<&str> {
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
fn select<'a>(item: &'a Value, path: &str) -> Vec<(&'a Value, Option<&'a str>)> {
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

/// Native implementations of the core invariants evaluated on nearly every element or resource.
pub(crate) fn native_constraint(key: &str, expression: &str) -> Option<Native> {
    match (key, expression) {
        // On every Reference. A reference to `#id` names a contained resource of %rootResource.
        (
            "ref-1",
            "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))",
        ) => Some(|v, root| match field(v, "reference").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(id) => {
                root.is_some_and(|r| contained(r).iter().any(|c| c.get("id").and_then(Value::as_str) == Some(id)))
            }
            None => true,
        }),
        // On every narrative; `htmlChecks()` is not a FHIRPath function rex's engine knows.
        ("txt-1", "htmlChecks()") => {
            Some(|v, _| v.as_str().is_none_or(|div| primitives::illegal_xhtml_names(div).is_empty()))
        }
        // On every ElementDefinition. The HL7 validator matches the whole path, which `matches()` does not.
        ("eld-19", _) if expression.starts_with("path.matches(") => {
            Some(|v, _| v.get("path").and_then(Value::as_str).is_none_or(is_legal_element_path))
        }
        ("ext-1", "extension.exists() != value.exists()") => Some(|v, _| {
            let Some(o) = v.as_object() else { return true };
            let has_value = o.keys().any(|k| k.starts_with("value") && k.len() > 5);
            o.contains_key("extension") != has_value
        }),
        // R4 errata: the expression says `> 2`, the rule (and R5) say "more than one enableWhen".
        ("que-12", "enableWhen.count() > 2 implies enableBehavior.exists()") => Some(|v, _| {
            v.get("enableWhen").and_then(Value::as_array).is_none_or(|a| a.len() <= 1)
                || v.get("enableBehavior").is_some()
        }),
        ("dom-2", "contained.contained.empty()") => {
            Some(|v, _| contained(v).iter().all(|c| c.get("contained").is_none()))
        }
        ("dom-4", "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()") => Some(|v, _| {
            contained(v)
                .iter()
                .all(|c| c.get("meta").is_none_or(|m| m.get("versionId").is_none() && m.get("lastUpdated").is_none()))
        }),
        ("dom-5", "contained.meta.security.empty()") => {
            Some(|v, _| contained(v).iter().all(|c| c.get("meta").is_none_or(|m| m.get("security").is_none())))
        }
        ("dom-3", _) if expression.starts_with("contained.where((('#'+id in (%resource.descendants().reference") => {
            Some(|v, _| dom3(v))
        }
        _ => None,
    }
}

/// eld-19: the names in an element path have no special characters (a choice ends in `[x]`, a slice follows `:`).
fn is_legal_element_path(path: &str) -> bool {
    static PATH: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        let name = r#"[^\s.,:;'"/|?!@#$%&*()\[\]{}]{1,64}"#;
        regex::Regex::new(&format!(r"^{name}(\.{name}(\[x\])?(:[^\s.]+)?)*$")).expect("eld-19 pattern")
    });
    PATH.is_match(path)
}

/// A native invariant: the node, and `%rootResource`.
pub(crate) type Native = fn(&Value, Option<&Value>) -> bool;

fn contained(v: &Value) -> &[Value] {
    v.get("contained").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// dom-3: every contained resource is referenced from elsewhere in the resource (by `#id`), or refers to the
/// container (`#`).
fn dom3(v: &Value) -> bool {
    let cs = contained(v);
    if cs.is_empty() {
        return true;
    }
    let mut refs: HashSet<&str> = HashSet::new();
    fn collect<'a>(v: &'a Value, refs: &mut HashSet<&'a str>) {
        match v {
            Value::Object(o) => {
                for x in o.values() {
                    if let Value::String(s) = x {
                        if s.starts_with('#') {
                            refs.insert(s.as_str());
                        }
                    } else {
                        collect(x, refs);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, refs)),
            _ => {}
        }
    }
    collect(v, &mut refs);
    let self_ref = refs.contains("#");
    cs.iter().all(|c| {
        let id = c.get("id").and_then(Value::as_str).unwrap_or("");
        self_ref || refs.iter().any(|r| &r[1..] == id)
    })
}
