//! Profile validation for rex: FHIR R4 StructureDefinition-driven validation.
//!
//! Build a [`Definitions`] once (the embedded base spec plus `profiles/` and extra packages), turn it
//! into a [`Validator`] (snapshots generated, element trees and FHIRPath invariants compiled) and share
//! that behind an `Arc`. [`Validator::validate`] is synchronous and CPU-bound: call it from
//! `tokio::task::spawn_blocking` for large Bundles.
//!
//! ```no_run
//! use rex_validation::{Definitions, Validator};
//! let mut defs = Definitions::r4_core().unwrap();
//! defs.add_folder(std::path::Path::new("profiles")).unwrap();
//! let validator = Validator::new(defs);
//! let issues = validator.validate(&serde_json::json!({"resourceType": "Patient"}), &[]);
//! assert!(issues.iter().all(|i| !i.is_error()));
//! ```

mod defs;
pub mod fhirpath;
mod model;
mod native;
mod primitives;
mod questionnaire;
mod snapshot;
mod structure;
mod terminology;
mod ucum;
mod validate;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use rex_fhir::{Issue, IssueCode, Rule, Severity};
use serde_json::Value;

pub use defs::{Definitions, pack_folder, pack_ips};
use model::{CompiledStructure, Kind};

/// Failure to load definitions.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("cannot load definitions: {0}")]
    Load(String),
}

/// Behaviour switches; the defaults are what rex enforces on writes.
#[derive(Debug, Clone)]
pub struct Options {
    /// A `meta.profile` (or requested profile) that is not loaded is an error (default) or a warning.
    pub unknown_profile_is_error: bool,
    /// Extensions whose definition is unknown are errors (default: warning; unknown modifierExtension is
    /// always an error).
    pub unknown_extension_is_error: bool,
    /// Example URLs (example.org, example.com) are accepted in uri/url/canonical values and extension urls
    /// (default). When false they are errors, as in the HL7 validator's "no examples" mode.
    pub allow_example_urls: bool,
    /// Contained resources are validated, and each must be referenced (dom-3) (default). When false they
    /// are skipped, as in the HL7 validator's `validateContains = IGNORE` mode.
    pub validate_contained: bool,
    /// Markdown that looks like it embeds an HTML tag (`<tag`) is an error (default: accepted), as in the
    /// HL7 validator's `noHtmlInMarkdown` mode.
    pub no_html_in_markdown: bool,
    /// A relative reference (`Patient/1`) inside a Bundle or Parameters must resolve to one of its resources
    /// (default: not checked), as in the HL7 validator's `validateReference = CHECK_EXISTS` mode.
    pub references_must_resolve: bool,
    /// A reference to a resource of the Bundle being validated is checked against the element's
    /// `targetProfile`s: the resource must conform to one of them, and an unknown target profile is an error
    /// (default: not checked; each such reference costs a validation of its target), as the HL7 validator does.
    pub check_target_profiles: bool,
    /// The profiles that loaded ImplementationGuides declare `global` apply to every resource of their type
    /// (default: not applied), as the HL7 validator does.
    pub apply_global_profiles: bool,
    /// An Observation whose code is a vital sign (LOINC or SNOMED CT) is also checked against the core vital
    /// signs profile for it, which R4 requires (default: not checked), as the HL7 validator does.
    pub imply_vital_signs_profiles: bool,
    /// Constraint keys never evaluated (known-bad expressions in R4 core).
    pub skip_constraints: HashSet<&'static str>,
    /// Canonical URL prefixes of guides loaded whole (rex's own profiles, IPS): a profile claimed under one
    /// of them that is not loaded is a misspelt or retired profile, an error whatever the claim policy.
    pub complete_namespaces: Vec<String>,
}

impl Options {
    /// The claim policy [`Validator::validate`] applies: `unknown_profile_is_error` as a policy.
    fn unknown_claims(&self) -> UnknownProfiles {
        if self.unknown_profile_is_error { UnknownProfiles::Reject } else { UnknownProfiles::Warn }
    }

    /// Whether the constraint `key` is never evaluated: decided once, when a structure is compiled.
    fn skips(&self, key: &str) -> bool {
        self.skip_constraints.contains(key) || key == "dom-3" && !self.validate_contained
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            unknown_profile_is_error: true,
            unknown_extension_is_error: false,
            allow_example_urls: true,
            validate_contained: true,
            no_html_in_markdown: false,
            references_must_resolve: false,
            check_target_profiles: false,
            apply_global_profiles: false,
            imply_vital_signs_profiles: false,
            // Known issues with R4 core invariants (the HL7 validator suppresses these too). opd-3 is checked
            // with its R5 correction instead (`structure.rs`).
            skip_constraints: ["ele-1", "dom-6", "txt-2", "que-7", "sdf-0", "bdl-10", "eld-20", "opd-3"]
                .into_iter()
                .collect(),
            complete_namespaces: Vec::new(),
        }
    }
}

