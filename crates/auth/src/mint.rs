//! Minting tokens with a private key, for `rex token` (staff tokens signed with a development
//! key), `rex send` (a partner's client assertion) and tests.

use std::path::Path;

use openssl::pkey::{PKey, Private};
use serde_json::{Map, Value};

use crate::assertion::MAX_ASSERTION_LIFETIME;
use crate::config::OidcConfig;
use crate::jwk::{KeyKind, jwk_thumbprint, public_jwk_members};
use crate::jwt::{Algorithm, sign};
use crate::principal::StaffRole;

/// A private key with the algorithm rex signs with for it (RSA: RS384, P-384: ES384, P-256: ES256)
/// and its `kid` (by default the RFC 7638 thumbprint, which `public_jwks` publishes too).
#[derive(Clone)]
pub struct SigningKey {
    key: PKey<Private>,
    alg: Algorithm,
    kid: Option<String>,
}

impl SigningKey {
    pub fn new(key: PKey<Private>) -> Result<SigningKey, String> {
        let kind = KeyKind::of(&key).ok_or("unsupported key type (RSA, EC P-256 or EC P-384)")?;
        if kind == KeyKind::Rsa && key.bits() < crate::jwk::MIN_RSA_BITS {
            return Err(format!("RSA keys need at least {} bits", crate::jwk::MIN_RSA_BITS));
        }
        let kid = Some(jwk_thumbprint(&key)?);
        Ok(SigningKey { key, alg: Algorithm::for_key(kind), kid })
    }

    /// A PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, String> {
        SigningKey::new(PKey::private_key_from_pem(pem).map_err(|_| "not a PEM private key".to_string())?)
    }

    pub fn from_pem_file(path: &Path) -> Result<SigningKey, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        SigningKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Overrides the `kid` (`None`: tokens carry no `kid`, fine for a one-key JWKS).
    pub fn with_kid(mut self, kid: Option<String>) -> SigningKey {
        self.kid = kid;
        self
    }

    /// Signs with another algorithm the key supports (for example RS256 with an RSA key, to
    /// imitate an identity provider that uses the OIDC default).
    pub fn with_algorithm(mut self, alg: Algorithm) -> Result<SigningKey, String> {
        let kind = KeyKind::of(&self.key).ok_or("unsupported key type")?;
        if !kind.supports(alg) {
            return Err(format!("a {kind:?} key cannot sign {}", alg.name()));
        }
        self.alg = alg;
        Ok(self)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The JWKS with this key's public half, to paste into the configuration.
    pub fn public_jwks(&self) -> Value {
        let mut jwk = public_jwk_members(&self.key).unwrap_or_default();
        if let Some(kid) = &self.kid {
            jwk.insert("kid".into(), kid.clone().into());
        }
        jwk.insert("alg".into(), self.alg.name().into());
        jwk.insert("use".into(), "sig".into());
        serde_json::json!({ "keys": [jwk] })
    }

    pub fn sign(&self, claims: &Map<String, Value>, typ: Option<&str>) -> Result<String, String> {
        sign(self.alg, self.kid.as_deref(), typ, claims, &self.key).map_err(|e| e.to_string())
    }
}

/// What a staff token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffTokenSpec {
    pub subject: String,
    pub role: StaffRole,
    /// `PractitionerRole/<id>`; required for specialists.
    pub practitioner_role: Option<String>,
    pub queues: Vec<String>,
    /// Seconds from `now` to `exp`.
    pub lifetime_seconds: i64,
}

/// A staff token as the configured identity provider would issue it: `iss`/`aud` from `[oidc]`,
/// the claims under the configured names and role values. The development key's public JWKS
/// (`SigningKey::public_jwks`) must be the `[oidc]` JWKS of the server that accepts it.
pub fn mint_staff_token(
    key: &SigningKey,
    oidc: &OidcConfig,
    spec: &StaffTokenSpec,
    now: i64,
) -> Result<String, String> {
    let mut claims = Map::new();
    claims.insert("iss".into(), oidc.issuer.clone().into());
    claims.insert("aud".into(), oidc.audience.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + spec.lifetime_seconds).into());
    claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
    claims.insert(oidc.claims.subject.clone(), spec.subject.clone().into());
    let role_value = match spec.role {
        StaffRole::Specialist => &oidc.role_values.specialist,
        StaffRole::Coordinator => &oidc.role_values.coordinator,
        StaffRole::Admin => &oidc.role_values.admin,
    };
    claims.insert(oidc.claims.role.clone(), role_value.clone().into());
    if let Some(reference) = &spec.practitioner_role {
        claims.insert(oidc.claims.practitioner_role.clone(), reference.clone().into());
    }
    claims.insert(oidc.claims.queues.clone(), spec.queues.iter().cloned().map(Value::from).collect::<Vec<_>>().into());
    key.sign(&claims, Some("JWT"))
}

/// Lifetime `mint_client_assertion` gives assertions: under the five-minute maximum, with room
/// for a server clock a little behind.
pub const CLIENT_ASSERTION_LIFETIME: i64 = MAX_ASSERTION_LIFETIME - 60;

/// A SMART Backend Services client assertion for `client_id` addressed to `token_url`, with a
/// fresh random `jti`. The key must be RSA (RS384) or EC P-384 (ES384).
pub fn mint_client_assertion(key: &SigningKey, client_id: &str, token_url: &str, now: i64) -> Result<String, String> {
    if !crate::jwt::PARTNER_ALGORITHMS.contains(&key.alg) {
        return Err(format!("partners sign with RS384 or ES384, not {}", key.alg.name()));
    }
    let mut claims = Map::new();
    claims.insert("iss".into(), client_id.into());
    claims.insert("sub".into(), client_id.into());
    claims.insert("aud".into(), token_url.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + CLIENT_ASSERTION_LIFETIME).into());
    claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
    key.sign(&claims, Some("JWT"))
}
