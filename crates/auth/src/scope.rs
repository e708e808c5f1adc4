//! SMART on FHIR system scopes, v1 (`system/Patient.read`, `system/*.write`, `system/Task.*`) and
//! v2 (`system/ServiceRequest.c`, `system/Task.rs`, `system/*.cruds`).
//!
//! v1 permissions map onto v2 as the SMART v2 specification does: `read` = `rs`, `write` = `cud`,
//! `*` = `cruds`. Only the `system/` context exists for backend services; `patient/`, `user/`,
//! `launch`, `openid` and v2 query-parameter scopes (`?category=...`) are not supported.

use std::fmt;
use std::str::FromStr;

use crate::encoding::shorten;

/// A FHIR REST interaction, as far as scopes are concerned. Map the server's interactions onto
/// these: read and vread (and instance history) are `Read`; search, type and system history,
/// `_include`/`_revinclude` targets are `Search`; create (including conditional) is `Create`;
/// update and patch are `Update`; delete is `Delete`. A transaction checks each entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    fn bit(self) -> u8 {
        match self {
            Interaction::Create => 1,
            Interaction::Read => 2,
            Interaction::Update => 4,
            Interaction::Delete => 8,
            Interaction::Search => 16,
        }
    }
}

/// A subset of the v2 permissions `c r u d s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const NONE: Permissions = Permissions(0);
    pub const ALL: Permissions = Permissions(31);
    const LETTERS: [(char, Interaction); 5] = [
        ('c', Interaction::Create),
        ('r', Interaction::Read),
        ('u', Interaction::Update),
        ('d', Interaction::Delete),
        ('s', Interaction::Search),
    ];

    pub fn of(interactions: &[Interaction]) -> Permissions {
        Permissions(interactions.iter().fold(0, |acc, i| acc | i.bit()))
    }

    pub fn contains(self, interaction: Interaction) -> bool {
        self.0 & interaction.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersection(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// The v2 letters, in the canonical `cruds` order.
    pub fn letters(self) -> String {
        Self::LETTERS.iter().filter(|(_, i)| self.contains(*i)).map(|(c, _)| *c).collect()
    }

    /// Parses v2 letters: a non-empty subset of `cruds`, in that order, each at most once.
    fn parse_v2(text: &str) -> Option<Permissions> {
        let mut position = 0;
        let mut bits = 0;
        for ch in text.chars() {
            let offset = Self::LETTERS[position..].iter().position(|(c, _)| *c == ch)?;
            bits |= Self::LETTERS[position + offset].1.bit();
            position += offset + 1;
        }
        (bits != 0).then_some(Permissions(bits))
    }
}

/// The resource types a scope covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResourceScope {
    /// `*`
    Any,
    Type(String),
}

impl ResourceScope {
    pub fn matches(&self, resource_type: &str) -> bool {
        match self {
            ResourceScope::Any => true,
            ResourceScope::Type(t) => t == resource_type,
        }
    }

    fn intersection(&self, other: &ResourceScope) -> Option<ResourceScope> {
        match (self, other) {
            (ResourceScope::Any, x) | (x, ResourceScope::Any) => Some(x.clone()),
            (ResourceScope::Type(a), ResourceScope::Type(b)) => (a == b).then(|| self.clone()),
        }
    }
}

/// Why a scope string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[error("scope {scope:?}: {reason}")]
pub struct ScopeError {
    pub scope: String,
    pub reason: &'static str,
}

/// One parsed system scope. Keeps its original text, so a granted scope is echoed in the
/// vocabulary (v1 or v2) the client asked in.
#[derive(Clone, Debug)]
pub struct Scope {
    pub resource: ResourceScope,
    pub permissions: Permissions,
    text: String,
}

