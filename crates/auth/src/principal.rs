//! Who is calling: a partner (rex access token) or hospital staff (identity-provider token), and
//! the checks applied on every request (bearer token, certificate binding, scopes).

use std::sync::Arc;

use rex_i18n::{Message, msg};
use serde_json::{Map, Value};

use crate::assertion::{CLOCK_SKEW, audience_matches, numeric_date};
use crate::config::{OidcConfig, PartnerRegistry};
use crate::encoding::shorten;
use crate::jwt::{OIDC_ALGORITHMS, peek_claims_unverified, verify};
use crate::mtls::PeerIdentity;
use crate::scope::{Interaction, ScopeSet};
use crate::token::TokenSigner;

/// What a staff member may do: specialists see the queues they serve, coordinators all queues,
/// admins also manage partners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StaffRole {
    Specialist,
    Coordinator,
    Admin,
}

impl StaffRole {
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Specialist => "specialist",
            StaffRole::Coordinator => "coordinator",
            StaffRole::Admin => "admin",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Partner {
        /// The partner id (SMART client id).
        id: String,
        /// Granted scopes (a subset of the partner's configured ones).
        scopes: ScopeSet,
        /// SHA-256 of the client certificate the token is bound to (lowercase hex), when it was
        /// issued over mTLS.
        cert_thumbprint: Option<String>,
    },
    Staff {
        subject: String,
        role: StaffRole,
        /// `PractitionerRole/<id>` (required for specialists).
        practitioner_role: Option<String>,
        /// Queue codes the staff member serves (specialists see only these).
        queues: Vec<String>,
    },
}

impl Principal {
    pub fn partner_id(&self) -> Option<&str> {
        match self {
            Principal::Partner { id, .. } => Some(id),
            Principal::Staff { .. } => None,
        }
    }

    /// Scope check for partners. Staff are not limited by SMART scopes (their limits are queues
    /// and role, enforced by the isolation layer), so this is `true` for them.
    pub fn allows(&self, resource_type: &str, interaction: Interaction) -> bool {
        match self {
            Principal::Partner { scopes, .. } => scopes.allows(resource_type, interaction),
            Principal::Staff { .. } => true,
        }
    }

    /// `allows` as a `Result`, for `?` in handlers.
    pub fn require(&self, resource_type: &str, interaction: Interaction) -> Result<(), AuthError> {
        if self.allows(resource_type, interaction) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope { resource_type: shorten(resource_type), interaction })
        }
    }
}

/// Why a request was not authenticated or not authorised. Messages never contain tokens or
/// resource content, so they can be logged and returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}", self.message().english())]
pub enum AuthError {
    MissingToken,
    InvalidToken(String),
    InsufficientScope { resource_type: String, interaction: Interaction },
    CertificateMismatch(String),
}

impl AuthError {
    /// The refusal in the catalogue, for the caller's language (the reasons inside stay English:
    /// they name token and certificate details).
    pub fn message(&self) -> Message {
        match self {
            AuthError::MissingToken => msg!("auth-no-token"),
            AuthError::InvalidToken(reason) => msg!("auth-invalid-token", reason),
            AuthError::InsufficientScope { resource_type, interaction } => {
                msg!("auth-scope", interaction = format!("{interaction:?}"), resource_type)
            }
            AuthError::CertificateMismatch(reason) => msg!("auth-certificate-mismatch", reason),
        }
    }

    /// 401 for authentication failures, 403 for a valid caller who may not do this.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => 401,
            AuthError::InsufficientScope { .. } | AuthError::CertificateMismatch(_) => 403,
        }
    }

    /// The `WWW-Authenticate` header value (RFC 6750 §3).
    pub fn www_authenticate(&self) -> String {
        let quote = |s: &str| s.replace(['"', '\\'], "'");
        match self {
            AuthError::MissingToken => "Bearer realm=\"rex\"".into(),
            AuthError::InvalidToken(_) | AuthError::CertificateMismatch(_) => {
                format!(
                    "Bearer realm=\"rex\", error=\"invalid_token\", error_description=\"{}\"",
                    quote(&self.to_string())
                )
            }
            AuthError::InsufficientScope { .. } => {
                format!(
                    "Bearer realm=\"rex\", error=\"insufficient_scope\", error_description=\"{}\"",
                    quote(&self.to_string())
                )
            }
        }
    }
}

/// The token from an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Verifies bearer tokens: rex's own access tokens for partners, the identity provider's for staff.
#[derive(Clone)]
pub struct Authenticator {
    partners: Arc<PartnerRegistry>,
    signer: Arc<TokenSigner>,
    oidc: Option<Arc<OidcConfig>>,
}

impl Authenticator {
    /// Fails when the identity provider's issuer equals rex's own (tokens could not be told apart).
    pub fn new(
        partners: Arc<PartnerRegistry>,
        signer: Arc<TokenSigner>,
        oidc: Option<Arc<OidcConfig>>,
    ) -> Result<Authenticator, String> {
        if oidc.as_ref().is_some_and(|o| o.issuer == signer.issuer()) {
            return Err("the [oidc] issuer must differ from rex's own token issuer".into());
        }
        Ok(Authenticator { partners, signer, oidc })
    }