/// What a profile claimed in `meta.profile` that the validator does not know does to a resource: a warning
/// (the resource is checked against the base specification and the profiles the validator knows; the
/// default, as in the HL7 validator and HAPI) or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownProfiles {
    #[default]
    Warn,
    Reject,
}

impl UnknownProfiles {
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownProfiles::Warn => "warn",
            UnknownProfiles::Reject => "reject",
        }
    }

    fn severity(self) -> Severity {
        match self {
            UnknownProfiles::Warn => Severity::Warning,
            UnknownProfiles::Reject => Severity::Error,
        }
    }
}

impl std::str::FromStr for UnknownProfiles {
    type Err = String;
    fn from_str(text: &str) -> Result<UnknownProfiles, String> {
        match text {
            "warn" => Ok(UnknownProfiles::Warn),
            "reject" => Ok(UnknownProfiles::Reject),
            other => Err(format!("unknown_profiles must be warn or reject, not {other:?}")),
        }
    }
}

impl std::fmt::Display for UnknownProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The issue text for an unknown profile claim (its rule is [`Rule::UnknownProfileClaim`]).
fn unknown_claim_message(profile: &str, policy: UnknownProfiles) -> String {
    let what = match policy {
        UnknownProfiles::Warn => {
            "the resource was checked only against the base specification and the profiles rex knows \
             (its guide can be loaded with --package)"
        }
        UnknownProfiles::Reject => {
            "resources claiming profiles rex does not know are refused (unknown_profiles = reject)"
        }
    };
    format!("Profile reference '{profile}' is not known to rex: {what}")
}

/// The profile an issue reports as claimed in `meta.profile` but not known (`None` for any other issue).
pub fn unknown_profile_claim(issue: &Issue) -> Option<&str> {
    match issue.rule.as_deref() {
        Some(Rule::UnknownProfileClaim { url }) => Some(url),
        _ => None,
    }
}

/// A ready validator: compiled definitions plus terminology. `Send + Sync`; build once, share via `Arc`.
pub struct Validator {
    structures: Vec<Structure>,
    /// Index in `structures` by canonical URL.
    sds: FxMap<String, usize>,
    /// Index in `structures` of the base definition of each core type, by type name.
    types: FxMap<String, usize>,
    /// Parsed FHIRPath expressions shared by all structures, including those compiled later.
    exprs: Mutex<model::ExprCache>,
    pub(crate) term: terminology::Terminology,
    /// Questionnaires by canonical URL (without version), for QuestionnaireResponse validation.
    pub(crate) questionnaires: FxMap<String, Value>,
    pub(crate) options: Options,
    /// `ImplementationGuide.global` of the loaded guides: (resource type, profile).
    pub(crate) global_profiles: Vec<(String, String)>,
    load_messages: Vec<String>,
}

/// A StructureDefinition known to the validator. Those of the core package are compiled when first used
/// (a referral touches a few dozen of the 655), the others when the validator is built.
struct Structure {
    type_name: String,
    kind: Kind,
    core: Option<defs::CoreText>,
    sd: OnceLock<CompiledStructure>,
}

impl Validator {
    /// Generates missing snapshots and compiles every StructureDefinition of `definitions` (those of
    /// the core package when first used).
    pub fn new(definitions: Definitions) -> Validator {
        Validator::with_options(definitions, Options::default())
    }

    /// As [`Validator::new`], with explicit [`Options`].
    pub fn with_options(definitions: Definitions, options: Options) -> Validator {
        let (snapshots, load_messages) = snapshot::generate_all(&definitions);
        let mut cache = model::ExprCache::new();
        let mut structures = Vec::new();
        let mut sds = FxMap::default();
        let mut types = FxMap::default();
        for url in &definitions.order {
            let Some(entry) = definitions.structures.get(url) else { continue };
            let (structure, derivation) = match (entry.lazy_core(), snapshots.get(url)) {
                (Some((core, header)), _) => {
                    let type_name = header.type_name.clone().unwrap_or_default();
                    let kind = model::kind(header.kind.as_deref());
                    let sd = OnceLock::new();
                    (Structure { type_name, kind, core: Some(core.clone()), sd }, header.derivation.as_deref())
                }
                (None, Some(snap)) => {
                    let raw = entry.value();
                    let sd = model::compile(raw, snap, &mut cache, &options);
                    let (type_name, kind) = (sd.type_name.clone(), sd.kind);
                    (Structure { type_name, kind, core: None, sd: OnceLock::from(sd) }, defs::s(raw, "derivation"))
                }
                (None, None) => continue,
            };
            if url.starts_with("http://hl7.org/fhir/StructureDefinition/")
                && (derivation != Some("constraint")
                    || structure.type_name == "Extension" && url.ends_with("/Extension"))
            {
                types.insert(structure.type_name.clone(), structures.len());
            }
            sds.insert(url.clone(), structures.len());
            structures.push(structure);
        }
        // Base datatypes are named by their id in core (e.g. SimpleQuantity, MoneyQuantity are profiles).
        for name in ["SimpleQuantity", "MoneyQuantity"] {
            if let Some(&i) = sds.get(&format!("http://hl7.org/fhir/StructureDefinition/{name}")) {
                types.insert(name.to_string(), i);
            }
        }
        let term = terminology::Terminology::new(definitions.value_sets, definitions.code_systems);
        let questionnaires = definitions.questionnaires.into_iter().collect();
        let global_profiles = definitions.global_profiles;
        Validator {
            structures,
            sds,
            types,
            exprs: Mutex::new(cache),
            term,
            questionnaires,
            options,
            global_profiles,
            load_messages,
        }
    }

