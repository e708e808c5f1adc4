//! Compact JWS (RFC 7515) verification and signing for JWTs, restricted to the asymmetric
//! algorithms rex accepts. `alg: none`, every HMAC algorithm and anything unknown are refused
//! before a key is even looked up, so a public key can never be used as an HMAC secret. The
//! verification key comes only from configuration: header members such as `jwk`, `jku` and `x5u`
//! are ignored, and `crit` is refused (rex understands no header extension).

use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::sign::{Signer, Verifier};
use serde_json::{Map, Value};

use crate::encoding::{b64url_decode, b64url_encode, shorten};
use crate::jwk::{JwkSet, KeyKind};

/// Longest token accepted, in bytes; anything longer is refused before decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The JWS algorithms rex can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    ES256,
    ES384,
}

/// What partners may sign client assertions with (SMART Backend Services).
pub const PARTNER_ALGORITHMS: &[Algorithm] = &[Algorithm::RS384, Algorithm::ES384];
/// What the hospital identity provider may sign staff tokens with: common OIDC providers sign
/// with RS256 (the OIDC default) or ES256, so those are accepted there in addition.
pub const OIDC_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::ES256, Algorithm::ES384];

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
        }
    }

    /// The algorithm with this exact (case-sensitive) JOSE name.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        [Algorithm::RS256, Algorithm::RS384, Algorithm::ES256, Algorithm::ES384].into_iter().find(|a| a.name() == name)
    }

    fn digest(self) -> MessageDigest {
        match self {
            Algorithm::RS256 | Algorithm::ES256 => MessageDigest::sha256(),
            Algorithm::RS384 | Algorithm::ES384 => MessageDigest::sha384(),
        }
    }

    /// Size of one ECDSA signature component (r or s), for the JOSE raw `r || s` encoding.
    fn ec_component_len(self) -> Option<usize> {
        match self {
            Algorithm::ES256 => Some(32),
            Algorithm::ES384 => Some(48),
            _ => None,
        }
    }

    /// The algorithm rex signs with for a key of this kind (RSA: RS384, P-384: ES384, P-256: ES256).
    pub fn for_key(kind: KeyKind) -> Algorithm {
        match kind {
            KeyKind::Rsa => Algorithm::RS384,
            KeyKind::EcP384 => Algorithm::ES384,
            KeyKind::EcP256 => Algorithm::ES256,
        }
    }
}

/// Why a token was refused. Messages say what failed and never contain the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token longer than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} is not accepted (only asymmetric RS384/ES384 signatures)")]
    UnsupportedAlgorithm(String),
    #[error("algorithm {0} is not accepted here")]
    AlgorithmNotAllowed(&'static str),
    #[error("the token header has \"crit\" extensions, which rex does not support")]
    CriticalHeader,
    #[error("no configured key matches {}", match .0 { Some(kid) => format!("kid {kid:?}"), None => "a token without kid (the key set has several keys)".into() })]
    UnknownKey(Option<String>),
    #[error("key {kid:?} cannot verify {alg} signatures")]
    KeyMismatch { kid: Option<String>, alg: &'static str },
    #[error("signature verification failed")]
    BadSignature,
    #[error("cryptography error: {0}")]
    Crypto(String),
}

/// The protected header members rex uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A token whose signature has been verified. The claims are not yet checked (time, issuer...):
/// that is the caller's job.
#[derive(Clone, Debug)]
pub struct VerifiedJwt {
    pub header: Header,
    pub claims: Map<String, Value>,
}

struct Parts<'a> {
    header: Header,
    signing_input: &'a str,
    payload_b64: &'a str,
    signature: Vec<u8>,
}

fn split<'a>(token: &'a str, allowed: &[Algorithm]) -> Result<Parts<'a>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge);
    }
    let mut segments = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (segments.next(), segments.next(), segments.next(), segments.next()) else {
        return Err(JwtError::Malformed("a JWS in compact form has exactly three dot-separated segments"));
    };
    let header_json = b64url_decode(h).ok_or(JwtError::Malformed("the header is not base64url"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed("the header is not a JSON object"))?;
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or(JwtError::Malformed("the header has no \"alg\""))?;
    let alg = Algorithm::from_name(alg_name).ok_or_else(|| JwtError::UnsupportedAlgorithm(shorten(alg_name)))?;
    if !allowed.contains(&alg) {
        return Err(JwtError::AlgorithmNotAllowed(alg.name()));
    }
    if header.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }
    let string_member = |name: &'static str| match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::Malformed("a header member that must be a string is not")),
    };
    let (kid, typ) = (string_member("kid")?, string_member("typ")?);
    if s.is_empty() {
        return Err(JwtError::Malformed("the signature is empty"));
    }
    let signature = b64url_decode(s).ok_or(JwtError::Malformed("the signature is not base64url"))?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(Parts { header: Header { alg, kid, typ }, signing_input, payload_b64: p, signature })
}

