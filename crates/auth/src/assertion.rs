//! SMART Backend Services client assertions (`private_key_jwt`, RFC 7523): the signed JWT a
//! partner presents to the token endpoint instead of a secret.

use serde_json::{Map, Value};

use crate::config::{Partner, PartnerRegistry};
use crate::encoding::shorten;
use crate::jwt::{JwtError, PARTNER_ALGORITHMS, peek_claims_unverified, verify};
use crate::replay::ReplayCache;

/// `client_assertion_type` of a JWT client assertion.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The latest `exp` accepted, in seconds after now (SMART: no more than five minutes).
pub const MAX_ASSERTION_LIFETIME: i64 = 300;
/// Tolerated clock difference for `nbf`, `iat` and the upper bound of `exp`, in seconds. `exp`
/// itself is never extended: an expired assertion is expired.
pub const CLOCK_SKEW: i64 = 60;
/// Longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 256;

/// Why an assertion was refused (each maps to `invalid_client` at the token endpoint).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssertionError {
    #[error("client assertion: {0}")]
    Jwt(#[from] JwtError),
    #[error("client assertion has no valid \"{0}\" claim")]
    MissingClaim(&'static str),
    #[error("client {0:?} is not a configured partner")]
    UnknownClient(String),
    #[error("client assertion \"sub\" must equal \"iss\" (the client id)")]
    IssuerSubjectMismatch,
    #[error("client assertion \"aud\" must be this server's token URL")]
    WrongAudience,
    #[error("client assertion has expired")]
    Expired,
    #[error("client assertion \"exp\" is more than {MAX_ASSERTION_LIFETIME} seconds ahead")]
    ExpiresTooFarAhead,
    #[error("client assertion is not valid yet (\"nbf\" or \"iat\" in the future)")]
    NotYetValid,
    #[error("client assertion \"jti\" was already used")]
    Replayed,
    #[error("client assertion could not be checked for replay: {0}")]
    ReplayCache(String),
}

/// Reads a NumericDate claim (integer or fractional seconds).
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64)).map(Some).ok_or(())
        }
        Some(_) => Err(()),
    }
}

/// Checks `aud`: a string equal to `expected`, or an array containing it (RFC 7519 §4.1.3).
pub(crate) fn audience_matches(claims: &Map<String, Value>, expected: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == expected,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expected)),
        _ => false,
    }
}

/// Validates a client assertion and returns the partner it authenticates.
///
/// Order matters: the signature is checked with the keys of the partner named by `iss` before
/// any claim is trusted, and the `jti` is recorded last, so an invalid assertion can neither
/// burn a legitimate `jti` nor fill the replay cache.
pub async fn validate_client_assertion<'r>(
    assertion: &str,
    partners: &'r PartnerRegistry,
    token_url: &str,
    replay: &dyn ReplayCache,
    now: i64,
) -> Result<&'r Partner, AssertionError> {
    let unverified = peek_claims_unverified(assertion)?;
    let client_id = unverified.get("iss").and_then(Value::as_str).ok_or(AssertionError::MissingClaim("iss"))?;
    let partner = partners.get(client_id).ok_or_else(|| AssertionError::UnknownClient(shorten(client_id)))?;
    let claims = verify(assertion, &partner.keys, PARTNER_ALGORITHMS)?.claims;

    if claims.get("iss").and_then(Value::as_str) != Some(partner.id.as_str()) {
        return Err(AssertionError::MissingClaim("iss"));
    }
    match claims.get("sub").and_then(Value::as_str) {
        None => return Err(AssertionError::MissingClaim("sub")),
        Some(sub) if sub != partner.id => return Err(AssertionError::IssuerSubjectMismatch),
        Some(_) => {}
    }
    if !audience_matches(&claims, token_url) {
        return Err(AssertionError::WrongAudience);
    }
    let exp = numeric_date(&claims, "exp").ok().flatten().ok_or(AssertionError::MissingClaim("exp"))?;
    if exp <= now {
        return Err(AssertionError::Expired);
    }
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW {
        return Err(AssertionError::ExpiresTooFarAhead);
    }
    for name in ["nbf", "iat"] {
        match numeric_date(&claims, name) {
            Err(()) => return Err(AssertionError::MissingClaim(if name == "nbf" { "nbf" } else { "iat" })),
            Ok(Some(t)) if t > now + CLOCK_SKEW => return Err(AssertionError::NotYetValid),
            Ok(_) => {}
        }
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => jti,
        _ => return Err(AssertionError::MissingClaim("jti")),
    };
    // Unit separator: neither a client id nor (in practice) a jti contains it.
    let key = format!("{}\u{1f}{jti}", partner.id);
    match replay.check_and_record(&key, exp, now).await {
        Ok(true) => Ok(partner),
        Ok(false) => Err(AssertionError::Replayed),
        Err(e) => Err(AssertionError::ReplayCache(e.0)),
    }
}
