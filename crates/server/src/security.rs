//! Authentication in HTTP: the SMART Backend Services token endpoint, the SMART configuration
//! document, and the middleware that turns every FHIR request's bearer token into a [`Caller`],
//! applies per-partner rate limits and the SMART scope of the REST interaction, and records every
//! denied access as an AuditEvent. The building blocks are in `rex-auth`; see `docs/security.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rex_auth::ReplayCache;
use rex_auth::replay::{BoxFuture, ReplayCacheError};
use rex_auth::{
    AuthConfig, Authenticator, Interaction, OAuthError, OAuthErrorCode, OidcConfig, PartnerRegistry, PeerIdentity,
    TokenEndpoint, TokenRequest, TokenSigner, smart_configuration,
};
use rex_fhir::IssueCode;
use rex_i18n::msg;
use rex_store::Store;
use serde_json::{Value, json};

use crate::AppState;
use crate::access::Caller;
use crate::error::{ApiError, DeniedAccess};

/// Largest token request body: a client assertion is a few kilobytes.
const MAX_TOKEN_REQUEST_BYTES: usize = 64 * 1024;

/// Partner authentication and authorisation settings of a running server.
pub struct Security {
    authenticator: Authenticator,
    oidc: Option<Arc<OidcConfig>>,
    token_endpoint: TokenEndpoint,
    partners: Arc<PartnerRegistry>,
    rate_limits: RateLimits,
}

impl Security {
    /// `token_url` is the exact URL partners address their assertions to (`aud`); rex's access
    /// tokens are issued by `signer` (its issuer is the FHIR base URL).
    /// Used assertions are remembered in `store`, so every instance on that database refuses a
    /// replayed one.
    pub fn new(
        config: AuthConfig,
        signer: Arc<TokenSigner>,
        token_url: String,
        store: Store,
    ) -> Result<Security, String> {
        let partners = Arc::new(config.partners);
        let oidc = config.oidc.map(Arc::new);
        let authenticator = Authenticator::new(partners.clone(), signer.clone(), oidc.clone())?;
        let token_endpoint = TokenEndpoint {
            partners: partners.clone(),
            signer,
            token_url,
            replay: Arc::new(DatabaseReplayCache(store)),
        };
        Ok(Security { authenticator, oidc, token_endpoint, partners, rate_limits: RateLimits::default() })
    }

    /// The URL partners post their token requests to.
    pub fn token_url(&self) -> &str {
        &self.token_endpoint.token_url
    }

    pub fn partners(&self) -> &PartnerRegistry {
        &self.partners
    }

    /// The hospital identity provider staff tokens come from, if configured.
    pub fn oidc(&self) -> Option<&OidcConfig> {
        self.oidc.as_deref()
    }
}

/// The used client assertions in the database (see `rex_store::Store::record_assertion`).
struct DatabaseReplayCache(Store);

impl ReplayCache for DatabaseReplayCache {
    fn check_and_record<'a>(
        &'a self,
        key: &'a str,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayCacheError>> {
        Box::pin(async move {
            self.0.record_assertion(key, expires_at, now).await.map_err(|err| ReplayCacheError(err.to_string()))
        })
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `POST /auth/token`: the SMART Backend Services `client_credentials` grant.
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    let Some(security) = &state.security else {
        return oauth_error(OAuthError::new(
            OAuthErrorCode::InvalidRequest,
            "this server runs without authentication (--dev); it issues no tokens",
        ));
    };
    let peer = request.extensions().get::<PeerIdentity>().cloned();
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return oauth_error(OAuthError::new(
            OAuthErrorCode::InvalidRequest,
            "the token request must be application/x-www-form-urlencoded",
        ));
    }
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), MAX_TOKEN_REQUEST_BYTES).await else {
        return oauth_error(OAuthError::new(OAuthErrorCode::InvalidRequest, "the token request is too large"));
    };
    let exchanged = match TokenRequest::from_pairs(form_urlencoded::parse(&bytes).into_owned()) {
        Ok(token_request) => security.token_endpoint.exchange(&token_request, peer.as_ref(), now()).await,
        Err(err) => Err(err),
    };
    match exchanged {
        Ok(granted) => {
            tracing::info!(partner = %granted.client_id, scope = %granted.scope, "access token issued");
            no_store(Json(granted).into_response())
        }
        Err(err) => {
            tracing::warn!(client = err.client_id.as_deref().unwrap_or("-"), error = %err.code.as_str(),
                reason = %err.description, "token request refused");
            let partner = err.client_id.clone().unwrap_or_else(|| "unknown client".into());
            state.audit.denied(&format!("client:{partner}"), "POST", "/auth/token", None, &err.description).await;
            oauth_error(err)
        }
    }
}

