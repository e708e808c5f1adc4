//! End-to-end tests of the token flow without HTTP: configuration → client assertion → token
//! endpoint → access token → `Principal`, plus staff tokens and certificate binding.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::config::{AuthConfig, OidcConfig};
use crate::mint::{SigningKey, StaffTokenSpec, mint_client_assertion, mint_staff_token};
use crate::mtls::PeerIdentity;
use crate::principal::{AuthError, Authenticator, Principal, StaffRole};
use crate::replay::InMemoryReplayCache;
use crate::scope::Interaction;
use crate::testutil::{ec_p256_key, ec_p384_key, hs256_token, jwks_of, rsa_key, unsigned_token};
use crate::token::{OAuthErrorCode, TokenEndpoint, TokenRequest, TokenSigner};
use crate::{CLIENT_ASSERTION_TYPE, jwt};

const TOKEN_URL: &str = "https://rex.example/auth/token";
const ISSUER: &str = "https://rex.example/fhir";
const IDP: &str = "https://idp.hospital.example/realms/rex";
const NOW: i64 = 1_700_000_000;
const CERT_A: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
const CERT_OTHER: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

struct Fixture {
    endpoint: TokenEndpoint,
    auth: Authenticator,
    oidc: Arc<OidcConfig>,
    a_ec: SigningKey,
    a_rsa: SigningKey,
    b_ec: SigningKey,
    staff: SigningKey,
}

fn fixture() -> Fixture {
    let (a_ec, a_rsa, b_ec, staff_key) = (ec_p384_key(), rsa_key(), ec_p384_key(), rsa_key());
    let text = format!(
        r#"
[oidc]
issuer = "{IDP}"
audience = "rex"
jwks = '{staff_jwks}'
[oidc.claims]
role = "realm_access.roles"

[[partner]]
id = "hospital-a"
name = "Hospital A"
organization_identifier = {{ system = "urn:ietf:rfc:3986", value = "urn:oid:1.2.3" }}
jwks = '{a_jwks}'
scopes = ["system/ServiceRequest.cr", "system/Task.rs", "system/Patient.read"]
client_cert_sha256 = "{CERT_A}"

[[partner]]
id = "hospital-b"
name = "Hospital B"
organization_identifier = {{ system = "urn:ietf:rfc:3986", value = "urn:oid:1.2.4" }}
jwks = '{b_jwks}'
scopes = ["system/*.cruds"]
"#,
        staff_jwks = jwks_of(&[(&staff_key, "staff")]),
        a_jwks = jwks_of(&[(&a_ec, "a-ec"), (&a_rsa, "a-rsa")]),
        b_jwks = jwks_of(&[(&b_ec, "b-ec")]),
    );
    let config = AuthConfig::from_toml(&text, Path::new(".")).unwrap();
    let partners = Arc::new(config.partners);
    let oidc = Arc::new(config.oidc.unwrap());
    let signer = Arc::new(TokenSigner::generate(ISSUER).unwrap());
    let endpoint = TokenEndpoint {
        partners: partners.clone(),
        signer: signer.clone(),
        token_url: TOKEN_URL.into(),
        replay: Arc::new(InMemoryReplayCache::default()),
    };
    let auth = Authenticator::new(partners, signer, Some(oidc.clone())).unwrap();
    let key = |k, kid: &str| SigningKey::new(k).unwrap().with_kid(Some(kid.into()));
    Fixture {
        endpoint,
        auth,
        oidc,
        a_ec: key(a_ec, "a-ec"),
        a_rsa: key(a_rsa, "a-rsa"),
        b_ec: key(b_ec, "b-ec"),
        staff: key(staff_key, "staff"),
    }
}

fn assertion_claims(client: &str) -> Map<String, Value> {
    json!({
        "iss": client, "sub": client, "aud": TOKEN_URL,
        "exp": NOW + 240, "iat": NOW, "jti": uuid::Uuid::new_v4().to_string(),
    })
    .as_object()
    .unwrap()
    .clone()
}

fn request(assertion: &str, scope: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("client_credentials".into()),
        client_assertion_type: Some(CLIENT_ASSERTION_TYPE.into()),
        client_assertion: Some(assertion.into()),
        scope: Some(scope.into()),
        client_id: None,
    }
}

fn peer(fingerprint: &str) -> PeerIdentity {
    PeerIdentity { sha256_fingerprint_hex: fingerprint.into(), subject_alt_names: vec![] }
}

