//! The SMART Backend Services token endpoint (`client_credentials` with a JWT client assertion),
//! as a pure function of the form fields, and rex's own access tokens.
//!
//! Access tokens are JWTs (RFC 9068 shape, header `typ: at+jwt`) signed ES384 with a server key,
//! valid for `ACCESS_TOKEN_LIFETIME` seconds, optionally bound to the client certificate they
//! were issued over (`cnf.x5t#S256`, RFC 8705).

use std::path::Path;
use std::sync::Arc;

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::assertion::{AssertionError, CLIENT_ASSERTION_TYPE, CLOCK_SKEW, audience_matches, numeric_date};
use crate::config::PartnerRegistry;
use crate::encoding::{b64url_decode, b64url_encode, hex_decode, hex_lower};
use crate::jwk::{JwkSet, KeyKind, PublicJwk, jwk_thumbprint, public_jwk_members};
use crate::jwt::{Algorithm, sign, verify};
use crate::mtls::PeerIdentity;
use crate::principal::{AuthError, Principal};
use crate::replay::ReplayCache;
use crate::scope::ScopeSet;

/// Lifetime of rex access tokens, in seconds (the `expires_in` of token responses).
pub const ACCESS_TOKEN_LIFETIME: i64 = 300;
/// JOSE `typ` of rex access tokens: keeps them from being mistaken for any other JWT.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// rex's token signing key (EC P-384, ES384) and issuer name.
pub struct TokenSigner {
    key: PKey<Private>,
    kid: String,
    issuer: String,
    public: JwkSet,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("kid", &self.kid).field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A fresh random key: tokens do not survive a restart, and several instances behind one
    /// token URL need a shared key (`from_pem_file`).
    pub fn generate(issuer: impl Into<String>) -> Result<TokenSigner, String> {
        let group = EcGroup::from_curve_name(Nid::SECP384R1).map_err(|e| e.to_string())?;
        let key = PKey::from_ec_key(EcKey::generate(&group).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        TokenSigner::from_key(key, issuer.into())
    }

    /// An EC P-384 private key in PEM (PKCS#8 or SEC1).
    pub fn from_pem(pem: &[u8], issuer: impl Into<String>) -> Result<TokenSigner, String> {
        let key = PKey::private_key_from_pem(pem).map_err(|_| "not a PEM private key".to_string())?;
        TokenSigner::from_key(key, issuer.into())
    }

    pub fn from_pem_file(path: &Path, issuer: impl Into<String>) -> Result<TokenSigner, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        TokenSigner::from_pem(&pem, issuer).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_key(key: PKey<Private>, issuer: String) -> Result<TokenSigner, String> {
        if KeyKind::of(&key) != Some(KeyKind::EcP384) {
            return Err("the token signing key must be an EC P-384 key (ES384)".into());
        }
        if issuer.is_empty() {
            return Err("the token issuer must not be empty".into());
        }
        let kid = jwk_thumbprint(&key)?;
        let public_der = key.public_key_to_der().map_err(|e| e.to_string())?;
        let public = PKey::public_key_from_der(&public_der).map_err(|e| e.to_string())?;
        let jwk = PublicJwk { kid: Some(kid.clone()), kind: KeyKind::EcP384, alg: Some(Algorithm::ES384), key: public };
        Ok(TokenSigner { key, kid, issuer, public: JwkSet::from_keys(vec![jwk]) })
    }

    /// The `iss` (and `aud`) of rex access tokens: the FHIR base URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key as a JWKS (published at `/auth/jwks`: partners verify rex's signatures with it).
    pub fn public_jwks(&self) -> Value {
        let mut jwk = public_jwk_members(&self.key).unwrap_or_default();
        jwk.insert("kid".into(), self.kid.clone().into());
        jwk.insert("alg".into(), "ES384".into());
        jwk.insert("use".into(), "sig".into());
        json!({ "keys": [jwk] })
    }

    /// A JWS with a detached payload (RFC 7515 appendix F, `header..signature`), ES384 with this
    /// key, over `payload`: what rex signs documents it issues with (a Provenance signature over
    /// a report's canonical JSON). The header names the key (`kid`) and the payload's type (`cty`).
    pub fn sign_detached(&self, payload: &[u8], content_type: &str) -> Result<String, String> {
        let header = json!({"alg": "ES384", "kid": self.kid, "cty": content_type});
        let header = b64url_encode(serde_json::to_vec(&header).map_err(|e| e.to_string())?);
        let signing_input = format!("{header}.{}", b64url_encode(payload));
        let signature = crate::jwt::sign_input(Algorithm::ES384, KeyKind::EcP384, &self.key, &signing_input)
            .map_err(|e| e.to_string())?;
        Ok(format!("{header}..{signature}"))
    }

    /// Verifies a JWS made by [`TokenSigner::sign_detached`] over `payload`.
    pub fn verify_detached(&self, jws: &str, payload: &[u8]) -> Result<(), crate::JwtError> {
        crate::jwt::verify_detached(jws, payload, &self.public, &[Algorithm::ES384]).map(|_| ())
    }

    /// Issues an access token for a partner. `cert_sha256_hex` binds it to a client certificate.
    pub fn issue(
        &self,
        partner_id: &str,
        scopes: &ScopeSet,
        cert_sha256_hex: Option<&str>,
        now: i64,
    ) -> Result<String, String> {
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("sub".into(), partner_id.into());
        claims.insert("aud".into(), self.issuer.clone().into());
        claims.insert("client_id".into(), partner_id.into());
        claims.insert("scope".into(), scopes.to_string().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + ACCESS_TOKEN_LIFETIME).into());
        claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
        if let Some(hex) = cert_sha256_hex {
            let bytes =
                hex_decode(hex).filter(|b| b.len() == 32).ok_or("the certificate thumbprint is not SHA-256 hex")?;
            claims.insert("cnf".into(), json!({ "x5t#S256": b64url_encode(bytes) }));
        }
        sign(Algorithm::ES384, Some(&self.kid), Some(ACCESS_TOKEN_TYP), &claims, &self.key).map_err(|e| e.to_string())
    }