/// Verifies a compact JWS signed with one of `allowed`, with the key from `keys` chosen by `kid`,
/// and returns its header and claims.
pub fn verify(token: &str, keys: &JwkSet, allowed: &[Algorithm]) -> Result<VerifiedJwt, JwtError> {
    let parts = split(token, allowed)?;
    check_signature(&parts.header, parts.signing_input, parts.signature, keys)?;
    let payload = b64url_decode(parts.payload_b64).ok_or(JwtError::Malformed("the payload is not base64url"))?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed("the payload is not a JSON object"))?;
    Ok(VerifiedJwt { header: parts.header, claims })
}

/// Verifies a JWS with a detached payload (RFC 7515 appendix F: `header..signature`) over
/// `payload`, and returns its header.
pub fn verify_detached(jws: &str, payload: &[u8], keys: &JwkSet, allowed: &[Algorithm]) -> Result<Header, JwtError> {
    let Some((header_b64, rest)) = jws.split_once("..") else {
        return Err(JwtError::Malformed("a detached JWS has the form header..signature"));
    };
    // The header and signature are checked as in a compact JWS with a placeholder payload.
    let compact = format!("{header_b64}.x.{rest}");
    let parts = split(&compact, allowed)?;
    let signing_input = format!("{header_b64}.{}", b64url_encode(payload));
    check_signature(&parts.header, &signing_input, parts.signature, keys)?;
    Ok(parts.header)
}

fn check_signature(header: &Header, signing_input: &str, signature: Vec<u8>, keys: &JwkSet) -> Result<(), JwtError> {
    let alg = header.alg;
    let key =
        keys.select(header.kid.as_deref()).ok_or_else(|| JwtError::UnknownKey(header.kid.as_deref().map(shorten)))?;
    if !key.supports(alg) {
        return Err(JwtError::KeyMismatch { kid: key.kid.clone(), alg: alg.name() });
    }
    let signature = match alg.ec_component_len() {
        Some(n) => raw_ecdsa_to_der(&signature, n)?,
        None => signature,
    };
    let mut verifier = Verifier::new(alg.digest(), &key.key).map_err(|e| JwtError::Crypto(e.to_string()))?;
    if key.kind == KeyKind::Rsa {
        verifier.set_rsa_padding(Padding::PKCS1).map_err(|e| JwtError::Crypto(e.to_string()))?;
    }
    // OpenSSL reports a malformed signature as an error and a wrong one as `false`: both are a
    // bad signature to the caller.
    if !verifier.verify_oneshot(&signature, signing_input.as_bytes()).unwrap_or(false) {
        return Err(JwtError::BadSignature);
    }
    Ok(())
}

/// The claims of a token WITHOUT verifying it: only to decide which verifier applies (for
/// example by `iss`). Never trust the result for anything else.
pub fn peek_claims_unverified(token: &str) -> Result<Map<String, Value>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge);
    }
    let payload = token.split('.').nth(1).ok_or(JwtError::Malformed("missing payload segment"))?;
    let payload = b64url_decode(payload).ok_or(JwtError::Malformed("the payload is not base64url"))?;
    serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed("the payload is not a JSON object"))
}