impl Fixture {
    async fn token_for(&self, key: &SigningKey, client: &str, scope: &str, peer: Option<&PeerIdentity>) -> String {
        let assertion = mint_client_assertion(key, client, TOKEN_URL, NOW).unwrap();
        self.endpoint.exchange(&request(&assertion, scope), peer, NOW).await.unwrap().access_token
    }
}

#[tokio::test]
async fn valid_assertions_get_tokens_that_work() {
    let f = fixture();
    for key in [&f.a_ec, &f.a_rsa] {
        let assertion = mint_client_assertion(key, "hospital-a", TOKEN_URL, NOW).unwrap();
        let response = f
            .endpoint
            .exchange(
                &request(&assertion, "system/ServiceRequest.c system/Task.cruds system/Observation.rs"),
                None,
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(response.token_type, "bearer");
        assert_eq!(response.expires_in, 300);
        assert_eq!(response.scope, "system/ServiceRequest.c system/Task.rs");
        assert_eq!(response.client_id, "hospital-a");
        let body = serde_json::to_value(&response).unwrap();
        assert_eq!(
            body.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["access_token", "token_type", "expires_in", "scope"]
        );

        let header = format!("Bearer {}", response.access_token);
        let principal = f.auth.authenticate(Some(&header), None, NOW + 10).unwrap();
        let Principal::Partner { id, scopes, cert_thumbprint } = &principal else { panic!("{principal:?}") };
        assert_eq!(id, "hospital-a");
        assert_eq!(scopes.to_string(), "system/ServiceRequest.c system/Task.rs");
        assert_eq!(*cert_thumbprint, None);
        assert!(principal.allows("ServiceRequest", Interaction::Create));
        assert!(principal.allows("Task", Interaction::Search));
        assert!(!principal.allows("ServiceRequest", Interaction::Read), "granted subset only, not all allowed");
        assert!(!principal.allows("Patient", Interaction::Read));
    }
}

#[tokio::test]
async fn bad_assertions_are_refused() {
    let f = fixture();
    let sign = |claims: &Map<String, Value>, key: &SigningKey| key.sign(claims, Some("JWT")).unwrap();
    let with = |edit: &dyn Fn(&mut Map<String, Value>)| {
        let mut claims = assertion_claims("hospital-a");
        edit(&mut claims);
        claims
    };
    let a_public_pem = {
        let jwk = &f.a_rsa.public_jwks()["keys"][0];
        let set = crate::jwk::JwkSet::from_value(&json!({"keys": [jwk]}), jwt::PARTNER_ALGORITHMS).unwrap();
        set.keys()[0].key.public_key_to_pem().unwrap()
    };
    let p256 = SigningKey::new(ec_p256_key()).unwrap().with_kid(Some("a-ec".into()));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong signature",
            sign(&assertion_claims("hospital-a"), &f.b_ec.clone().with_kid(Some("a-ec".into()))),
            "signature verification failed",
        ),
        (
            "unknown kid",
            sign(&assertion_claims("hospital-a"), &f.a_ec.clone().with_kid(Some("nope".into()))),
            "no configured key matches kid \"nope\"",
        ),
        ("no kid, several keys", sign(&assertion_claims("hospital-a"), &f.a_ec.clone().with_kid(None)), "without kid"),
        ("expired", sign(&with(&|c| drop(c.insert("exp".into(), (NOW - 1).into()))), &f.a_ec), "expired"),
        ("expires now", sign(&with(&|c| drop(c.insert("exp".into(), NOW.into()))), &f.a_ec), "expired"),
        (
            "exp too far",
            sign(&with(&|c| drop(c.insert("exp".into(), (NOW + 3600).into()))), &f.a_ec),
            "more than 300 seconds",
        ),
        ("no exp", sign(&with(&|c| drop(c.remove("exp"))), &f.a_ec), "\"exp\""),
        ("exp as string", sign(&with(&|c| drop(c.insert("exp".into(), "soon".into()))), &f.a_ec), "\"exp\""),
        (
            "wrong aud",
            sign(&with(&|c| drop(c.insert("aud".into(), "https://rex.example/token".into()))), &f.a_ec),
            "token URL",
        ),
        (
            "aud with trailing slash",
            sign(&with(&|c| drop(c.insert("aud".into(), format!("{TOKEN_URL}/").into()))), &f.a_ec),
            "token URL",
        ),
        ("no aud", sign(&with(&|c| drop(c.remove("aud"))), &f.a_ec), "token URL"),
        (
            "iss != sub",
            sign(&with(&|c| drop(c.insert("sub".into(), "hospital-b".into()))), &f.a_ec),
            "\"sub\" must equal \"iss\"",
        ),
        ("no sub", sign(&with(&|c| drop(c.remove("sub"))), &f.a_ec), "\"sub\""),
        ("unknown client", sign(&assertion_claims("hospital-z"), &f.a_ec), "not a configured partner"),
        (
            "another partner's key",
            sign(&assertion_claims("hospital-b"), &f.a_ec.clone().with_kid(Some("b-ec".into()))),
            "signature verification failed",
        ),
        ("no jti", sign(&with(&|c| drop(c.remove("jti"))), &f.a_ec), "\"jti\""),
        ("empty jti", sign(&with(&|c| drop(c.insert("jti".into(), "".into()))), &f.a_ec), "\"jti\""),
        ("nbf in future", sign(&with(&|c| drop(c.insert("nbf".into(), (NOW + 120).into()))), &f.a_ec), "not valid yet"),
        ("iat in future", sign(&with(&|c| drop(c.insert("iat".into(), (NOW + 120).into()))), &f.a_ec), "not valid yet"),
        ("alg none", unsigned_token("none", &assertion_claims("hospital-a")), "\"none\" is not accepted"),
        (
            "HS256 with the public key as secret",
            hs256_token("HS256", Some("a-rsa"), &assertion_claims("hospital-a"), &a_public_pem),
            "\"HS256\" is not accepted",
        ),
        ("ES256", sign(&assertion_claims("hospital-a"), &p256), "algorithm ES256 is not accepted here"),
        ("garbage", "not-a-jwt".into(), "malformed"),
    ];
    for (name, assertion, expected) in cases {
        let error = f.endpoint.exchange(&request(&assertion, "system/Task.rs"), None, NOW).await.unwrap_err();
        assert_eq!(error.code, OAuthErrorCode::InvalidClient, "{name}: {error}");
        assert_eq!(error.status(), 401, "{name}");
        assert!(error.description.contains(expected), "{name}: {:?} should contain {expected:?}", error.description);
        assert!(!error.description.contains(&assertion), "{name}: the assertion leaked into the error");
        assert_eq!(error.body()["error"], "invalid_client");
    }
    // Small clock skew is tolerated: nbf/iat 30 s ahead, exp 5 min + 30 s ahead.
    let skewed = with(&|c| {
        c.insert("iat".into(), (NOW + 30).into());
        c.insert("nbf".into(), (NOW + 30).into());
        c.insert("exp".into(), (NOW + 330).into());
    });
    f.endpoint.exchange(&request(&sign(&skewed, &f.a_ec), "system/Task.rs"), None, NOW).await.unwrap();
    // aud may be an array containing the token URL (RFC 7523).
    let array_aud = with(&|c| drop(c.insert("aud".into(), json!(["https://other.example", TOKEN_URL]))));
    f.endpoint.exchange(&request(&sign(&array_aud, &f.a_ec), "system/Task.rs"), None, NOW).await.unwrap();
}