    /// The whole per-request check: bearer token from the `Authorization` header value, token
    /// verification, and the certificate binding when the request came over mTLS.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        peer: Option<&PeerIdentity>,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let token = authorization.and_then(bearer_token).ok_or(AuthError::MissingToken)?;
        let principal = self.verify_token(token, now)?;
        self.check_certificate_binding(&principal, peer)?;
        Ok(principal)
    }

    /// Verifies a bearer token, choosing the verifier by its (unverified) `iss`: rex's issuer or
    /// the configured identity provider. Anything else is refused.
    pub fn verify_token(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let claims = peek_claims_unverified(token).map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
        if issuer == self.signer.issuer() {
            return self.signer.verify(token, &self.partners, now);
        }
        match &self.oidc {
            Some(oidc) if issuer == oidc.issuer => verify_staff_token(token, oidc, now),
            _ => Err(AuthError::InvalidToken("unknown issuer".into())),
        }
    }

    /// On an mTLS connection the token must belong to the partner whose certificate was presented:
    /// a token bound to a certificate (`cnf`) must match it, and otherwise the certificate must be
    /// one configured for that partner. A certificate-bound token is refused without mTLS. Staff
    /// tokens are refused on a connection authenticated with a partner's certificate.
    pub fn check_certificate_binding(
        &self,
        principal: &Principal,
        peer: Option<&PeerIdentity>,
    ) -> Result<(), AuthError> {
        match (principal, peer) {
            (Principal::Partner { cert_thumbprint: Some(_), .. }, None) => {
                Err(AuthError::CertificateMismatch("the token is bound to a client certificate; use mTLS".into()))
            }
            (Principal::Partner { .. }, None) => Ok(()),
            (Principal::Partner { id, cert_thumbprint, .. }, Some(peer)) => {
                let fingerprint = &peer.sha256_fingerprint_hex;
                if let Some(bound) = cert_thumbprint
                    && bound != fingerprint
                {
                    return Err(AuthError::CertificateMismatch("the token was issued to another certificate".into()));
                }
                let registered = self.partners.get(id).is_some_and(|p| p.client_cert_sha256.contains(fingerprint));
                if registered || cert_thumbprint.is_some() {
                    Ok(())
                } else {
                    Err(AuthError::CertificateMismatch(
                        "the client certificate is not registered for this partner".into(),
                    ))
                }
            }
            (Principal::Staff { .. }, Some(peer))
                if self.partners.by_certificate(&peer.sha256_fingerprint_hex).is_some() =>
            {
                Err(AuthError::CertificateMismatch("a staff token on a partner's connection".into()))
            }
            (Principal::Staff { .. }, _) => Ok(()),
        }
    }
}

/// Looks a claim up by name, then (if absent and dotted) as a path into nested objects.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// A claim holding strings: an array of strings, or one space-separated string.
fn string_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(s.split_ascii_whitespace().map(str::to_owned).collect()),
        Value::Array(items) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

/// Verifies a staff token from the configured identity provider and maps its claims.
pub fn verify_staff_token(token: &str, oidc: &OidcConfig, now: i64) -> Result<Principal, AuthError> {
    let invalid = |m: &str| AuthError::InvalidToken(m.to_owned());
    let claims = verify(token, &oidc.keys, OIDC_ALGORITHMS).map_err(|e| AuthError::InvalidToken(e.to_string()))?.claims;
    if claims.get("iss").and_then(Value::as_str) != Some(oidc.issuer.as_str()) {
        return Err(invalid("wrong issuer"));
    }
    if !audience_matches(&claims, &oidc.audience) {
        return Err(invalid("the token is not for rex (aud)"));
    }
    match numeric_date(&claims, "exp") {
        Ok(Some(exp)) if exp > now => {}
        Ok(Some(_)) => return Err(invalid("the token has expired")),
        _ => return Err(invalid("no valid exp")),
    }
    for name in ["nbf", "iat"] {
        match numeric_date(&claims, name) {
            Err(()) => return Err(invalid("malformed nbf or iat")),
            Ok(Some(t)) if t > now + CLOCK_SKEW => return Err(invalid("the token is not valid yet")),
            Ok(_) => {}
        }
    }
    let names = &oidc.claims;
    let subject = claim(&claims, &names.subject).and_then(Value::as_str).filter(|s| !s.is_empty());
    let subject = subject.ok_or_else(|| invalid("no subject claim"))?.to_owned();
    // The role claim may hold several values (IdP role lists): the highest rex role wins.
    let role_values = claim(&claims, &names.role).and_then(string_list).unwrap_or_default();
    let values = &oidc.role_values;
    let role = [
        (StaffRole::Admin, &values.admin),
        (StaffRole::Coordinator, &values.coordinator),
        (StaffRole::Specialist, &values.specialist),
    ]
    .into_iter()
    .find(|(_, value)| role_values.iter().any(|v| v == *value))
    .map(|(role, _)| role)
    .ok_or_else(|| invalid("no rex role in the role claim"))?;
    let practitioner_role = match claim(&claims, &names.practitioner_role) {
        None | Some(Value::Null) => None,
        Some(Value::String(reference)) => {
            let id = reference.rsplit_once("PractitionerRole/").map(|(_, id)| id).unwrap_or_default();
            let valid_id = !id.is_empty()
                && id.len() <= 64
                && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
            if !valid_id {
                return Err(invalid("the practitioner role claim is not a PractitionerRole reference"));
            }
            Some(format!("PractitionerRole/{id}"))
        }
        Some(_) => return Err(invalid("the practitioner role claim is not a string")),
    };
    if role == StaffRole::Specialist && practitioner_role.is_none() {
        return Err(invalid("a specialist token needs a PractitionerRole"));
    }
    let queues = match claim(&claims, &names.queues) {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => string_list(value).ok_or_else(|| invalid("the queues claim is not a list of strings"))?,
    };
    Ok(Principal::Staff { subject, role, practitioner_role, queues })
}
