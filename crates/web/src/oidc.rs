//! Staff sign-in through the hospital's OpenID Connect provider: the authorization-code flow with
//! PKCE (S256). `/ui/login` reads the provider's endpoints from its discovery document
//! (`{issuer}/.well-known/openid-configuration`) and sends the browser there with a fresh `state`,
//! `nonce` and code challenge; `/ui/callback` checks the `state`, exchanges the code with the code
//! verifier (and the client secret, when there is one), checks the ID token (signature with the
//! configured JWKS, issuer, audience = client id, expiry, `nonce`) and signs the user in with the
//! access token, verified exactly as the API verifies a staff token (its role, queues and
//! PractitionerRole claims).
//!
//! Between the two, `state`, `nonce` and verifier wait in a short-lived HttpOnly cookie of the
//! browser that started the sign-in, so any instance can finish it. It needs no signature: each
//! value is checked against something an attacker cannot make (the `state` the provider sends back,
//! the `nonce` inside the provider-signed ID token, the verifier by the provider against the
//! challenge it was given); changing it only breaks one's own sign-in.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rex_auth::OidcConfig;
use rex_auth::jwt::{OIDC_ALGORITHMS, verify};
use serde::Deserialize;
use serde_json::Value;

use crate::session::{User, csrf_matches, new_csrf_token};

/// The cookie holding a sign-in in progress.
pub const LOGIN_COOKIE: &str = "rex_login";
/// Seconds a sign-in may take at the provider.
pub const LOGIN_MAX_AGE: i64 = 600;
/// Time allowed for one request to the provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// rex as a client of the identity provider (`--oidc-client-id`, `REX_OIDC_CLIENT_SECRET`,
/// `--oidc-redirect-url`, `--oidc-scope`).
#[derive(Clone)]
pub struct OidcClient {
    pub client_id: String,
    /// For a confidential client (sent with HTTP Basic, `client_secret_basic`); `None` for a public one.
    pub client_secret: Option<String>,
    /// rex's `/ui/callback` as the browser reaches it, registered with the provider.
    pub redirect_url: String,
    /// Scopes asked for besides `openid` (what the provider needs to issue the access token for rex).
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("OidcClient")
            .field("client_id", &self.client_id)
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    id_token: String,
}

/// What the provider sends the browser back with.
#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The HTTP client that talks to the provider: no redirects, a timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_native_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROVIDER_TIMEOUT)
        .build()
        .unwrap_or_default()
}

async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let unreachable = |err: reqwest::Error| format!("the identity provider's discovery document is unavailable: {err}");
    let discovery: Discovery = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(unreachable)?
        .json()
        .await
        .map_err(|err| format!("the identity provider's discovery document is not valid: {err}"))?;
    // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer asked about.
    if discovery.issuer != issuer {
        return Err(format!("the identity provider's discovery document names another issuer ({})", discovery.issuer));
    }
    Ok(discovery)
}

/// Starts a sign-in at `now`: the provider's authorization URL to send the browser to, and the
/// value of [`LOGIN_COOKIE`] to keep until it comes back.
pub async fn start(
    http: &reqwest::Client,
    oidc: &OidcConfig,
    client: &OidcClient,
    now: i64,
) -> Result<(String, String), String> {
    let discovery = discover(http, &oidc.issuer).await?;
    let (state, nonce, verifier) = (new_csrf_token(), new_csrf_token(), new_csrf_token());
    let challenge = URL_SAFE_NO_PAD.encode(openssl::sha::sha256(verifier.as_bytes()));
    let scope = std::iter::once("openid").chain(client.scopes.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    let mut url = reqwest::Url::parse(&discovery.authorization_endpoint)
        .map_err(|_| "the identity provider's authorization_endpoint is not a URL".to_string())?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.client_id)
        .append_pair("redirect_uri", &client.redirect_url)
        .append_pair("scope", &scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok((url.into(), format!("{now}.{state}.{nonce}.{verifier}")))
}

/// Finishes a sign-in at `now`: the user of the access token the code is exchanged for, once the
/// `state`, the code verifier and the ID token's `nonce` have matched the [`LOGIN_COOKIE`] value.
pub async fn finish(
    http: &reqwest::Client,
    oidc: &OidcConfig,
    client: &OidcClient,
    login: Option<&str>,
    callback: &Callback,
    now: i64,
) -> Result<User, String> {
    let parts: Vec<&str> = login.unwrap_or_default().split('.').collect();
    let [issued, state, nonce, verifier] = parts[..] else {
        return Err("no sign-in was started in this browser; start again".into());
    };
    if issued.parse::<i64>().map_or(true, |issued| now - issued > LOGIN_MAX_AGE) {
        return Err("the sign-in took too long; start again".into());
    }
    if let Some(error) = &callback.error {
        return Err(format!("the identity provider did not sign you in ({error})"));
    }
    if !csrf_matches(Some(state), callback.state.as_deref()) {
        return Err("the sign-in's state does not match the one this browser started; start again".into());
    }
    let code = callback.code.as_deref().ok_or("the identity provider sent no code")?;
    let discovery = discover(http, &oidc.issuer).await?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", client.redirect_url.as_str()),
        ("code_verifier", verifier),
        ("client_id", client.client_id.as_str()),
    ];
    let mut request = http.post(&discovery.token_endpoint).form(&form);
    if let Some(secret) = &client.client_secret {
        // RFC 6749 §2.3.1: both form-encoded before Basic.
        let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
        request = request.basic_auth(encode(&client.client_id), Some(encode(secret)));
    }
    let response = request.send().await.map_err(|err| format!("the identity provider is unreachable: {err}"))?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        let error = body["error"].as_str().unwrap_or("no reason given");
        return Err(format!("the identity provider refused the code ({status}, {error})"));
    }
    let tokens: Tokens =
        response.json().await.map_err(|_| "the identity provider's token answer lacks a token".to_string())?;
    check_id_token(&tokens.id_token, oidc, &client.client_id, nonce, now)?;
    User::from_token(&tokens.access_token, oidc, now)
}