/// Signs claims as a compact JWS with `alg` (which must suit the key).
pub fn sign(
    alg: Algorithm,
    kid: Option<&str>,
    typ: Option<&str>,
    claims: &Map<String, Value>,
    key: &PKey<Private>,
) -> Result<String, JwtError> {
    let kind = KeyKind::of(key).ok_or_else(|| JwtError::Crypto("unsupported private key type".into()))?;
    if !kind.supports(alg) {
        return Err(JwtError::KeyMismatch { kid: kid.map(str::to_owned), alg: alg.name() });
    }
    let mut header = Map::new();
    header.insert("alg".into(), alg.name().into());
    if let Some(typ) = typ {
        header.insert("typ".into(), typ.into());
    }
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    let encode_json = |m: &Map<String, Value>| serde_json::to_vec(m).map(b64url_encode);
    let header = encode_json(&header).map_err(|e| JwtError::Crypto(e.to_string()))?;
    let payload = encode_json(claims).map_err(|e| JwtError::Crypto(e.to_string()))?;
    let signing_input = format!("{header}.{payload}");
    let signature = sign_input(alg, kind, key, &signing_input)?;
    Ok(format!("{signing_input}.{signature}"))
}

/// The base64url JOSE signature of a JWS signing input (`header.payload`).
pub(crate) fn sign_input(
    alg: Algorithm,
    kind: KeyKind,
    key: &PKey<Private>,
    signing_input: &str,
) -> Result<String, JwtError> {
    let crypto = |e: openssl::error::ErrorStack| JwtError::Crypto(e.to_string());
    let mut signer = Signer::new(alg.digest(), key).map_err(crypto)?;
    if kind == KeyKind::Rsa {
        signer.set_rsa_padding(Padding::PKCS1).map_err(crypto)?;
    }
    let mut signature = signer.sign_oneshot_to_vec(signing_input.as_bytes()).map_err(crypto)?;
    if let Some(n) = alg.ec_component_len() {
        let sig = EcdsaSig::from_der(&signature).map_err(crypto)?;
        signature = sig.r().to_vec_padded(n as i32).map_err(crypto)?;
        signature.extend(sig.s().to_vec_padded(n as i32).map_err(crypto)?);
    }
    Ok(b64url_encode(signature))
}