impl PartialEq for Scope {
    /// Two scopes are equal when they grant the same thing (`system/Task.read` = `system/Task.rs`).
    fn eq(&self, other: &Scope) -> bool {
        self.resource == other.resource && self.permissions == other.permissions
    }
}
impl Eq for Scope {}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        let fail = |reason| ScopeError { scope: shorten(text), reason };
        if text.contains('?') {
            return Err(fail("v2 scopes with query parameters are not supported"));
        }
        let Some((context, rest)) = text.split_once('/') else {
            return Err(fail("expected system/<ResourceType|*>.<permissions>"));
        };
        if context != "system" {
            return Err(fail("only system/ scopes are supported (SMART Backend Services)"));
        }
        let Some((resource, permissions)) = rest.rsplit_once('.') else {
            return Err(fail("expected system/<ResourceType|*>.<permissions>"));
        };
        let resource = match resource {
            "*" => ResourceScope::Any,
            t if is_resource_type_name(t) => ResourceScope::Type(t.to_owned()),
            _ => return Err(fail("the resource type must be * or a FHIR resource type name such as ServiceRequest")),
        };
        let permissions = match permissions {
            "read" => Permissions::of(&[Interaction::Read, Interaction::Search]),
            "write" => Permissions::of(&[Interaction::Create, Interaction::Update, Interaction::Delete]),
            "*" => Permissions::ALL,
            letters => Permissions::parse_v2(letters).ok_or_else(|| {
                fail("permissions must be read, write, * (v1) or a non-empty subset of cruds in that order (v2)")
            })?,
        };
        Ok(Scope { resource, permissions, text: text.to_owned() })
    }

    /// A scope in canonical v2 form.
    pub fn new(resource: ResourceScope, permissions: Permissions) -> Scope {
        let name = match &resource {
            ResourceScope::Any => "*",
            ResourceScope::Type(t) => t.as_str(),
        };
        let text = format!("system/{name}.{}", permissions.letters());
        Scope { resource, permissions, text }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn allows(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.resource.matches(resource_type) && self.permissions.contains(interaction)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        Scope::parse(s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_resource_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric()) && name.len() <= 64
}

/// A set of scopes, as configured for a partner or carried by an access token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    pub fn new(scopes: Vec<Scope>) -> ScopeSet {
        let mut set = ScopeSet(Vec::new());
        for scope in scopes {
            set.push(scope);
        }
        set
    }

    fn push(&mut self, scope: Scope) {
        if !self.0.contains(&scope) {
            self.0.push(scope);
        }
    }

    /// Parses a space-separated scope string strictly: every scope must be valid.
    pub fn parse(text: &str) -> Result<ScopeSet, ScopeError> {
        text.split_ascii_whitespace().map(Scope::parse).collect::<Result<Vec<_>, _>>().map(ScopeSet::new)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any scope in the set allows `interaction` on `resource_type`.
    pub fn allows(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.0.iter().any(|s| s.allows(resource_type, interaction))
    }

    /// The scopes to grant for a space-separated request, given that `self` is what the client is
    /// allowed: each requested scope is intersected with the allowed ones (types and permissions).
    /// A requested scope granted in full is echoed as written; a partly granted one is returned in
    /// v2 form (`system/*.cruds` with only `system/Task.rs` allowed gives `system/Task.rs`).
    /// Scopes that do not parse or intersect nothing are dropped; an empty result means the
    /// request must fail with `invalid_scope`.
    pub fn grant(&self, requested: &str) -> ScopeSet {
        let mut granted = ScopeSet::default();
        for wanted in requested.split_ascii_whitespace().filter_map(|s| Scope::parse(s).ok()) {
            let mut per_resource: Vec<(ResourceScope, Permissions)> = Vec::new();
            for allowed in &self.0 {
                let Some(resource) = wanted.resource.intersection(&allowed.resource) else { continue };
                let permissions = wanted.permissions.intersection(allowed.permissions);
                if permissions.is_empty() {
                    continue;
                }
                match per_resource.iter_mut().find(|(r, _)| *r == resource) {
                    Some((_, p)) => *p = p.union(permissions),
                    None => per_resource.push((resource, permissions)),
                }
            }
            for (resource, permissions) in per_resource {
                if resource == wanted.resource && permissions == wanted.permissions {
                    granted.push(wanted.clone());
                } else {
                    granted.push(Scope::new(resource, permissions));
                }
            }
        }
        granted
    }
}

impl fmt::Display for ScopeSet {
    /// Space-separated, as in a token response's `scope`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Interaction::*;
    use super::*;

