//! JSON Web Keys (RFC 7517) to OpenSSL public keys.
//!
//! Only what rex verifies is accepted: RSA keys of at least 2048 bits and EC keys on P-256 or
//! P-384, each usable by at least one algorithm allowed in the context (partners: RS384, ES384;
//! the hospital identity provider: also RS256, ES256). Keys marked `"use": "enc"` are skipped;
//! anything else that rex cannot use is an error rather than silently ignored, so a wrong JWKS is
//! found when the configuration is loaded and not at a partner's first request.

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Rsa;
use openssl::sha::sha256;
use serde_json::{Map, Value};

use crate::encoding::{b64url_decode, b64url_encode, shorten};
use crate::jwt::Algorithm;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: u32 = 2048;

/// The kind of a public key, which decides the algorithms it can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

impl KeyKind {
    /// Whether a key of this kind can verify signatures made with `alg`.
    pub fn supports(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (KeyKind::Rsa, Algorithm::RS256 | Algorithm::RS384)
                | (KeyKind::EcP256, Algorithm::ES256)
                | (KeyKind::EcP384, Algorithm::ES384)
        )
    }

    /// The kind of an OpenSSL key, if rex supports it.
    pub fn of<T: openssl::pkey::HasPublic>(key: &PKey<T>) -> Option<KeyKind> {
        match key.id() {
            Id::RSA => Some(KeyKind::Rsa),
            Id::EC => match key.ec_key().ok()?.group().curve_name()? {
                Nid::X9_62_PRIME256V1 => Some(KeyKind::EcP256),
                Nid::SECP384R1 => Some(KeyKind::EcP384),
                _ => None,
            },
            _ => None,
        }
    }
}

/// One verification key from a JWKS.
#[derive(Clone)]
pub struct PublicJwk {
    /// `kid`, if the JWK has one.
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// `alg`, if the JWK restricts itself to one algorithm.
    pub alg: Option<Algorithm>,
    pub key: PKey<Public>,
}

impl PublicJwk {
    /// Whether this key may verify a signature made with `alg` (key kind and the JWK's own `alg`).
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.kind.supports(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

impl std::fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicJwk").field("kid", &self.kid).field("kind", &self.kind).field("alg", &self.alg).finish()
    }
}

/// Why a JWKS was refused. Messages never quote key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwkError {
    #[error("the JWKS is not valid JSON: {0}")]
    NotJson(String),
    #[error("the JWKS must be a JSON object with a \"keys\" array")]
    NotAKeySet,
    #[error("the JWKS has no usable signing key")]
    NoKeys,
    #[error("two keys in the JWKS have kid {0:?}")]
    DuplicateKid(String),
    #[error("key #{index}{}: {message}", kid.as_ref().map(|k| format!(" (kid {k:?})")).unwrap_or_default())]
    Key { index: usize, kid: Option<String>, message: String },
}

/// A set of verification keys, looked up by `kid`.
#[derive(Clone, Debug)]
pub struct JwkSet {
    keys: Vec<PublicJwk>,
}

impl JwkSet {
    /// Parses a JWKS JSON document, accepting only keys usable with one of `allowed`.
    pub fn parse(json: &str, allowed: &[Algorithm]) -> Result<JwkSet, JwkError> {
        let value: Value = serde_json::from_str(json).map_err(|e| JwkError::NotJson(e.to_string()))?;
        JwkSet::from_value(&value, allowed)
    }