    /// The compiled structure `i` of `structures`, compiled now if it is a core one not used before.
    fn compiled(&self, i: usize) -> &CompiledStructure {
        let structure = &self.structures[i];
        structure.sd.get_or_init(|| {
            let raw = structure.core.as_ref().map(defs::CoreText::parse).unwrap_or_default();
            let snapshot = raw.pointer("/snapshot/element").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            let mut cache = self.exprs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            model::compile(&raw, snapshot, &mut cache, &self.options)
        })
    }

    /// The StructureDefinition with this canonical URL (without version).
    pub(crate) fn sd(&self, url: &str) -> Option<&CompiledStructure> {
        self.sds.get(url).map(|&i| self.compiled(i))
    }

    /// Problems met while generating snapshots (profiles that could not be fully processed).
    pub fn load_messages(&self) -> &[String] {
        &self.load_messages
    }

    /// The resource or data type a known profile constrains (`Patient` for a Patient profile).
    pub fn profile_type(&self, url: &str) -> Option<&str> {
        self.sds.get(defs::canonical_base(url).as_str()).map(|&i| self.structures[i].type_name.as_str())
    }

    /// Whether a profile (StructureDefinition canonical URL) is known.
    pub fn knows_profile(&self, url: &str) -> bool {
        self.sds.contains_key(defs::canonical_base(url).as_str())
    }

    /// Validates a resource against its base definition, every profile in `meta.profile`, and `profiles`.
    ///
    /// Returns every issue found (errors, warnings, information), in a deterministic order (document
    /// order, then profile order), with `expression` rooted at the resource type
    /// (e.g. `Bundle.entry[3].resource.subject`). Never panics on arbitrary JSON.
    pub fn validate(&self, resource: &Value, profiles: &[&str]) -> Vec<Issue> {
        self.validate_with(resource, profiles, self.options.unknown_claims())
    }

    /// As [`Validator::validate`], with the policy for profiles claimed in `meta.profile` that are not known
    /// (profiles in `profiles` that are not known follow [`Options::unknown_profile_is_error`]).
    pub fn validate_with(&self, resource: &Value, profiles: &[&str], unknown_claims: UnknownProfiles) -> Vec<Issue> {
        let mut w = validate::Walk::new(self);
        w.unknown_claims = unknown_claims;
        // The issues are deduplicated below, so a resource validated twice against a structure is validated once.
        w.validated = Some(FxSet::default());
        let rt = resource.get("resourceType").and_then(Value::as_str);
        w.path = rt.unwrap_or("Resource").to_string();
        if !resource.is_object() {
            return vec![Issue::error(IssueCode::Structure, "A resource must be a JSON object").at("Resource")];
        }
        if rt.is_none() {
            return vec![Issue::error(IssueCode::Structure, "Unable to find resourceType property").at("Resource")];
        }
        w.resource(resource, profiles);
        let mut seen = HashSet::new();
        let mut out: Vec<Issue> = w
            .issues
            .into_iter()
            .filter(|i| seen.insert((i.severity as u8, i.expression.clone(), i.diagnostics.clone())))
            .collect();
        // errors are reported in document order; keep the order but make it stable across runs
        out.sort_by_key(|i| match i.severity {
            Severity::Fatal | Severity::Error => 0,
            Severity::Warning => 1,
            Severity::Information => 2,
        });
        out
    }

    pub(crate) fn core_type(&self, name: &str) -> Option<&CompiledStructure> {
        self.types.get(name).map(|&i| self.compiled(i))
    }

    pub(crate) fn is_resource_type(&self, name: &str) -> bool {
        self.types.get(name).is_some_and(|&i| self.structures[i].kind == Kind::Resource)
    }

    pub(crate) fn is_subtype_name(&self, ty: &str, base: &str) -> bool {
        let mut cur = self.core_type(ty);
        let mut guard = 0;
        while let Some(sd) = cur {
            if sd.type_name == base || sd.name == base {
                return true;
            }
            guard += 1;
            if guard > 10 {
                return false;
            }
            cur = sd.base.as_deref().and_then(|b| self.sd(b));
        }
        false
    }

