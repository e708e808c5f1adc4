//! The partner configuration file (TOML): who the partners are, how they prove it, what they may
//! do; and the hospital identity provider for staff tokens. See `docs/security.md` for the format.
//!
//! Loading validates everything and reports every problem at once, each naming the partner (or
//! `[oidc]`) and the field, so an operator fixes the file in one pass.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::encoding::normalize_sha256_fingerprint;
use crate::jwk::JwkSet;
use crate::jwt::{OIDC_ALGORITHMS, PARTNER_ALGORITHMS};
use crate::scope::{Scope, ScopeSet};

/// A FHIR Identifier (`system` + `value`) naming the partner's Organization.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

/// One configured partner.
#[derive(Clone, Debug)]
pub struct Partner {
    /// The SMART `client_id`: `iss` and `sub` of its client assertions, `sub` of its tokens.
    pub id: String,
    pub name: String,
    pub organization_identifier: Identifier,
    /// Keys that verify its client assertions (RS384 / ES384).
    pub keys: JwkSet,
    /// The most it may be granted.
    pub scopes: ScopeSet,
    /// SHA-256 fingerprints (64 lowercase hex digits) of its client certificates, for mTLS.
    pub client_cert_sha256: Vec<String>,
    /// Extra profile canonical URLs its resources are validated against.
    pub profiles: Vec<String>,
    pub notification_endpoint: Option<String>,
    /// What its notifications carry: `full-resource`, `id-only` or `empty` (Subscriptions Backport IG).
    pub notification_payload: String,
    pub sandbox: bool,
    pub rate_limit_per_minute: Option<u32>,
    /// Its referral Bundles must carry an active Consent to share the patient's record with the
    /// receiving hospital (`rex_referral::consent`); a referral without one is refused.
    pub require_consent: bool,
    /// The partner's IANA time zone: consult times it is offered and booked carry its offset
    /// (UTC when not configured).
    pub timezone: Option<chrono_tz::Tz>,
    /// The language rex writes its error texts and notification texts to the partner in, when a
    /// request's `Accept-Language` names none rex writes (English when not configured).
    pub language: Option<rex_i18n::Lang>,
    /// What a `meta.profile` rex does not know does to its resources: `warn` or `reject`; `None`
    /// follows the server's `--unknown-profiles`.
    pub unknown_profiles: Option<String>,
}

/// The configured partners, looked up by id or by client-certificate fingerprint.
#[derive(Clone, Debug, Default)]
pub struct PartnerRegistry {
    partners: Vec<Partner>,
    by_id: HashMap<String, usize>,
    by_fingerprint: HashMap<String, usize>,
}

impl PartnerRegistry {
    /// Builds the registry; ids and certificate fingerprints must be unique.
    pub fn new(partners: Vec<Partner>) -> Result<PartnerRegistry, ConfigError> {
        let mut problems = Vec::new();
        let mut registry = PartnerRegistry::default();
        for (index, partner) in partners.into_iter().enumerate() {
            if registry.by_id.insert(partner.id.clone(), index).is_some() {
                problems.push(ConfigProblem::partner(&partner.id, "id", "is used by another partner too"));
            }
            for fingerprint in &partner.client_cert_sha256 {
                if let Some(other) = registry.by_fingerprint.insert(fingerprint.clone(), index)
                    && other != index
                {
                    let message =
                        format!("{fingerprint} is also the certificate of partner {:?}", registry.partners[other].id);
                    problems.push(ConfigProblem::partner(&partner.id, "client_cert_sha256", message));
                }
            }
            registry.partners.push(partner);
        }
        if problems.is_empty() { Ok(registry) } else { Err(ConfigError::Invalid(problems)) }
    }

    pub fn get(&self, id: &str) -> Option<&Partner> {
        self.by_id.get(id).map(|i| &self.partners[*i])
    }