    /// Builds the set from an already parsed JWKS (`{"keys": [...]}`).
    pub fn from_value(value: &Value, allowed: &[Algorithm]) -> Result<JwkSet, JwkError> {
        let keys = value.get("keys").and_then(Value::as_array).ok_or(JwkError::NotAKeySet)?;
        let mut out: Vec<PublicJwk> = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let object = key.as_object().ok_or_else(|| JwkError::Key {
                index,
                kid: None,
                message: "is not a JSON object".into(),
            })?;
            let kid = object.get("kid").and_then(Value::as_str).map(str::to_owned);
            let wrap = |message: String| JwkError::Key { index, kid: kid.clone(), message };
            let Some(jwk) = parse_jwk(object, allowed).map_err(wrap)? else { continue };
            if let Some(kid) = &jwk.kid
                && out.iter().any(|k| k.kid.as_ref() == Some(kid))
            {
                return Err(JwkError::DuplicateKid(kid.clone()));
            }
            out.push(jwk);
        }
        if out.is_empty() {
            return Err(JwkError::NoKeys);
        }
        Ok(JwkSet { keys: out })
    }

    /// A set of exactly the given keys (used for rex's own token key).
    pub fn from_keys(keys: Vec<PublicJwk>) -> JwkSet {
        JwkSet { keys }
    }

    pub fn keys(&self) -> &[PublicJwk] {
        &self.keys
    }

    /// The key for a token: by `kid` when the token names one; without a `kid`, the only key of a
    /// one-key set. `None` when no key matches (the caller reports an unknown key).
    pub fn select(&self, kid: Option<&str>) -> Option<&PublicJwk> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

/// Members that only private JWKs carry: a JWKS holding them leaks a secret.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn parse_jwk(object: &Map<String, Value>, allowed: &[Algorithm]) -> Result<Option<PublicJwk>, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        match object.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("\"{name}\" must be a string")),
        }
    };
    let kid = text("kid")?.map(str::to_owned);
    if text("use")?.is_some_and(|u| u != "sig") {
        return Ok(None); // an encryption key published alongside the signing keys
    }
    if let Some(found) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
        return Err(format!("contains the private member \"{found}\": publish only public keys (and rotate this one)"));
    }
    let alg = match text("alg")? {
        None => None,
        Some(name) => match Algorithm::from_name(name) {
            Some(alg) if allowed.contains(&alg) => Some(alg),
            _ => {
                return Err(format!("\"alg\" {:?} is not accepted here (accepted: {})", shorten(name), names(allowed)));
            }
        },
    };
    let base64_member = |name: &str| -> Result<Vec<u8>, String> {
        let value = text(name)?.ok_or_else(|| format!("\"{name}\" is missing"))?;
        b64url_decode(value).ok_or_else(|| format!("\"{name}\" is not base64url without padding"))
    };
    let kty = text("kty")?.ok_or("\"kty\" is missing")?;
    let (kind, key) = match kty {
        "RSA" => {
            let n = BigNum::from_slice(&base64_member("n")?).map_err(|e| e.to_string())?;
            let e = BigNum::from_slice(&base64_member("e")?).map_err(|e| e.to_string())?;
            if n.num_bits() < MIN_RSA_BITS as i32 {
                return Err(format!("RSA modulus has {} bits; at least {MIN_RSA_BITS} are required", n.num_bits()));
            }
            if e.num_bits() < 2 || !e.is_bit_set(0) || e.num_bits() > 64 {
                return Err("RSA exponent \"e\" is not a valid public exponent".into());
            }
            let rsa = Rsa::from_public_components(n, e).map_err(|e| e.to_string())?;
            (KeyKind::Rsa, PKey::from_rsa(rsa).map_err(|e| e.to_string())?)
        }
        "EC" => {
            let (kind, nid, size) = match text("crv")?.ok_or("\"crv\" is missing")? {
                "P-256" => (KeyKind::EcP256, Nid::X9_62_PRIME256V1, 32),
                "P-384" => (KeyKind::EcP384, Nid::SECP384R1, 48),
                other => return Err(format!("EC curve {:?} is not supported (P-256, P-384)", shorten(other))),
            };
            let (x, y) = (base64_member("x")?, base64_member("y")?);
            if x.len() != size || y.len() != size {
                return Err(format!("\"x\" and \"y\" must be {size} bytes each for this curve"));
            }
            let group = EcGroup::from_curve_name(nid).map_err(|e| e.to_string())?;
            let x = BigNum::from_slice(&x).map_err(|e| e.to_string())?;
            let y = BigNum::from_slice(&y).map_err(|e| e.to_string())?;
            let ec = EcKey::from_public_key_affine_coordinates(&group, &x, &y)
                .map_err(|_| "the EC point is not on the curve".to_string())?;
            ec.check_key().map_err(|_| "the EC public key is invalid".to_string())?;
            (kind, PKey::from_ec_key(ec).map_err(|e| e.to_string())?)
        }
        other => return Err(format!("key type {:?} is not accepted (RSA or EC only)", shorten(other))),
    };
    if let Some(alg) = alg
        && !kind.supports(alg)
    {
        return Err(format!("\"alg\" {} does not match a {kind:?} key", alg.name()));
    }
    if !allowed.iter().any(|a| kind.supports(*a)) {
        return Err(format!("a {kind:?} key cannot verify any accepted algorithm ({})", names(allowed)));
    }
    Ok(Some(PublicJwk { kid, kind, alg, key }))
}