    #[test]
    fn parse_matrix() {
        let all = [Create, Read, Update, Delete, Search];
        let cases: &[(&str, &str, &[Interaction])] = &[
            ("system/Patient.read", "Patient", &[Read, Search]),
            ("system/Patient.write", "Patient", &[Create, Update, Delete]),
            ("system/Patient.*", "Patient", &all),
            ("system/*.read", "Observation", &[Read, Search]),
            ("system/*.write", "Task", &[Create, Update, Delete]),
            ("system/ServiceRequest.c", "ServiceRequest", &[Create]),
            ("system/Task.rs", "Task", &[Read, Search]),
            ("system/Task.ru", "Task", &[Read, Update]),
            ("system/*.cruds", "Binary", &all),
            ("system/Communication.cd", "Communication", &[Create, Delete]),
            ("system/Patient.s", "Patient", &[Search]),
        ];
        for (text, resource_type, expected) in cases {
            let scope = Scope::parse(text).unwrap();
            assert_eq!(scope.as_str(), *text);
            for interaction in all {
                assert_eq!(
                    scope.allows(resource_type, interaction),
                    expected.contains(&interaction),
                    "{text} {resource_type} {interaction:?}"
                );
            }
            if !text.contains("/*.") {
                assert!(!scope.allows("Other", Read) && !scope.allows("Other", Create), "{text} only its type");
            }
        }
    }

    #[test]
    fn v1_and_v2_equivalents_are_equal() {
        assert_eq!(Scope::parse("system/Task.read").unwrap(), Scope::parse("system/Task.rs").unwrap());
        assert_eq!(Scope::parse("system/Task.write").unwrap(), Scope::parse("system/Task.cud").unwrap());
        assert_eq!(Scope::parse("system/Task.*").unwrap(), Scope::parse("system/Task.cruds").unwrap());
        assert_ne!(Scope::parse("system/Task.r").unwrap(), Scope::parse("system/Task.rs").unwrap());
    }

    #[test]
    fn invalid_scopes_refused() {
        for text in [
            "patient/Patient.read",
            "user/*.cruds",
            "launch",
            "openid",
            "system/Patient",
            "system/Patient.",
            "system/Patient.sr",
            "system/Patient.rr",
            "system/Patient.x",
            "system/Patient.READ",
            "system/patient.read",
            "system/.read",
            "system/Pat-ient.read",
            "system/Observation.rs?category=laboratory",
            "system/*.cruds.x",
            "",
        ] {
            assert!(Scope::parse(text).is_err(), "{text:?} should be refused");
        }
        let err = Scope::parse("user/*.cruds").unwrap_err();
        assert!(err.to_string().contains("only system/"), "{err}");
    }

    #[test]
    fn scope_set_parse_and_display() {
        let set = ScopeSet::parse("system/Task.rs  system/ServiceRequest.c system/Task.read").unwrap();
        assert_eq!(set.to_string(), "system/Task.rs system/ServiceRequest.c", "duplicates by meaning dropped");
        assert!(set.allows("Task", Search) && set.allows("ServiceRequest", Create));
        assert!(!set.allows("ServiceRequest", Read) && !set.allows("Patient", Read));
        assert!(ScopeSet::parse("system/Task.rs launch").is_err());
        assert!(ScopeSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn grant_intersects_requested_with_allowed() {
        let allowed = ScopeSet::parse("system/ServiceRequest.cr system/Task.rs system/Patient.read").unwrap();
        let cases = [
            ("system/Task.rs", "system/Task.rs"),
            ("system/Task.read", "system/Task.read"),
            ("system/Task.cruds", "system/Task.rs"),
            ("system/*.cruds", "system/ServiceRequest.cr system/Task.rs system/Patient.rs"),
            ("system/*.c", "system/ServiceRequest.c"),
            ("system/Task.rs system/Observation.rs launch bogus", "system/Task.rs"),
            ("system/Observation.rs", ""),
            ("system/Task.cud", ""),
            ("", ""),
        ];
        for (requested, expected) in cases {
            assert_eq!(allowed.grant(requested).to_string(), expected, "requested {requested:?}");
        }
        let wildcard = ScopeSet::parse("system/*.rs").unwrap();
        assert_eq!(
            wildcard.grant("system/Task.read system/Patient.cruds").to_string(),
            "system/Task.read system/Patient.rs"
        );
        assert_eq!(wildcard.grant("system/*.read").to_string(), "system/*.read");
    }
}