fn oauth_error(err: OAuthError) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    no_store((status, Json(err.body())).into_response())
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /.well-known/smart-configuration` (also under the FHIR base, where SMART clients look).
pub async fn smart_configuration_document(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(security) = &state.security else {
        return Err(ApiError::not_found(msg!("no-smart-configuration")));
    };
    Ok(Json(smart_configuration(security.token_url(), security.partners())).into_response())
}

/// `GET /auth/jwks`: rex's public key, which verifies the signatures of the opinions it issues
/// (and its access tokens). Public, also with `--dev`.
pub async fn jwks(State(state): State<AppState>) -> Response {
    Json(state.config.signer.public_jwks()).into_response()
}

/// The route template of a request (`/fhir/{type}/{id}`), never its concrete path or query,
/// which can hold identifiers; logs and audit use it.
#[derive(Clone, Debug)]
pub struct RouteLabel(pub String);

/// The caller's label, put on the response for the request log.
#[derive(Clone, Debug)]
pub struct CallerLabel(pub String);

/// Labels the routes outside authentication (public documents, the token endpoint) for the log.
pub async fn label_route(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let mut response = next.run(request).await;
    response.extensions_mut().insert(RouteLabel(route));
    response
}

/// Runs on every FHIR route: establishes the [`Caller`], applies the partner's rate limit and the
/// SMART scope of the REST interaction, and audits refusals.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let method = request.method().clone();
    let caller = match &state.security {
        None => Caller::Unrestricted,
        Some(security) => {
            let authorization = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
            let peer = request.extensions().get::<PeerIdentity>();
            match security.authenticator.authenticate(authorization, peer, now()) {
                Ok(principal) => Caller::Authenticated(principal),
                Err(err) => {
                    state.audit.denied("unauthenticated", method.as_str(), &route, None, &err.to_string()).await;
                    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::UNAUTHORIZED);
                    let code = if status == StatusCode::UNAUTHORIZED { IssueCode::Login } else { IssueCode::Forbidden };
                    let mut response = ApiError::one(status, code, err.message()).into_response();
                    if let Ok(value) = HeaderValue::from_str(&err.www_authenticate()) {
                        response.headers_mut().insert(WWW_AUTHENTICATE, value);
                    }
                    return labelled(response, &route, "unauthenticated");
                }
            }
        }
    };
    let label = caller.label();
    if let (Some(security), Some(partner)) = (&state.security, caller.partner()) {
        crate::language::use_partner_language(security.partners.get(partner).and_then(|p| p.language));
    }
    if let (Some(security), Some(partner)) = (&state.security, caller.partner())
        && let Some(limit) = security.partners.get(partner).and_then(|p| p.rate_limit_per_minute)
        && let Err(wait) = security.rate_limits.take(partner, limit, Instant::now())
    {
        let mut response =
            ApiError::one(StatusCode::TOO_MANY_REQUESTS, IssueCode::Throttled, msg!("rate-limited", limit, wait))
                .into_response();
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(wait));
        return labelled(response, &route, &label);
    }
    let target = rest_target(&method, request.uri().path());
    if let Some((resource_type, interaction)) = &target
        && let Err(err) = caller.require(resource_type, *interaction)
    {
        let id = resource_id(request.uri().path());
        state.audit.denied(&label, method.as_str(), &route, id.as_deref(), &first_message(&err)).await;
        return labelled(err.into_response(), &route, &label);
    }
    let id = resource_id(request.uri().path());
    request.extensions_mut().insert(caller);
    let response = next.run(request).await;
    if let Some(DeniedAccess(reason)) = response.extensions().get::<DeniedAccess>() {
        state.audit.denied(&label, method.as_str(), &route, id.as_deref(), reason).await;
    }
    labelled(response, &route, &label)
}

fn first_message(err: &ApiError) -> String {
    err.issues.first().map(|i| i.diagnostics.clone()).unwrap_or_default()
}

fn labelled(mut response: Response, route: &str, caller: &str) -> Response {
    response.extensions_mut().insert(RouteLabel(route.to_string()));
    response.extensions_mut().insert(CallerLabel(caller.to_string()));
    response
}

/// `Type/id` of a request path that addresses one resource, for the AuditEvent entity.
fn resource_id(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_start_matches("/fhir").split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [resource_type, id, ..] if !resource_type.starts_with(['$', '_']) && !id.starts_with(['$', '_']) => {
            Some(format!("{resource_type}/{id}"))
        }
        _ => None,
    }
}

/// The resource type and SMART interaction of a REST request, when its path says so. Operations
/// (`$...`) and the base (transactions, messages) check each resource they touch instead.
pub fn rest_target(method: &Method, path: &str) -> Option<(String, Interaction)> {
    let segments: Vec<&str> = path.strip_prefix("/fhir")?.split('/').filter(|s| !s.is_empty()).collect();
    let (resource_type, rest) = segments.split_first()?;
    if resource_type.starts_with(['$', '_']) || *resource_type == "metadata" || resource_type.starts_with('.') {
        return None;
    }
    let interaction = match (method, rest) {
        (&Method::GET | &Method::HEAD, []) => Interaction::Search,
        (&Method::POST, ["_search"]) => Interaction::Search,
        (&Method::GET, ["_history"]) => Interaction::Search,
        (&Method::POST, []) => Interaction::Create,
        (&Method::PUT, []) | (&Method::PUT, [_]) | (&Method::PATCH, [_]) => Interaction::Update,
        (&Method::DELETE, []) | (&Method::DELETE, [_]) => Interaction::Delete,
        (&Method::GET | &Method::HEAD, [id, ..]) if !id.starts_with('$') => Interaction::Read,
        _ => return None,
    };
    Some((resource_type.to_string(), interaction))
}

/// Per-partner token buckets: `limit` requests per minute, refilled continuously, so a burst of
/// up to `limit` is allowed after a quiet minute. Per instance (see `docs/security.md`).
#[derive(Default)]
struct RateLimits {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimits {
    /// Takes one request from `partner`'s bucket, or says how many seconds until one is free.
    fn take(&self, partner: &str, limit: u32, now: Instant) -> Result<(), u64> {
        let per_second = f64::from(limit) / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, last) = buckets.entry(partner.to_string()).or_insert((f64::from(limit), now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_second).min(f64::from(limit));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Logs one line per request: request id, method, route template, status, latency and caller.
/// Never the concrete path, the query, headers or bodies, which can carry identifiers and tokens.
pub async fn log_request(State(state): State<AppState>, request: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = request.method().clone();
    let mut response = next.run(request).await;
    let route = response.extensions().get::<RouteLabel>().map(|r| r.0.clone()).unwrap_or_else(|| "-".into());
    let caller = response.extensions().get::<CallerLabel>().map(|c| c.0.clone()).unwrap_or_else(|| "-".into());
    let latency = started.elapsed().as_secs_f64();
    state.metrics.record(method.as_str(), &route, response.status().as_u16(), latency, &caller);
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        latency_ms = latency * 1000.0,
        caller = %caller,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The `rest.security` of the CapabilityStatement when partners authenticate (SMART on FHIR).
pub fn capability_security(token_url: &str) -> Value {
    json!({
        "cors": false,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                  "code": "SMART-on-FHIR"}]}],
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                       "extension": [{"url": "token", "valueUri": token_url}]}],
        "description": "SMART Backend Services (client_credentials with a private_key_jwt assertion) for partners; \
                        OIDC bearer tokens for hospital staff; see /.well-known/smart-configuration"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_targets_follow_the_smart_interaction_mapping() {
        let t = |m: Method, p: &str| rest_target(&m, p);
        assert_eq!(t(Method::GET, "/fhir/Patient/1"), Some(("Patient".into(), Interaction::Read)));
        assert_eq!(t(Method::GET, "/fhir/Patient/1/_history/2"), Some(("Patient".into(), Interaction::Read)));
        assert_eq!(t(Method::GET, "/fhir/Patient"), Some(("Patient".into(), Interaction::Search)));
        assert_eq!(t(Method::POST, "/fhir/Patient/_search"), Some(("Patient".into(), Interaction::Search)));
        assert_eq!(t(Method::GET, "/fhir/Patient/_history"), Some(("Patient".into(), Interaction::Search)));
        assert_eq!(t(Method::POST, "/fhir/Patient"), Some(("Patient".into(), Interaction::Create)));
        assert_eq!(t(Method::PUT, "/fhir/Patient/1"), Some(("Patient".into(), Interaction::Update)));
        assert_eq!(t(Method::PATCH, "/fhir/Patient/1"), Some(("Patient".into(), Interaction::Update)));
        assert_eq!(t(Method::DELETE, "/fhir/Patient"), Some(("Patient".into(), Interaction::Delete)));
        assert_eq!(t(Method::POST, "/fhir/Task/1/$claim"), None);
        assert_eq!(t(Method::POST, "/fhir"), None);
        assert_eq!(t(Method::GET, "/fhir/metadata"), None);
        assert_eq!(t(Method::GET, "/metrics"), None);
    }

    #[test]
    fn a_rate_limit_allows_a_burst_then_asks_to_wait() {
        let limits = RateLimits::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.take("a", 3, start), Ok(()));
        }
        assert_eq!(limits.take("a", 3, start), Err(20));
        assert_eq!(limits.take("b", 3, start), Ok(()));
        assert_eq!(limits.take("a", 3, start + std::time::Duration::from_secs(20)), Ok(()));
    }
}