    /// The partner whose configured client certificate has this SHA-256 fingerprint (hex).
    pub fn by_certificate(&self, sha256_hex: &str) -> Option<&Partner> {
        let normalized = normalize_sha256_fingerprint(sha256_hex)?;
        self.by_fingerprint.get(&normalized).map(|i| &self.partners[*i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Partner> {
        self.partners.iter()
    }

    pub fn len(&self) -> usize {
        self.partners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partners.is_empty()
    }
}

/// Names of the staff-token claims rex reads. A name is looked up as a top-level claim first;
/// if absent and it contains dots, as a path into nested objects (`realm_access.roles`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub subject: String,
    pub role: String,
    pub practitioner_role: String,
    pub queues: String,
}

impl Default for ClaimNames {
    fn default() -> ClaimNames {
        ClaimNames {
            subject: "sub".into(),
            role: "rex_role".into(),
            practitioner_role: "practitioner_role".into(),
            queues: "rex_queues".into(),
        }
    }
}

/// The claim values that mean each rex role (when the identity provider names roles its own way).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleValues {
    pub specialist: String,
    pub coordinator: String,
    pub admin: String,
}

impl Default for RoleValues {
    fn default() -> RoleValues {
        RoleValues { specialist: "specialist".into(), coordinator: "coordinator".into(), admin: "admin".into() }
    }
}

/// The hospital identity provider whose tokens identify specialists, coordinators and admins.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    pub keys: JwkSet,
    pub claims: ClaimNames,
    pub role_values: RoleValues,
}

/// The whole file.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub partners: PartnerRegistry,
    pub oidc: Option<OidcConfig>,
}

/// One problem found in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `partner "hospital-a"`, `partner #3` (when the id itself is missing) or `[oidc]`.
    pub section: String,
    pub field: &'static str,
    pub message: String,
}