#[tokio::test]
async fn replayed_jti_is_refused_until_it_expires() {
    let f = fixture();
    let assertion = mint_client_assertion(&f.a_ec, "hospital-a", TOKEN_URL, NOW).unwrap();
    f.endpoint.exchange(&request(&assertion, "system/Task.rs"), None, NOW).await.unwrap();
    let error = f.endpoint.exchange(&request(&assertion, "system/Task.rs"), None, NOW + 5).await.unwrap_err();
    assert_eq!(error.code, OAuthErrorCode::InvalidClient);
    assert!(error.description.contains("already used"), "{error}");
    assert_eq!(error.client_id.as_deref(), Some("hospital-a"));
    // Another partner may use the same jti value: replay keys are per client.
    let mut claims = assertion_claims("hospital-b");
    let jti = jwt::peek_claims_unverified(&assertion).unwrap()["jti"].clone();
    claims.insert("jti".into(), jti);
    let b = f.b_ec.sign(&claims, None).unwrap();
    f.endpoint.exchange(&request(&b, "system/Task.rs"), None, NOW + 5).await.unwrap();
    // A refused assertion does not burn its jti.
    let mut claims = assertion_claims("hospital-a");
    claims.insert("aud".into(), "https://wrong.example".into());
    let jti = claims["jti"].clone();
    f.endpoint.exchange(&request(&f.a_ec.sign(&claims, None).unwrap(), "system/Task.rs"), None, NOW).await.unwrap_err();
    let mut fixed = assertion_claims("hospital-a");
    fixed.insert("jti".into(), jti);
    f.endpoint.exchange(&request(&f.a_ec.sign(&fixed, None).unwrap(), "system/Task.rs"), None, NOW).await.unwrap();
}