    /// Resolves a reference inside a Bundle (fullUrl, `Type/id`) or among contained resources.
    pub(crate) fn resolve_in<'a>(&self, root: Option<&'a Value>, reference: &str) -> Option<&'a Value> {
        let root = root?;
        if let Some(id) = reference.strip_prefix('#') {
            return root.get("contained")?.as_array()?.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(id));
        }
        let (ref_type, ref_id) = reference.split_once('/').unwrap_or(("", ""));
        if defs::field(root, "resourceType").and_then(Value::as_str) == Some("Parameters") {
            return parameter_resource(root.get("parameter")?, ref_type, ref_id);
        }
        // Called for every reference of a Bundle, so for every entry: no allocation, and field lookups by
        // scanning the few keys of an entry (cheaper than hashing them).
        let entries = root.get("entry")?.as_array()?;
        for e in entries {
            let full = defs::field(e, "fullUrl").and_then(Value::as_str);
            let resource = defs::field(e, "resource");
            if full == Some(reference) {
                return resource;
            }
            let Some(r) = resource else { continue };
            if full.and_then(|f| f.strip_suffix(reference)).is_some_and(|f| f.ends_with('/')) {
                return Some(r);
            }
            if !ref_id.is_empty()
                && defs::field(r, "id").and_then(Value::as_str) == Some(ref_id)
                && defs::field(r, "resourceType").and_then(Value::as_str).unwrap_or("") == ref_type
            {
                return Some(r);
            }
        }
        None
    }
}

/// The resource `ref_type/ref_id` among `Parameters.parameter` (a JSON array), at any depth of `part`.
fn parameter_resource<'a>(params: &'a Value, ref_type: &str, ref_id: &str) -> Option<&'a Value> {
    params.as_array()?.iter().find_map(|p| {
        p.get("resource")
            .filter(|r| {
                r.get("resourceType").and_then(Value::as_str) == Some(ref_type)
                    && r.get("id").and_then(Value::as_str) == Some(ref_id)
            })
            .or_else(|| parameter_resource(p.get("part")?, ref_type, ref_id))
    })
}

/// Type code for a choice suffix when the element declares no types.
pub(crate) fn fhirpath_type(suffix: &str) -> &'static str {
    fhirpath::choice_type_pub(suffix)
}

thread_local! {
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl fhirpath::Model for Validator {
    fn child_type<'m>(&'m self, parent: &str, name: &str) -> Option<(&'m str, bool)> {
        if parent.is_empty() {
            return None;
        }
        let root = parent.split('.').next()?;
        let sd = self.core_type(root)?;
        let elem = KEY.with(|k| {
            let mut k = k.borrow_mut();
            k.clear();
            k.push_str(parent);
            k.push('.');
            k.push_str(name);
            if let Some(&i) = sd.by_path.get(k.as_str()) {
                return Some(i);
            }
            k.push_str("[x]");
            sd.by_path.get(k.as_str()).copied()
        })?;
        let e = &sd.elems[elem];
        if e.choice {
            return Some(("", true));
        }
        if let Some(cr) = &e.content_ref {
            return Some((cr.as_str(), false));
        }
        let code = e.types.first().map(|t| t.code.as_str()).unwrap_or("");
        if (code == "BackboneElement" || code == "Element") && !e.children.is_empty() {
            return Some((e.path.as_str(), false));
        }
        Some((code, false))
    }

    fn is_subtype(&self, ty: &str, base: &str) -> bool {
        self.is_subtype_name(ty, base)
    }

    fn is_resource_type(&self, name: &str) -> bool {
        Validator::is_resource_type(self, name)
    }

    fn conforms_to(&self, value: &Value, profile: &str) -> Option<bool> {
        if !self.knows_profile(profile) {
            return None;
        }
        Some(!self.validate(value, &[profile]).iter().any(Issue::is_error))
    }

    fn member_of(&self, system: &str, code: &str, value_set: &str) -> Option<bool> {
        let sys = if system.is_empty() { None } else { Some(system) };
        match self.term.member(&defs::canonical_base(value_set), sys, code) {
            terminology::Membership::In => Some(true),
            terminology::Membership::NotIn => Some(false),
            terminology::Membership::Unknown(_) => None,
        }
    }

    fn resolve<'v>(&self, root: &'v Value, reference: &str) -> Option<&'v Value> {
        self.resolve_in(Some(root), reference)
    }
}

/// A small, fast, non-cryptographic hasher (FxHash) for the read-mostly lookup tables.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
        self.0 = h;
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;
pub(crate) type FxSet<T> = HashSet<T, std::hash::BuildHasherDefault<FxHasher>>;