impl ConfigProblem {
    fn partner(id: &str, field: &'static str, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem { section: format!("partner {id:?}"), field, message: message.into() }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, field `{}`: {}", self.section, self.field, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the security configuration {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the security configuration {path} is not valid TOML for rex: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the security configuration is invalid:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigProblem>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    partner: Vec<RawPartner>,
    oidc: Option<RawOidc>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InlineJwks {
    Json(String),
    Table(Value),
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartner {
    id: Option<String>,
    name: Option<String>,
    organization_identifier: Option<Identifier>,
    jwks: Option<InlineJwks>,
    jwks_file: Option<PathBuf>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    client_cert_sha256: OneOrMany,
    #[serde(default)]
    profiles: Vec<String>,
    notification_endpoint: Option<String>,
    notification_payload: Option<String>,
    #[serde(default)]
    sandbox: bool,
    rate_limit_per_minute: Option<u32>,
    #[serde(default)]
    require_consent: bool,
    timezone: Option<String>,
    language: Option<String>,
    unknown_profiles: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: Option<String>,
    audience: Option<String>,
    jwks: Option<InlineJwks>,
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    claims: ClaimNames,
    #[serde(default)]
    role_values: RoleValues,
}

impl AuthConfig {
    /// Reads and validates the file; relative `jwks_file` paths are relative to its directory.
    pub fn load(path: &Path) -> Result<AuthConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        AuthConfig::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses and validates TOML text; relative `jwks_file` paths are resolved against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<AuthConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: PathBuf::from("<text>"), message: e.to_string() })?;
        let mut problems = Vec::new();
        let mut partners = Vec::new();
        for (index, raw_partner) in raw.partner.into_iter().enumerate() {
            if let Some(partner) = validate_partner(index, raw_partner, base_dir, &mut problems) {
                partners.push(partner);
            }
        }
        let oidc = raw.oidc.and_then(|o| validate_oidc(o, base_dir, &mut problems));
        let partners = match PartnerRegistry::new(partners) {
            Ok(registry) => Some(registry),
            Err(ConfigError::Invalid(more)) => {
                problems.extend(more);
                None
            }
            Err(other) => return Err(other),
        };
        match partners {
            Some(partners) if problems.is_empty() => Ok(AuthConfig { partners, oidc }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }
}

fn load_jwks(
    inline: Option<InlineJwks>,
    file: Option<PathBuf>,
    base_dir: &Path,
    algorithms: &[crate::jwt::Algorithm],
    problem: &mut dyn FnMut(&'static str, String),
) -> Option<JwkSet> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            problem("jwks", "give either `jwks` or `jwks_file`, not both".into());
            None
        }
        (None, None) => {
            problem("jwks", "is required (inline `jwks` or a `jwks_file` path)".into());
            None
        }
        (Some(InlineJwks::Json(text)), None) => {
            JwkSet::parse(&text, algorithms).map_err(|e| problem("jwks", e.to_string())).ok()
        }
        (Some(InlineJwks::Table(value)), None) => {
            JwkSet::from_value(&value, algorithms).map_err(|e| problem("jwks", e.to_string())).ok()
        }
        (None, Some(path)) => {
            let path = base_dir.join(path);
            match std::fs::read_to_string(&path) {
                Ok(text) => JwkSet::parse(&text, algorithms)
                    .map_err(|e| problem("jwks_file", format!("{}: {e}", path.display())))
                    .ok(),
                Err(e) => {
                    problem("jwks_file", format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        }
    }
}

fn validate_partner(
    index: usize,
    raw: RawPartner,
    base_dir: &Path,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Partner> {
    let section = match &raw.id {
        Some(id) if !id.trim().is_empty() => format!("partner {id:?}"),
        _ => format!("partner #{}", index + 1),
    };
    let before = problems.len();
    let mut problem = |field: &'static str, message: String| {
        problems.push(ConfigProblem { section: section.clone(), field, message });
    };
    let id = raw.id.unwrap_or_default();
    if id.is_empty() {
        problem("id", "is required".into());
    } else if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        problem("id", "must be 1 to 64 characters among A-Z a-z 0-9 . _ -".into());
    }
    let name = raw.name.unwrap_or_default();
    if name.trim().is_empty() {
        problem("name", "is required".into());
    }
    match &raw.organization_identifier {
        None => problem("organization_identifier", "is required ({ system = \"...\", value = \"...\" })".into()),
        Some(identifier) => {
            if !is_absolute_uri(&identifier.system) {
                problem("organization_identifier", "`system` must be an absolute URI".into());
            }
            if identifier.value.trim().is_empty() {
                problem("organization_identifier", "`value` must not be empty".into());
            }
        }
    }
    let keys = load_jwks(raw.jwks, raw.jwks_file, base_dir, PARTNER_ALGORITHMS, &mut problem);
    let mut scopes = Vec::new();
    match raw.scopes {
        None => problem("scopes", "is required (for example [\"system/ServiceRequest.c\", \"system/Task.rs\"])".into()),
        Some(list) if list.is_empty() => problem("scopes", "must list at least one scope".into()),
        Some(list) => {
            for text in list {
                match Scope::parse(&text) {
                    Ok(scope) => scopes.push(scope),
                    Err(e) => problem("scopes", e.to_string()),
                }
            }
        }
    }
    let fingerprints = match raw.client_cert_sha256 {
        OneOrMany::None => vec![],
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    };
    let mut client_cert_sha256 = Vec::new();
    for fingerprint in fingerprints {
        match normalize_sha256_fingerprint(&fingerprint) {
            Some(normalized) => client_cert_sha256.push(normalized),
            None => problem(
                "client_cert_sha256",
                format!("{fingerprint:?} is not a SHA-256 fingerprint (64 hex digits, `:` allowed)"),
            ),
        }
    }
    for profile in &raw.profiles {
        if !is_absolute_uri(profile) {
            problem("profiles", format!("{profile:?} is not a canonical URL"));
        }
    }
    if let Some(endpoint) = &raw.notification_endpoint {
        let https = endpoint.starts_with("https://") && endpoint.len() > 8;
        let http = endpoint.starts_with("http://") && endpoint.len() > 7;
        if !(https || (raw.sandbox && http)) {
            problem("notification_endpoint", "must be an https:// URL (http:// only for a sandbox partner)".into());
        }
    }
    let notification_payload = raw.notification_payload.unwrap_or_else(|| "full-resource".to_string());
    if !["full-resource", "id-only", "empty"].contains(&notification_payload.as_str()) {
        problem("notification_payload", "must be full-resource, id-only or empty".into());
    }
    if raw.rate_limit_per_minute == Some(0) {
        problem("rate_limit_per_minute", "must be at least 1 (omit it for no per-partner limit)".into());
    }
    let timezone = match raw.timezone.as_deref().map(str::parse::<chrono_tz::Tz>) {
        None => None,
        Some(Ok(zone)) => Some(zone),
        Some(Err(_)) => {
            problem(
                "timezone",
                "must be an IANA time zone name, e.g. \"America/Mexico_City\" or \"Asia/Dubai\"".into(),
            );
            None
        }
    };
    let language = match raw.language.as_deref().map(rex_i18n::Lang::from_tag) {
        None => None,
        Some(Some(lang)) => Some(lang),
        Some(None) => {
            problem("language", "must be one of the languages rex writes: en, es, ar, zh or fr".into());
            None
        }
    };
    if let Some(policy) = &raw.unknown_profiles
        && !["warn", "reject"].contains(&policy.as_str())
    {
        problem("unknown_profiles", format!("must be warn or reject, not {policy:?}"));
    }
    if problems.len() != before {
        return None;
    }
    Some(Partner {
        id,
        name,
        organization_identifier: raw.organization_identifier?,
        keys: keys?,
        scopes: ScopeSet::new(scopes),
        client_cert_sha256,
        profiles: raw.profiles,
        notification_endpoint: raw.notification_endpoint,
        notification_payload,
        sandbox: raw.sandbox,
        rate_limit_per_minute: raw.rate_limit_per_minute,
        require_consent: raw.require_consent,
        timezone,
        language,
        unknown_profiles: raw.unknown_profiles,
    })
}

fn validate_oidc(raw: RawOidc, base_dir: &Path, problems: &mut Vec<ConfigProblem>) -> Option<OidcConfig> {
    let before = problems.len();
    let mut problem = |field: &'static str, message: String| {
        problems.push(ConfigProblem { section: "[oidc]".into(), field, message })
    };
    let issuer = raw.issuer.unwrap_or_default();
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        problem("issuer", "is required: the identity provider's issuer URL, exactly as in its tokens' `iss`".into());
    }
    let audience = raw.audience.unwrap_or_default();
    if audience.trim().is_empty() {
        problem("audience", "is required: the `aud` value the identity provider puts in tokens for rex".into());
    }
    let keys = load_jwks(raw.jwks, raw.jwks_file, base_dir, OIDC_ALGORITHMS, &mut problem);
    let claims = raw.claims;
    for (field, value) in [
        ("claims.subject", &claims.subject),
        ("claims.role", &claims.role),
        ("claims.practitioner_role", &claims.practitioner_role),
        ("claims.queues", &claims.queues),
    ] {
        if value.trim().is_empty() {
            problem(field, "must not be empty".into());
        }
    }
    let roles = raw.role_values;
    let values = [&roles.specialist, &roles.coordinator, &roles.admin];
    if values.iter().any(|v| v.trim().is_empty()) {
        problem("role_values", "role values must not be empty".into());
    } else if values[0] == values[1] || values[0] == values[2] || values[1] == values[2] {
        problem("role_values", "each role needs its own value".into());
    }
    if problems.len() != before {
        return None;
    }
    Some(OidcConfig { issuer, audience, keys: keys?, claims, role_values: roles })
}

