//! References: contained targets, resolution in the Bundle or Parameters, target types and target profiles,
//! aggregation.

use rex_fhir::{Issue, IssueCode, Rule, Severity};
use serde_json::Value;

use super::Walk;
use crate::defs::field;
use crate::model::Elem;

impl<'v> Walk<'v> {
    /// The number of entries of `resources[0]` that `reference` names, and the resource of `resources[0]` it
    /// resolves to.
    pub(super) fn ref_target(&mut self, reference: &'v str) -> (usize, Option<&'v Value>) {
        let Some(root) = self.resources.first().copied() else { return (0, None) };
        if let Some(&t) = self.ref_targets.get(reference) {
            return t;
        }
        let t = (bundle_matches(root, reference).len(), self.v.resolve_in(Some(root), reference));
        self.ref_targets.insert(reference, t);
        t
    }

    pub(super) fn reference(&mut self, c: &Elem, r: &'v Value) {
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
    pub(super) fn target_profiles(&mut self, c: &Elem, reference: &'v str) {
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
    pub(super) fn aggregation(&mut self, c: &Elem, root: &'v Value, reference: &'v str) {
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
    pub(super) fn reference_resolves(&mut self, root: &'v Value, reference: &'v str) {
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
}

/// The entries of `bundle` a reference names: by fullUrl (equal, or ending with `/` + a relative reference),
/// and for a versioned reference (`Type/id/_history/v`) only the entry with that `meta.versionId`.
pub(super) fn bundle_matches<'a>(bundle: &'a Value, reference: &str) -> Vec<&'a Value> {
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