    /// Verifies a rex access token and returns the partner principal. The partner must still be
    /// configured (removing a partner from the file revokes its tokens at the next reload).
    pub fn verify(&self, token: &str, partners: &PartnerRegistry, now: i64) -> Result<Principal, AuthError> {
        let invalid = |m: &str| AuthError::InvalidToken(m.to_owned());
        let verified =
            verify(token, &self.public, &[Algorithm::ES384]).map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        if verified.header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err(invalid("not a rex access token (typ)"));
        }
        let claims = verified.claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str())
            || !audience_matches(&claims, &self.issuer)
        {
            return Err(invalid("wrong issuer or audience"));
        }
        match numeric_date(&claims, "exp") {
            Ok(Some(exp)) if exp > now => {}
            Ok(Some(_)) => return Err(invalid("the token has expired")),
            _ => return Err(invalid("no valid exp")),
        }
        if !matches!(numeric_date(&claims, "iat"), Ok(Some(iat)) if iat <= now + CLOCK_SKEW) {
            return Err(invalid("iat missing or in the future"));
        }
        let id = claims.get("sub").and_then(Value::as_str).ok_or_else(|| invalid("no sub"))?;
        if partners.get(id).is_none() {
            return Err(invalid("the partner is no longer configured"));
        }
        let scope_text = claims.get("scope").and_then(Value::as_str).ok_or_else(|| invalid("no scope"))?;
        let scopes = ScopeSet::parse(scope_text).map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let cert_thumbprint = match claims.get("cnf") {
            None => None,
            Some(cnf) => {
                let thumbprint = cnf.get("x5t#S256").and_then(Value::as_str).and_then(b64url_decode);
                let thumbprint = thumbprint.filter(|b| b.len() == 32).ok_or_else(|| invalid("malformed cnf"))?;
                Some(hex_lower(&thumbprint))
            }
        };
        Ok(Principal::Partner { id: id.to_owned(), scopes, cert_thumbprint })
    }
}

/// The form fields of a token request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
}

impl TokenRequest {
    /// From decoded `application/x-www-form-urlencoded` pairs. A repeated parameter is an
    /// `invalid_request` (RFC 6749 §3.2); unknown parameters are ignored.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<TokenRequest, OAuthError> {
        let mut request = TokenRequest::default();
        for (name, value) in pairs {
            let name = name.as_ref();
            let slot = match name {
                "grant_type" => &mut request.grant_type,
                "client_assertion_type" => &mut request.client_assertion_type,
                "client_assertion" => &mut request.client_assertion,
                "scope" => &mut request.scope,
                "client_id" => &mut request.client_id,
                _ => continue,
            };
            if slot.replace(value.into()).is_some() {
                return Err(OAuthError::new(OAuthErrorCode::InvalidRequest, format!("parameter {name} is repeated")));
            }
        }
        Ok(request)
    }
}