/// JOSE ECDSA signatures are the fixed-size big-endian `r || s`; OpenSSL wants DER.
fn raw_ecdsa_to_der(raw: &[u8], component_len: usize) -> Result<Vec<u8>, JwtError> {
    if raw.len() != 2 * component_len {
        return Err(JwtError::BadSignature);
    }
    let r = BigNum::from_slice(&raw[..component_len]).map_err(|e| JwtError::Crypto(e.to_string()))?;
    let s = BigNum::from_slice(&raw[component_len..]).map_err(|e| JwtError::Crypto(e.to_string()))?;
    let sig = EcdsaSig::from_private_components(r, s).map_err(|e| JwtError::Crypto(e.to_string()))?;
    sig.to_der().map_err(|e| JwtError::Crypto(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ec_p256_key, ec_p384_key, hs256_token, jwks_of, rsa_key, unsigned_token};
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        json!({"iss": "a", "n": 1}).as_object().unwrap().clone()
    }

    #[test]
    fn rs384_and_es384_round_trip() {
        let (rsa, ec) = (rsa_key(), ec_p384_key());
        let keys = JwkSet::from_value(&jwks_of(&[(&rsa, "r"), (&ec, "e")]), PARTNER_ALGORITHMS).unwrap();
        for (alg, key, kid) in [(Algorithm::RS384, &rsa, "r"), (Algorithm::ES384, &ec, "e")] {
            let token = sign(alg, Some(kid), Some("JWT"), &claims(), key).unwrap();
            let verified = verify(&token, &keys, PARTNER_ALGORITHMS).unwrap();
            assert_eq!(verified.header, Header { alg, kid: Some(kid.into()), typ: Some("JWT".into()) });
            assert_eq!(verified.claims, claims());
        }
        // ES384 signatures are raw r||s, 96 bytes.
        let token = sign(Algorithm::ES384, Some("e"), None, &claims(), &ec).unwrap();
        assert_eq!(b64url_decode(token.rsplit('.').next().unwrap()).unwrap().len(), 96);
    }

    #[test]
    fn es256_and_rs256_only_where_allowed() {
        let (ec256, rsa) = (ec_p256_key(), rsa_key());
        let keys = JwkSet::from_value(&jwks_of(&[(&ec256, "p"), (&rsa, "r")]), OIDC_ALGORITHMS).unwrap();
        let es256 = sign(Algorithm::ES256, Some("p"), None, &claims(), &ec256).unwrap();
        let rs256 = sign(Algorithm::RS256, Some("r"), None, &claims(), &rsa).unwrap();
        verify(&es256, &keys, OIDC_ALGORITHMS).unwrap();
        verify(&rs256, &keys, OIDC_ALGORITHMS).unwrap();
        assert_eq!(verify(&rs256, &keys, PARTNER_ALGORITHMS).unwrap_err(), JwtError::AlgorithmNotAllowed("RS256"));
    }

    #[test]
    fn wrong_signature_and_tampering_refused() {
        let (ec, other) = (ec_p384_key(), ec_p384_key());
        let keys = JwkSet::from_value(&jwks_of(&[(&ec, "e")]), PARTNER_ALGORITHMS).unwrap();
        let forged = sign(Algorithm::ES384, Some("e"), None, &claims(), &other).unwrap();
        assert_eq!(verify(&forged, &keys, PARTNER_ALGORITHMS).unwrap_err(), JwtError::BadSignature);

        let good = sign(Algorithm::ES384, Some("e"), None, &claims(), &ec).unwrap();
        let mut segments: Vec<&str> = good.split('.').collect();
        let evil_payload = b64url_encode(br#"{"iss":"b","n":1}"#);
        segments[1] = &evil_payload;
        assert_eq!(verify(&segments.join("."), &keys, PARTNER_ALGORITHMS).unwrap_err(), JwtError::BadSignature);

        // Truncated ECDSA signature (not 96 bytes).
        let sig = b64url_decode(good.rsplit('.').next().unwrap()).unwrap();
        let short = format!("{}.{}", good.rsplit_once('.').unwrap().0, b64url_encode(&sig[..95]));
        assert_eq!(verify(&short, &keys, PARTNER_ALGORITHMS).unwrap_err(), JwtError::BadSignature);
    }

    #[test]
    fn rsa_wrong_key_refused() {
        let (rsa, other) = (rsa_key(), rsa_key());
        let keys = JwkSet::from_value(&jwks_of(&[(&rsa, "r")]), PARTNER_ALGORITHMS).unwrap();
        let forged = sign(Algorithm::RS384, Some("r"), None, &claims(), &other).unwrap();
        assert_eq!(verify(&forged, &keys, PARTNER_ALGORITHMS).unwrap_err(), JwtError::BadSignature);
    }

    #[test]
    fn key_selection() {
        let (a, b) = (ec_p384_key(), ec_p384_key());
        let one = JwkSet::from_value(&jwks_of(&[(&a, "a")]), PARTNER_ALGORITHMS).unwrap();
        let two = JwkSet::from_value(&jwks_of(&[(&a, "a"), (&b, "b")]), PARTNER_ALGORITHMS).unwrap();
        let no_kid = sign(Algorithm::ES384, None, None, &claims(), &a).unwrap();
        verify(&no_kid, &one, PARTNER_ALGORITHMS).unwrap();
        assert_eq!(verify(&no_kid, &two, PARTNER_ALGORITHMS).unwrap_err(), JwtError::UnknownKey(None));
        let unknown = sign(Algorithm::ES384, Some("zzz"), None, &claims(), &a).unwrap();
        assert_eq!(verify(&unknown, &one, PARTNER_ALGORITHMS).unwrap_err(), JwtError::UnknownKey(Some("zzz".into())));
        let by_b = sign(Algorithm::ES384, Some("b"), None, &claims(), &b).unwrap();
        verify(&by_b, &two, PARTNER_ALGORITHMS).unwrap();
    }

    #[test]
    fn algorithm_and_key_type_mismatch_refused() {
        let (rsa, ec) = (rsa_key(), ec_p384_key());
        let keys = JwkSet::from_value(&jwks_of(&[(&rsa, "r"), (&ec, "e")]), PARTNER_ALGORITHMS).unwrap();
        // An ES384 signature claiming the RSA key.
        let token = sign(Algorithm::ES384, Some("r"), None, &claims(), &ec).unwrap();
        assert!(matches!(verify(&token, &keys, PARTNER_ALGORITHMS).unwrap_err(), JwtError::KeyMismatch { .. }));
        let token = sign(Algorithm::RS384, Some("e"), None, &claims(), &rsa).unwrap();
        assert!(matches!(verify(&token, &keys, PARTNER_ALGORITHMS).unwrap_err(), JwtError::KeyMismatch { .. }));
        // Signing refuses mismatches too.
        assert!(sign(Algorithm::RS384, None, None, &claims(), &ec).is_err());
    }

    #[test]
    fn none_and_hmac_refused() {
        let rsa = rsa_key();
        let keys = JwkSet::from_value(&jwks_of(&[(&rsa, "r")]), PARTNER_ALGORITHMS).unwrap();
        for alg in ["none", "None", "NONE"] {
            let token = unsigned_token(alg, &claims());
            assert_eq!(
                verify(&token, &keys, PARTNER_ALGORITHMS).unwrap_err(),
                JwtError::UnsupportedAlgorithm(alg.into())
            );
        }
        // The classic confusion attack: HS256 keyed with the public key's PEM bytes.
        let secret = rsa.public_key_to_pem().unwrap();
        for alg in ["HS256", "HS384", "HS512"] {
            let token = hs256_token(alg, Some("r"), &claims(), &secret);
            assert_eq!(
                verify(&token, &keys, PARTNER_ALGORITHMS).unwrap_err(),
                JwtError::UnsupportedAlgorithm(alg.into())
            );
        }
        for alg in ["PS384", "EdDSA", "rs384"] {
            let token = unsigned_token(alg, &claims()) + "AAAA";
            assert!(matches!(
                verify(&token, &keys, PARTNER_ALGORITHMS).unwrap_err(),
                JwtError::UnsupportedAlgorithm(_)
            ));
        }
    }

    #[test]
    fn malformed_tokens_refused() {
        let ec = ec_p384_key();
        let keys = JwkSet::from_value(&jwks_of(&[(&ec, "e")]), PARTNER_ALGORITHMS).unwrap();
        let good = sign(Algorithm::ES384, Some("e"), None, &claims(), &ec).unwrap();
        let header = good.split('.').next().unwrap();
        let crit = b64url_encode(br#"{"alg":"ES384","kid":"e","crit":["exp"]}"#);
        let cases = [
            String::new(),
            "a.b".into(),
            format!("{good}.x"),
            format!("{good}=").replacen('.', "=.", 1),
            format!("{header}.e30."),
            format!("{}.e30.AAAA", b64url_encode(b"[]")),
            format!("{}.e30.AAAA", b64url_encode(br#"{"kid":"e"}"#)),
            format!("{}.e30.AAAA", b64url_encode(br#"{"alg":"ES384","kid":5}"#)),
        ];
        for token in cases {
            assert!(matches!(verify(&token, &keys, PARTNER_ALGORITHMS), Err(JwtError::Malformed(_))), "{token:?}");
        }
        assert_eq!(
            verify(&format!("{crit}.e30.AAAA"), &keys, PARTNER_ALGORITHMS).unwrap_err(),
            JwtError::CriticalHeader
        );
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(verify(&huge, &keys, PARTNER_ALGORITHMS).unwrap_err(), JwtError::TooLarge);
        // A payload that is not an object, correctly signed.
        let mut signer = Signer::new(MessageDigest::sha384(), &ec).unwrap();
        let input = format!("{header}.{}", b64url_encode(b"[1]"));
        let der = signer.sign_oneshot_to_vec(input.as_bytes()).unwrap();
        let sig = EcdsaSig::from_der(&der).unwrap();
        let mut raw = sig.r().to_vec_padded(48).unwrap();
        raw.extend(sig.s().to_vec_padded(48).unwrap());
        let token = format!("{input}.{}", b64url_encode(raw));
        assert_eq!(
            verify(&token, &keys, PARTNER_ALGORITHMS).unwrap_err(),
            JwtError::Malformed("the payload is not a JSON object")
        );
    }

    #[test]
    fn error_messages_never_contain_the_token() {
        let ec = ec_p384_key();
        let keys = JwkSet::from_value(&jwks_of(&[(&ec, "e")]), PARTNER_ALGORITHMS).unwrap();
        let other = ec_p384_key();
        let token = sign(Algorithm::ES384, Some("e"), None, &claims(), &other).unwrap();
        let message = verify(&token, &keys, PARTNER_ALGORITHMS).unwrap_err().to_string();
        for segment in token.split('.') {
            assert!(!message.contains(segment));
        }
        let long_kid = "k".repeat(500);
        let token = sign(Algorithm::ES384, Some(&long_kid), None, &claims(), &ec).unwrap();
        assert!(verify(&token, &keys, PARTNER_ALGORITHMS).unwrap_err().to_string().len() < 120);
    }
}