#[tokio::test]
async fn request_errors() {
    let f = fixture();
    let good = || mint_client_assertion(&f.a_ec, "hospital-a", TOKEN_URL, NOW).unwrap();
    let mut cases: Vec<(TokenRequest, OAuthErrorCode, &str)> = Vec::new();
    let mut r = request(&good(), "system/Task.rs");
    r.grant_type = None;
    cases.push((r, OAuthErrorCode::InvalidRequest, "grant_type is required"));
    let mut r = request(&good(), "system/Task.rs");
    r.grant_type = Some("authorization_code".into());
    cases.push((r, OAuthErrorCode::UnsupportedGrantType, "client_credentials"));
    let mut r = request(&good(), "system/Task.rs");
    r.client_assertion_type = Some("urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into());
    cases.push((r, OAuthErrorCode::InvalidRequest, "client_assertion_type"));
    let mut r = request(&good(), "system/Task.rs");
    r.client_assertion = None;
    cases.push((r, OAuthErrorCode::InvalidRequest, "client_assertion is required"));
    cases.push((request(&good(), " "), OAuthErrorCode::InvalidRequest, "scope is required"));
    cases.push((
        request(&good(), "system/Observation.rs system/Task.d"),
        OAuthErrorCode::InvalidScope,
        "none of the requested scopes",
    ));
    cases.push((request(&good(), "patient/Task.read"), OAuthErrorCode::InvalidScope, "none of the requested scopes"));
    let mut r = request(&good(), "system/Task.rs");
    r.client_id = Some("hospital-b".into());
    cases.push((r, OAuthErrorCode::InvalidClient, "client_id does not match"));
    for (request, code, expected) in cases {
        let error = f.endpoint.exchange(&request, None, NOW).await.unwrap_err();
        assert_eq!(error.code, code, "{error}");
        assert_eq!(error.status(), if code == OAuthErrorCode::InvalidClient { 401 } else { 400 });
        assert!(error.description.contains(expected), "{error}");
    }

    let parsed = TokenRequest::from_pairs([
        ("grant_type", "client_credentials"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", "x.y.z"),
        ("scope", "system/Task.rs"),
        ("unrelated", "ignored"),
    ])
    .unwrap();
    assert_eq!(parsed, request("x.y.z", "system/Task.rs"));
    let error = TokenRequest::from_pairs([("scope", "a"), ("scope", "b")]).unwrap_err();
    assert_eq!((error.code, error.status()), (OAuthErrorCode::InvalidRequest, 400));
}

#[tokio::test]
async fn expired_forged_and_foreign_tokens_are_refused() {
    let f = fixture();
    let token = f.token_for(&f.a_ec, "hospital-a", "system/Task.rs", None).await;
    let bearer = |t: &str| format!("Bearer {t}");
    f.auth.authenticate(Some(&bearer(&token)), None, NOW + 299).unwrap();
    let expired = f.auth.authenticate(Some(&bearer(&token)), None, NOW + 300).unwrap_err();
    assert_eq!(expired, AuthError::InvalidToken("the token has expired".into()));
    assert_eq!(expired.status(), 401);
    assert!(expired.www_authenticate().contains("error=\"invalid_token\""));

    // Missing or non-bearer Authorization.
    assert_eq!(f.auth.authenticate(None, None, NOW).unwrap_err(), AuthError::MissingToken);
    assert_eq!(f.auth.authenticate(Some(&format!("Basic {token}")), None, NOW).unwrap_err(), AuthError::MissingToken);
    f.auth.authenticate(Some(&format!("bearer {token}")), None, NOW).unwrap();

    // A token from another rex key (same issuer name) does not verify.
    let other_signer = TokenSigner::generate(ISSUER).unwrap();
    let scopes = crate::scope::ScopeSet::parse("system/*.cruds").unwrap();
    let forged = other_signer.issue("hospital-a", &scopes, None, NOW).unwrap();
    assert!(
        matches!(f.auth.verify_token(&forged, NOW), Err(AuthError::InvalidToken(m)) if m.contains("no configured key") || m.contains("signature"))
    );

    // A partner's client assertion is not an access token.
    let assertion = mint_client_assertion(&f.a_ec, "hospital-a", TOKEN_URL, NOW).unwrap();
    assert_eq!(f.auth.verify_token(&assertion, NOW).unwrap_err(), AuthError::InvalidToken("unknown issuer".into()));

    // A JWT signed by rex's key but without typ at+jwt (e.g. some other rex-signed JWT).
    let tampered = {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = crate::encoding::b64url_encode(
            br#"{"iss":"https://rex.example/fhir","sub":"hospital-a","scope":"system/*.cruds"}"#,
        );
        parts.join(".")
    };
    assert!(matches!(f.auth.verify_token(&tampered, NOW), Err(AuthError::InvalidToken(m)) if m.contains("signature")));

    // A token for a partner since removed from the configuration.
    let gone = Authenticator::new(Arc::new(Default::default()), f.endpoint.signer.clone(), None).unwrap();
    assert_eq!(
        gone.verify_token(&token, NOW).unwrap_err(),
        AuthError::InvalidToken("the partner is no longer configured".into())
    );
}

#[tokio::test]
async fn wrong_scope_is_forbidden() {
    let f = fixture();
    let token = f.token_for(&f.a_ec, "hospital-a", "system/Task.rs", None).await;
    let principal = f.auth.verify_token(&token, NOW).unwrap();
    principal.require("Task", Interaction::Read).unwrap();
    let error = principal.require("Task", Interaction::Update).unwrap_err();
    assert_eq!(error.status(), 403);
    assert!(error.www_authenticate().contains("insufficient_scope"));
    assert!(
        principal.require("ServiceRequest", Interaction::Create).is_err(),
        "allowed for the partner but not granted"
    );
}

#[tokio::test]
async fn certificate_bound_tokens() {
    let f = fixture();
    let (cert_a, other) = (peer(CERT_A), peer(CERT_OTHER));
    // Issued over mTLS with A's registered certificate: bound to it.
    let bound = f.token_for(&f.a_ec, "hospital-a", "system/Task.rs", Some(&cert_a)).await;
    let claims = jwt::peek_claims_unverified(&bound).unwrap();
    assert_eq!(claims["cnf"]["x5t#S256"], cert_a.x5t_s256());
    let principal = f.auth.authenticate(Some(&format!("Bearer {bound}")), Some(&cert_a), NOW).unwrap();
    assert!(matches!(principal, Principal::Partner { cert_thumbprint: Some(ref t), .. } if t == CERT_A));
    for (peer, what) in [(Some(&other), "another certificate"), (None, "no mTLS")] {
        let error = f.auth.authenticate(Some(&format!("Bearer {bound}")), peer, NOW).unwrap_err();
        assert!(matches!(error, AuthError::CertificateMismatch(_)), "{what}: {error}");
        assert_eq!(error.status(), 403);
    }
    // A's certificate with an unregistered certificate at the token endpoint: refused.
    let assertion = mint_client_assertion(&f.a_ec, "hospital-a", TOKEN_URL, NOW).unwrap();
    let error = f.endpoint.exchange(&request(&assertion, "system/Task.rs"), Some(&other), NOW).await.unwrap_err();
    assert_eq!(error.code, OAuthErrorCode::InvalidClient);
    // B's assertion over A's certificate: refused at the token endpoint...
    let assertion = mint_client_assertion(&f.b_ec, "hospital-b", TOKEN_URL, NOW).unwrap();
    let error = f.endpoint.exchange(&request(&assertion, "system/Task.rs"), Some(&cert_a), NOW).await.unwrap_err();
    assert_eq!(error.code, OAuthErrorCode::InvalidClient);
    // ... and B's token (issued without mTLS) on A's connection: refused.
    let b_token = f.token_for(&f.b_ec, "hospital-b", "system/Task.rs", None).await;
    let error = f.auth.authenticate(Some(&format!("Bearer {b_token}")), Some(&cert_a), NOW).unwrap_err();
    assert!(matches!(error, AuthError::CertificateMismatch(_)), "{error}");
    // A's unbound token on A's registered certificate: accepted.
    let a_token = f.token_for(&f.a_ec, "hospital-a", "system/Task.rs", None).await;
    f.auth.authenticate(Some(&format!("Bearer {a_token}")), Some(&cert_a), NOW).unwrap();
    // B (no registered certificate) over mTLS with an unregistered certificate: bound token, works there only.
    let b_bound = f.token_for(&f.b_ec, "hospital-b", "system/Task.rs", Some(&other)).await;
    f.auth.authenticate(Some(&format!("Bearer {b_bound}")), Some(&other), NOW).unwrap();
    assert!(f.auth.authenticate(Some(&format!("Bearer {b_bound}")), Some(&cert_a), NOW).is_err());
}

fn staff_spec(role: StaffRole) -> StaffTokenSpec {
    StaffTokenSpec {
        subject: "dr-who".into(),
        role,
        practitioner_role: Some("PractitionerRole/pr-1".into()),
        queues: vec!["cardiology".into(), "oncology".into()],
        lifetime_seconds: 600,
    }
}

#[tokio::test]
async fn staff_tokens() {
    let f = fixture();
    let token = mint_staff_token(&f.staff, &f.oidc, &staff_spec(StaffRole::Specialist), NOW).unwrap();
    let principal = f.auth.authenticate(Some(&format!("Bearer {token}")), None, NOW + 1).unwrap();
    assert_eq!(
        principal,
        Principal::Staff {
            subject: "dr-who".into(),
            role: StaffRole::Specialist,
            practitioner_role: Some("PractitionerRole/pr-1".into()),
            queues: vec!["cardiology".into(), "oncology".into()],
        }
    );
    assert!(principal.allows("Task", Interaction::Update), "staff are limited by queues, not scopes");
    assert_eq!(
        f.auth.verify_token(&token, NOW + 600).unwrap_err(),
        AuthError::InvalidToken("the token has expired".into())
    );

    // A specialist needs a PractitionerRole; a coordinator does not.
    let mut spec = staff_spec(StaffRole::Specialist);
    spec.practitioner_role = None;
    let token = mint_staff_token(&f.staff, &f.oidc, &spec, NOW).unwrap();
    assert!(f.auth.verify_token(&token, NOW).is_err());
    spec.role = StaffRole::Coordinator;
    let token = mint_staff_token(&f.staff, &f.oidc, &spec, NOW).unwrap();
    assert!(matches!(f.auth.verify_token(&token, NOW).unwrap(), Principal::Staff { role: StaffRole::Coordinator, .. }));

    // Claims as an identity provider lays them out: nested role list, RS256, audience array.
    let claims = json!({
        "iss": IDP, "aud": ["account", "rex"], "exp": NOW + 60, "iat": NOW, "sub": "u-1",
        "realm_access": { "roles": ["offline_access", "specialist", "coordinator"] },
        "rex_queues": "cardiology", "practitioner_role": "https://rex.example/fhir/PractitionerRole/7",
    });
    let rs256 =
        f.staff.clone().with_algorithm(jwt::Algorithm::RS256).unwrap().sign(claims.as_object().unwrap(), None).unwrap();
    let principal = f.auth.verify_token(&rs256, NOW).unwrap();
    assert_eq!(
        principal,
        Principal::Staff {
            subject: "u-1".into(),
            role: StaffRole::Coordinator,
            practitioner_role: Some("PractitionerRole/7".into()),
            queues: vec!["cardiology".into()],
        }
    );
    let cases: Vec<(Value, &str)> = vec![
        (json!({"aud": "other"}), "aud"),
        (json!({"realm_access": {"roles": ["offline_access"]}}), "no rex role"),
        (json!({"sub": ""}), "no subject"),
        (json!({"practitioner_role": "Practitioner/7"}), "PractitionerRole reference"),
        (json!({"rex_queues": [1]}), "queues claim"),
        (json!({"nbf": NOW + 600}), "not valid yet"),
    ];
    for (edit, expected) in cases {
        let mut c = claims.as_object().unwrap().clone();
        for (k, v) in edit.as_object().unwrap() {
            c.insert(k.clone(), v.clone());
        }
        let token = f.staff.sign(&c, None).unwrap();
        let error = f.auth.verify_token(&token, NOW).unwrap_err().to_string();
        assert!(error.contains(expected), "{edit}: {error}");
    }
    // Staff tokens are refused on a partner's mTLS connection.
    let token = mint_staff_token(&f.staff, &f.oidc, &staff_spec(StaffRole::Admin), NOW).unwrap();
    let error = f.auth.authenticate(Some(&format!("Bearer {token}")), Some(&peer(CERT_A)), NOW).unwrap_err();
    assert!(matches!(error, AuthError::CertificateMismatch(_)));
    // Signed by a key the identity provider does not have.
    let stranger = SigningKey::new(rsa_key()).unwrap().with_kid(Some("staff".into()));
    let token = mint_staff_token(&stranger, &f.oidc, &staff_spec(StaffRole::Admin), NOW).unwrap();
    assert!(f.auth.verify_token(&token, NOW).unwrap_err().to_string().contains("signature"));
}

#[test]
fn signer_and_minting_keys() {
    assert!(TokenSigner::from_pem(&rsa_key().private_key_to_pem_pkcs8().unwrap(), ISSUER).is_err(), "ES384 only");
    let pem = ec_p384_key().private_key_to_pem_pkcs8().unwrap();
    let signer = TokenSigner::from_pem(&pem, ISSUER).unwrap();
    assert_eq!(TokenSigner::from_pem(&pem, ISSUER).unwrap().public_jwks(), signer.public_jwks(), "stable kid");
    assert!(TokenSigner::from_pem(b"junk", ISSUER).is_err());

    let p256 = SigningKey::new(ec_p256_key()).unwrap();
    assert!(mint_client_assertion(&p256, "a", TOKEN_URL, NOW).unwrap_err().contains("RS384 or ES384"));
    let key = SigningKey::from_pem(&pem).unwrap();
    assert_eq!(key.algorithm(), jwt::Algorithm::ES384);
    // Its public JWKS verifies what it signs, with the thumbprint kid.
    let jwks = crate::jwk::JwkSet::from_value(&key.public_jwks(), jwt::PARTNER_ALGORITHMS).unwrap();
    let assertion = mint_client_assertion(&key, "a", TOKEN_URL, NOW).unwrap();
    let verified = jwt::verify(&assertion, &jwks, jwt::PARTNER_ALGORITHMS).unwrap();
    assert_eq!(verified.header.kid.as_deref(), key.kid());
    assert_eq!(verified.claims["aud"], TOKEN_URL);
    assert!(verified.claims["exp"].as_i64().unwrap() - NOW <= 300);
}

#[test]
fn smart_configuration_document() {
    let f = fixture();
    let doc = crate::smart_configuration(TOKEN_URL, &f.endpoint.partners);
    assert_eq!(doc["token_endpoint"], TOKEN_URL);
    assert_eq!(doc["token_endpoint_auth_signing_alg_values_supported"], json!(["RS384", "ES384"]));
    assert_eq!(doc["grant_types_supported"], json!(["client_credentials"]));
    assert_eq!(
        doc["scopes_supported"],
        json!(["system/ServiceRequest.cr", "system/Task.rs", "system/Patient.read", "system/*.cruds"])
    );
}

#[test]
fn oidc_issuer_must_differ_from_rex() {
    let f = fixture();
    let mut oidc = (*f.oidc).clone();
    oidc.issuer = ISSUER.into();
    assert!(Authenticator::new(f.endpoint.partners.clone(), f.endpoint.signer.clone(), Some(Arc::new(oidc))).is_err());
}

#[test]
fn detached_signatures_verify_only_the_signed_payload() {
    let signer = TokenSigner::generate(ISSUER).unwrap();
    let payload =
        crate::jcs::canonical_json(&serde_json::json!({"resourceType": "DiagnosticReport", "conclusion": "ok"}));
    let jws = signer.sign_detached(payload.as_bytes(), "application/fhir+json").unwrap();
    assert_eq!(jws.split('.').nth(1), Some(""), "the payload is detached");
    signer.verify_detached(&jws, payload.as_bytes()).unwrap();
    // Verified with the published JWKS alone, as a partner does.
    let jwks = crate::jwk::JwkSet::from_value(&signer.public_jwks(), &[jwt::Algorithm::ES384]).unwrap();
    jwt::verify_detached(&jws, payload.as_bytes(), &jwks, &[jwt::Algorithm::ES384]).unwrap();
    let changed = payload.replace("ok", "ko");
    assert_eq!(signer.verify_detached(&jws, changed.as_bytes()), Err(jwt::JwtError::BadSignature));
    let other = TokenSigner::generate(ISSUER).unwrap();
    assert!(other.verify_detached(&jws, payload.as_bytes()).is_err(), "another key");
}