/// A successful token response (serialise it as the JSON body).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    /// The partner the token was issued to (for logs and audit; not serialised).
    #[serde(skip)]
    pub client_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    UnsupportedGrantType,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
        }
    }
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    /// Safe to return and to log: never contains the assertion.
    pub description: String,
    /// The client the request claimed to be, once known (for logs and audit).
    pub client_id: Option<String>,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> OAuthError {
        OAuthError { code, description: description.into(), client_id: None }
    }

    /// HTTP status: 401 for `invalid_client`, 400 otherwise.
    pub fn status(&self) -> u16 {
        if self.code == OAuthErrorCode::InvalidClient { 401 } else { 400 }
    }

    /// The JSON body: `{"error": ..., "error_description": ...}`.
    pub fn body(&self) -> Value {
        json!({ "error": self.code.as_str(), "error_description": self.description })
    }
}

/// The token endpoint: everything it needs except HTTP.
#[derive(Clone)]
pub struct TokenEndpoint {
    pub partners: Arc<PartnerRegistry>,
    pub signer: Arc<TokenSigner>,
    /// The exact URL partners must put in `aud` (for example `https://rex.example.org/auth/token`).
    pub token_url: String,
    pub replay: Arc<dyn ReplayCache>,
}

impl TokenEndpoint {
    /// Handles one token request. `peer` is the client certificate identity when the request came
    /// over mTLS: the certificate must then be one registered for the partner (when it has any
    /// registered), and the token is bound to it.
    pub async fn exchange(
        &self,
        request: &TokenRequest,
        peer: Option<&PeerIdentity>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        use OAuthErrorCode::*;
        match request.grant_type.as_deref() {
            None => return Err(OAuthError::new(InvalidRequest, "grant_type is required")),
            Some("client_credentials") => {}
            Some(_) => return Err(OAuthError::new(UnsupportedGrantType, "only client_credentials is supported")),
        }
        match request.client_assertion_type.as_deref() {
            Some(CLIENT_ASSERTION_TYPE) => {}
            _ => {
                return Err(OAuthError::new(
                    InvalidRequest,
                    format!("client_assertion_type must be {CLIENT_ASSERTION_TYPE}"),
                ));
            }
        }
        let assertion = match request.client_assertion.as_deref() {
            Some(a) if !a.is_empty() => a,
            _ => return Err(OAuthError::new(InvalidRequest, "client_assertion is required")),
        };
        let requested_scope = match request.scope.as_deref() {
            Some(s) if !s.trim().is_empty() => s,
            _ => return Err(OAuthError::new(InvalidRequest, "scope is required")),
        };
        let partner =
            crate::assertion::validate_client_assertion(assertion, &self.partners, &self.token_url, &*self.replay, now)
                .await
                .map_err(|e| {
                    let mut error = OAuthError::new(InvalidClient, e.to_string());
                    if !matches!(
                        e,
                        AssertionError::UnknownClient(_) | AssertionError::Jwt(_) | AssertionError::MissingClaim("iss")
                    ) {
                        error.client_id = crate::jwt::peek_claims_unverified(assertion)
                            .ok()
                            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned));
                    }
                    error
                })?;
        let fail = |code, description: &str| OAuthError {
            code,
            description: description.into(),
            client_id: Some(partner.id.clone()),
        };
        if request.client_id.as_deref().is_some_and(|id| id != partner.id) {
            return Err(fail(InvalidClient, "client_id does not match the client assertion"));
        }
        if let Some(peer) = peer {
            let fingerprint = &peer.sha256_fingerprint_hex;
            let registered_to = self.partners.by_certificate(fingerprint).map(|p| p.id.as_str());
            let ok = match registered_to {
                Some(owner) => owner == partner.id,
                None => partner.client_cert_sha256.is_empty(),
            };
            if !ok {
                return Err(fail(InvalidClient, "the client certificate is not registered for this client"));
            }
        }
        let granted = partner.scopes.grant(requested_scope);
        if granted.is_empty() {
            return Err(fail(InvalidScope, "none of the requested scopes is allowed for this client"));
        }
        let token = self
            .signer
            .issue(&partner.id, &granted, peer.map(|p| p.sha256_fingerprint_hex.as_str()), now)
            .map_err(|_| fail(InvalidRequest, "the token could not be issued"))?;
        Ok(TokenResponse {
            access_token: token,
            token_type: "bearer",
            expires_in: ACCESS_TOKEN_LIFETIME,
            scope: granted.to_string(),
            client_id: partner.id.clone(),
        })
    }
}