/// OpenID Connect Core §3.1.3.7: signed by the provider, from the issuer, for this client, not
/// expired, and with the `nonce` of this sign-in.
fn check_id_token(token: &str, oidc: &OidcConfig, client_id: &str, nonce: &str, now: i64) -> Result<(), String> {
    let claims =
        verify(token, &oidc.keys, OIDC_ALGORITHMS).map_err(|err| format!("the ID token is invalid: {err}"))?.claims;
    let audience_ok = match &claims.get("aud") {
        Some(Value::String(audience)) => audience == client_id,
        Some(Value::Array(audiences)) => audiences.iter().any(|audience| audience == client_id),
        _ => false,
    };
    if claims.get("iss").and_then(Value::as_str) != Some(oidc.issuer.as_str()) || !audience_ok {
        return Err("the ID token is not from the identity provider for rex".into());
    }
    if claims.get("exp").and_then(Value::as_i64).is_none_or(|exp| exp <= now) {
        return Err("the ID token has expired".into());
    }
    if !csrf_matches(Some(nonce), claims.get("nonce").and_then(Value::as_str)) {
        return Err("the ID token is not for this sign-in (nonce)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rex_auth::SigningKey;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn provider() -> (SigningKey, OidcConfig) {
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap();
        let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
        let key = SigningKey::new(key).unwrap();
        let toml =
            format!("[oidc]\nissuer = \"https://idp.test\"\naudience = \"rex\"\njwks = '{}'\n", key.public_jwks());
        let config = rex_auth::AuthConfig::from_toml(&toml, std::path::Path::new(".")).unwrap();
        (key, config.oidc.unwrap())
    }

    fn client() -> OidcClient {
        OidcClient {
            client_id: "rex-ui".into(),
            client_secret: None,
            redirect_url: "https://rex.test/ui/callback".into(),
            scopes: vec![],
        }
    }

    #[test]
    fn the_id_token_must_be_the_providers_for_this_client_and_this_sign_in() {
        let (key, oidc) = provider();
        let token = |claims: Value| key.sign(claims.as_object().unwrap(), None).unwrap();
        let good = json!({"iss": "https://idp.test", "aud": "rex-ui", "exp": NOW + 60, "nonce": "n1", "sub": "dr-lee"});
        assert_eq!(check_id_token(&token(good.clone()), &oidc, "rex-ui", "n1", NOW), Ok(()));
        let mut listed = good.clone();
        listed["aud"] = json!(["other", "rex-ui"]);
        assert_eq!(check_id_token(&token(listed), &oidc, "rex-ui", "n1", NOW), Ok(()));
        assert!(check_id_token(&token(good.clone()), &oidc, "rex-ui", "n2", NOW).unwrap_err().contains("nonce"));
        assert!(check_id_token(&token(good.clone()), &oidc, "other-client", "n1", NOW).is_err());
        assert!(check_id_token(&token(good.clone()), &oidc, "rex-ui", "n1", NOW + 61).unwrap_err().contains("expired"));
        let mut without_nonce = good;
        without_nonce.as_object_mut().unwrap().remove("nonce");
        assert!(check_id_token(&token(without_nonce), &oidc, "rex-ui", "n1", NOW).is_err());
        let (stranger, _) = provider();
        let forged = stranger
            .sign(
                json!({"iss": "https://idp.test", "aud": "rex-ui", "exp": NOW + 60, "nonce": "n1"})
                    .as_object()
                    .unwrap(),
                None,
            )
            .unwrap();
        assert!(check_id_token(&forged, &oidc, "rex-ui", "n1", NOW).unwrap_err().contains("invalid"));
    }

    #[tokio::test]
    async fn a_callback_without_its_sign_in_is_refused_before_the_provider_is_asked() {
        // The issuer does not exist: reaching for it would fail differently.
        let (_, oidc) = provider();
        let (http, client) = (http_client(), client());
        let refused = async |login: Option<&str>, state: &str| {
            let callback = Callback { code: Some("c".into()), state: Some(state.into()), error: None };
            finish(&http, &oidc, &client, login, &callback, NOW).await.unwrap_err()
        };
        assert!(refused(None, "s").await.contains("no sign-in was started"));
        assert!(refused(Some("garbage"), "s").await.contains("no sign-in was started"));
        let started_long_ago = format!("{}.s.n.v", NOW - LOGIN_MAX_AGE - 1);
        assert!(refused(Some(&started_long_ago), "s").await.contains("too long"));
        let started = format!("{}.s.n.v", NOW - 5);
        assert!(refused(Some(&started), "t").await.contains("state does not match"));
        let denied = Callback { code: None, state: Some("s".into()), error: Some("access_denied".into()) };
        let message = finish(&http, &oidc, &client, Some(&started), &denied, NOW).await.unwrap_err();
        assert!(message.contains("access_denied"), "{message}");
    }
}