fn names(algs: &[Algorithm]) -> String {
    algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
}

/// The public JWK of an OpenSSL key (RSA or EC P-256/P-384) with only the required members, in the
/// lexicographic order RFC 7638 uses for thumbprints.
pub fn public_jwk_members<T: openssl::pkey::HasPublic>(key: &PKey<T>) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    match KeyKind::of(key).ok_or("unsupported key type (RSA, EC P-256 or P-384 only)")? {
        KeyKind::Rsa => {
            let rsa = key.rsa().map_err(|e| e.to_string())?;
            map.insert("e".into(), b64url_encode(rsa.e().to_vec()).into());
            map.insert("kty".into(), "RSA".into());
            map.insert("n".into(), b64url_encode(rsa.n().to_vec()).into());
        }
        kind @ (KeyKind::EcP256 | KeyKind::EcP384) => {
            let (crv, size) = if kind == KeyKind::EcP256 { ("P-256", 32) } else { ("P-384", 48) };
            let ec = key.ec_key().map_err(|e| e.to_string())?;
            let mut ctx = BigNumContext::new().map_err(|e| e.to_string())?;
            let (mut x, mut y) = (BigNum::new().map_err(|e| e.to_string())?, BigNum::new().map_err(|e| e.to_string())?);
            ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx).map_err(|e| e.to_string())?;
            map.insert("crv".into(), crv.into());
            map.insert("kty".into(), "EC".into());
            map.insert("x".into(), b64url_encode(x.to_vec_padded(size).map_err(|e| e.to_string())?).into());
            map.insert("y".into(), b64url_encode(y.to_vec_padded(size).map_err(|e| e.to_string())?).into());
        }
    }
    Ok(map)
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): a stable `kid` for a key.
pub fn jwk_thumbprint<T: openssl::pkey::HasPublic>(key: &PKey<T>) -> Result<String, String> {
    let members = public_jwk_members(key)?;
    let canonical = serde_json::to_string(&Value::Object(members)).map_err(|e| e.to_string())?;
    Ok(b64url_encode(sha256(canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ec_p256_key, ec_p384_key, jwks_of, rsa_key};
    use serde_json::json;

    const PARTNER: &[Algorithm] = &[Algorithm::RS384, Algorithm::ES384];

    #[test]
    fn parses_rsa_and_ec_keys_by_kid() {
        let (rsa, ec) = (rsa_key(), ec_p384_key());
        let set = JwkSet::from_value(&jwks_of(&[(&rsa, "r1"), (&ec, "e1")]), PARTNER).unwrap();
        assert_eq!(set.keys().len(), 2);
        let r = set.select(Some("r1")).unwrap();
        assert_eq!(r.kind, KeyKind::Rsa);
        assert!(r.key.public_eq(&rsa));
        assert_eq!(set.select(Some("e1")).unwrap().kind, KeyKind::EcP384);
        assert!(set.select(Some("nope")).is_none());
        assert!(set.select(None).is_none(), "no kid and two keys: ambiguous");
        let single = JwkSet::from_value(&jwks_of(&[(&ec, "e1")]), PARTNER).unwrap();
        assert_eq!(single.select(None).unwrap().kind, KeyKind::EcP384);
    }

    #[test]
    fn refuses_what_rex_cannot_use() {
        let ec256 = ec_p256_key();
        let err = JwkSet::from_value(&jwks_of(&[(&ec256, "a")]), PARTNER).unwrap_err();
        assert!(err.to_string().contains("cannot verify any accepted algorithm"), "{err}");
        // ... but P-256 is fine for the identity provider (ES256).
        JwkSet::from_value(&jwks_of(&[(&ec256, "a")]), &[Algorithm::ES256]).unwrap();

        let cases: Vec<(Value, &str)> = vec![
            (json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), "private member"),
            (json!({"keys": [{"kty": "oct"}]}), "key type \"oct\" is not accepted"),
            (json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}), "at least 2048"),
            (json!({"keys": [{"kty": "RSA", "e": "AQAB"}]}), "\"n\" is missing"),
            (json!({"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}), "not supported"),
            (json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}), "48 bytes"),
            (
                json!({"keys": [{"kty": "EC", "crv": "P-384", "x": b64url_encode([1u8; 48]), "y": b64url_encode([2u8; 48])}]}),
                "not on the curve",
            ),
            (json!({"keys": []}), "no usable signing key"),
            (json!({"key": []}), "\"keys\" array"),
            (json!({"keys": ["x"]}), "not a JSON object"),
        ];
        for (jwks, expected) in cases {
            let err = JwkSet::from_value(&jwks, PARTNER).unwrap_err().to_string();
            assert!(err.contains(expected), "{jwks}: {err}");
        }
        assert!(matches!(JwkSet::parse("{", PARTNER), Err(JwkError::NotJson(_))));
    }

    #[test]
    fn alg_member_is_checked_and_enc_keys_skipped() {
        let rsa = rsa_key();
        let mut jwks = jwks_of(&[(&rsa, "r1")]);
        jwks["keys"][0]["alg"] = "RS256".into();
        let err = JwkSet::from_value(&jwks, PARTNER).unwrap_err().to_string();
        assert!(err.contains("\"alg\" \"RS256\" is not accepted here"), "{err}");
        jwks["keys"][0]["alg"] = "ES384".into();
        let err = JwkSet::from_value(&jwks, PARTNER).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        jwks["keys"][0]["alg"] = "RS384".into();
        let set = JwkSet::from_value(&jwks, PARTNER).unwrap();
        assert!(set.keys()[0].supports(Algorithm::RS384));

        let mut two = jwks_of(&[(&rsa, "enc"), (&ec_p384_key(), "sig")]);
        two["keys"][0]["use"] = "enc".into();
        let set = JwkSet::from_value(&two, PARTNER).unwrap();
        assert_eq!(set.keys().len(), 1);
        assert_eq!(set.select(None).unwrap().kid.as_deref(), Some("sig"));
    }

    #[test]
    fn duplicate_kid_refused() {
        let (a, b) = (ec_p384_key(), ec_p384_key());
        let err = JwkSet::from_value(&jwks_of(&[(&a, "k"), (&b, "k")]), PARTNER).unwrap_err();
        assert_eq!(err, JwkError::DuplicateKid("k".into()));
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 section 3.1 example key and thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let rsa = Rsa::from_public_components(
            BigNum::from_slice(&b64url_decode(n).unwrap()).unwrap(),
            BigNum::from_slice(&b64url_decode("AQAB").unwrap()).unwrap(),
        )
        .unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        assert_eq!(jwk_thumbprint(&key).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