/// `scheme:rest` with an RFC 3986 scheme and no whitespace (`https://...`, `urn:oid:...`).
fn is_absolute_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else { return false };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !text.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Interaction;
    use crate::testutil::{ec_p384_key, jwks_of, rsa_key};

    fn example(jwks_a: &str, jwks_b_file: &str) -> String {
        format!(
            r#"
[oidc]
issuer = "https://idp.hospital.example/realms/rex"
audience = "rex"
jwks = '{jwks_a}'
[oidc.claims]
role = "realm_access.roles"
[oidc.role_values]
specialist = "rex-specialist"

[[partner]]
id = "hospital-a"
name = "Hospital A"
organization_identifier = {{ system = "urn:ietf:rfc:3986", value = "urn:oid:1.2.3.4" }}
jwks = '{jwks_a}'
scopes = ["system/ServiceRequest.c", "system/Task.rs", "system/Patient.read"]
client_cert_sha256 = "{fp}"
profiles = ["http://example.org/StructureDefinition/a-referral"]
notification_endpoint = "https://a.example/fhir/notify"
rate_limit_per_minute = 120
timezone = "Asia/Dubai"
language = "ar"

[[partner]]
id = "hospital-b"
name = "Hospital B"
organization_identifier = {{ system = "https://b.example/ids", value = "B" }}
jwks_file = "{jwks_b_file}"
scopes = ["system/*.cruds"]
sandbox = true
notification_endpoint = "http://localhost:9000/notify"
notification_payload = "id-only"
"#,
            fp = "AB:".repeat(31) + "AB"
        )
    }

    #[test]
    fn loads_a_complete_file() {
        let dir = std::env::temp_dir().join(format!("rex-auth-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks_a = jwks_of(&[(&ec_p384_key(), "a1")]).to_string();
        std::fs::write(dir.join("b.json"), jwks_of(&[(&rsa_key(), "b1")]).to_string()).unwrap();
        std::fs::write(dir.join("security.toml"), example(&jwks_a, "b.json")).unwrap();
        let config = AuthConfig::load(&dir.join("security.toml")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(config.partners.len(), 2);
        let a = config.partners.get("hospital-a").unwrap();
        assert_eq!(a.name, "Hospital A");
        assert_eq!(a.organization_identifier.value, "urn:oid:1.2.3.4");
        assert!(a.scopes.allows("ServiceRequest", Interaction::Create));
        assert!(!a.scopes.allows("ServiceRequest", Interaction::Read));
        assert_eq!(a.client_cert_sha256, vec!["ab".repeat(32)]);
        assert_eq!(config.partners.by_certificate(&"AB".repeat(32)).unwrap().id, "hospital-a");
        assert_eq!(a.rate_limit_per_minute, Some(120));
        assert!(a.keys.select(Some("a1")).is_some());
        let b = config.partners.get("hospital-b").unwrap();
        assert!(b.sandbox && b.keys.select(Some("b1")).is_some());
        assert_eq!((a.notification_payload.as_str(), b.notification_payload.as_str()), ("full-resource", "id-only"));
        assert_eq!((a.timezone, b.timezone), (Some(chrono_tz::Asia::Dubai), None));
        assert_eq!((a.language, b.language), (Some(rex_i18n::Lang::Ar), None));
        let oidc = config.oidc.unwrap();
        assert_eq!(oidc.claims.role, "realm_access.roles");
        assert_eq!(oidc.claims.queues, "rex_queues", "default claim name");
        assert_eq!(oidc.role_values.specialist, "rex-specialist");
        assert_eq!(oidc.role_values.admin, "admin");
    }

    #[test]
    fn jwks_as_toml_table() {
        let key = ec_p384_key();
        let jwk = &jwks_of(&[(&key, "t1")])["keys"][0];
        let text = format!(
            r#"[[partner]]
id = "t"
name = "T"
organization_identifier = {{ system = "urn:x", value = "t" }}
scopes = ["system/Task.rs"]
[[partner.jwks.keys]]
kty = "EC"
crv = "P-384"
kid = "t1"
x = "{}"
y = "{}"
"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let config = AuthConfig::from_toml(&text, Path::new(".")).unwrap();
        assert!(config.partners.get("t").unwrap().keys.select(Some("t1")).unwrap().key.public_eq(&key));
        assert!(config.oidc.is_none());
    }

    #[test]
    fn unknown_profiles_policy_is_warn_or_reject() {
        let jwks = jwks_of(&[(&ec_p384_key(), "k")]).to_string();
        let partner = |policy: &str| {
            format!(
                "[[partner]]\nid = \"p\"\nname = \"P\"\norganization_identifier = {{ system = \"urn:x\", value = \"p\" }}\n\
                 jwks = '{jwks}'\nscopes = [\"system/Task.rs\"]\n{policy}"
            )
        };
        let config = AuthConfig::from_toml(&partner("unknown_profiles = \"reject\""), Path::new(".")).unwrap();
        assert_eq!(config.partners.get("p").unwrap().unknown_profiles.as_deref(), Some("reject"));
        let config = AuthConfig::from_toml(&partner(""), Path::new(".")).unwrap();
        assert_eq!(config.partners.get("p").unwrap().unknown_profiles, None, "the server's policy applies");
        assert_eq!(
            problems(&partner("unknown_profiles = \"ignore\"")),
            vec!["partner \"p\", field `unknown_profiles`: must be warn or reject, not \"ignore\""]
        );
    }

    fn problems(text: &str) -> Vec<String> {
        match AuthConfig::from_toml(text, Path::new("/nonexistent")) {
            Err(ConfigError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
            Err(other) => vec![other.to_string()],
            Ok(_) => vec![],
        }
    }

    #[test]
    fn every_problem_is_reported_with_partner_and_field() {
        let good = jwks_of(&[(&ec_p384_key(), "k")]).to_string();
        let text = format!(
            r#"
[[partner]]
id = "dup"
name = "One"
organization_identifier = {{ system = "urn:x", value = "1" }}
jwks = '{good}'
scopes = ["system/Task.rs"]
client_cert_sha256 = ["{fp}"]

[[partner]]
id = "dup"
name = "Two"
organization_identifier = {{ system = "urn:x", value = "2" }}
jwks = '{good}'
scopes = ["system/Task.rs"]
client_cert_sha256 = ["{fp}"]

[[partner]]
id = "bad"
name = ""
organization_identifier = {{ system = "not a uri", value = "" }}
jwks = '{{"keys": [{{"kty": "oct", "k": "c2VjcmV0"}}]}}'
scopes = ["patient/Patient.read", "system/Task.rz"]
client_cert_sha256 = "abcd"
profiles = ["not a url"]
notification_endpoint = "http://insecure.example"
notification_payload = "everything"
rate_limit_per_minute = 0
timezone = "Gulf/Standard"
language = "de"

[[partner]]
name = "No id"
organization_identifier = {{ system = "urn:x", value = "3" }}
jwks_file = "missing.json"
scopes = []

[oidc]
audience = ""
jwks = '{good}'
jwks_file = "x.json"
[oidc.role_values]
admin = "specialist"
"#,
            fp = "cd".repeat(32)
        );
        let found = problems(&text);
        let expected = [
            "partner \"bad\", field `name`: is required",
            "partner \"bad\", field `organization_identifier`: `system` must be an absolute URI",
            "partner \"bad\", field `organization_identifier`: `value` must not be empty",
            "partner \"bad\", field `jwks`: key #0: contains the private member \"k\"",
            "partner \"bad\", field `scopes`: scope \"patient/Patient.read\": only system/ scopes",
            "partner \"bad\", field `scopes`: scope \"system/Task.rz\"",
            "partner \"bad\", field `client_cert_sha256`: \"abcd\" is not a SHA-256 fingerprint",
            "partner \"bad\", field `profiles`: \"not a url\" is not a canonical URL",
            "partner \"bad\", field `notification_endpoint`: must be an https:// URL",
            "partner \"bad\", field `notification_payload`: must be full-resource, id-only or empty",
            "partner \"bad\", field `rate_limit_per_minute`: must be at least 1",
            "partner \"bad\", field `timezone`: must be an IANA time zone name",
            "partner \"bad\", field `language`: must be one of the languages rex writes",
            "partner #4, field `id`: is required",
            "partner #4, field `jwks_file`: cannot read /nonexistent/missing.json",
            "partner #4, field `scopes`: must list at least one scope",
            "[oidc], field `issuer`: is required",
            "[oidc], field `audience`: is required",
            "[oidc], field `jwks`: give either `jwks` or `jwks_file`, not both",
            "[oidc], field `role_values`: each role needs its own value",
            "partner \"dup\", field `id`: is used by another partner too",
            "partner \"dup\", field `client_cert_sha256`:",
        ];
        for wanted in expected {
            assert!(found.iter().any(|p| p.starts_with(wanted)), "missing {wanted:?} in {found:#?}");
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn syntax_and_unknown_fields_are_errors() {
        let err = AuthConfig::from_toml("[[partner]]\nid = \"a\"\nscope = []\n", Path::new(".")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(err.to_string().contains("unknown field `scope`"), "{err}");
        let err = AuthConfig::from_toml("[[partner]\n", Path::new(".")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        // An empty file is a valid configuration with no partners and no staff login.
        let empty = AuthConfig::from_toml("", Path::new(".")).unwrap();
        assert!(empty.partners.is_empty() && empty.oidc.is_none());
        assert!(matches!(AuthConfig::load(Path::new("/nonexistent/rex.toml")), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn uri_check() {
        for ok in ["https://a.example/x", "urn:oid:1.2", "http://h"] {
            assert!(is_absolute_uri(ok), "{ok}");
        }
        for bad in ["", "a", ":x", "1http://x", "https://a b", "http:"] {
            assert!(!is_absolute_uri(bad), "{bad}");
        }
    }
}
