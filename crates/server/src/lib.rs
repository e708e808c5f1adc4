//! rex's HTTP server: the FHIR REST API over axum. Routes are split by FHIR interaction; every error
//! becomes an OperationOutcome in `error.rs`; the store does all persistence.

pub mod access;
pub mod alerts;
pub mod audit;
pub mod binary;
mod bundles;
mod error;
mod http;
pub mod interactions;
mod language;
mod media;
pub mod mtls;
pub mod notifications;
pub mod operations;
pub mod outbound;
pub mod retention;
mod run;
pub mod security;
pub mod validation;
mod xml;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rex_auth::TokenSigner;
use rex_fhir::IssueCode;
use rex_i18n::msg;
use rex_store::Store;
use serde_json::Value;
use tower_http::catch_panic::CatchPanicLayer;

use access::Caller;
pub use error::ApiError;
pub use http::{BodyLimits, DEFAULT_LARGE_BODY_BYTES, DEFAULT_LARGE_BODY_SLOTS, LargeBodies, Prefer};
use interactions::write::{Target, WriteOp, execute};
use interactions::{base, capabilities, history, message, read, rest_write, search, validate};
use rex_referral::RoutingConfig;
use rex_referral::task::queue_service;
use rex_store::Isolation;
use rex_validation::{UnknownProfiles, Validator};
pub use run::{Delivery, Listeners, RunConfig, run};
use security::Security;
use validation::PartnerProfiles;

/// Default largest request body: 32 MiB, room for a referral with imaging reports attached.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The FHIR base URL clients use, without a trailing slash (`http://127.0.0.1:8080/fhir`);
    /// it appears in Location headers and Bundle links.
    pub base_url: String,
    pub limits: BodyLimits,
    /// How many large JSON bodies are worked on at once.
    pub large_bodies: LargeBodies,
    /// Hosts notifications may go to whatever their addresses (`--delivery-allow-host`).
    pub delivery_targets: outbound::DeliveryTargets,
    /// The video link of a booked consult: `{room}` becomes a fresh unguessable id, `{appointment}`
    /// the Appointment id (`--video-link-template`).
    pub video_link_template: String,
    /// What a `meta.profile` rex does not know does to a resource, unless the partner's
    /// configuration says otherwise (`--unknown-profiles`).
    pub unknown_profiles: UnknownProfiles,
    /// rex's key (`--token-key`): signs access tokens and the opinions rex issues (Provenance
    /// signatures); its public half is published at `/auth/jwks`.
    pub signer: Arc<TokenSigner>,
    /// The mail relay escalation alerts go through (`--smtp-relay`); `None` when none is configured.
    pub mailer: Option<alerts::Mailer>,
}

impl Config {
    /// Defaults for a server reachable at `addr`, with a fresh signing key.
    pub fn for_address(addr: SocketAddr) -> Config {
        let base_url = format!("http://{addr}/fhir");
        // Generating a P-384 key only fails if OpenSSL itself is broken.
        let signer = Arc::new(TokenSigner::generate(base_url.clone()).expect("OpenSSL generates an EC P-384 key"));
        Config {
            signer,
            base_url,
            limits: BodyLimits { max_bytes: DEFAULT_MAX_BODY_BYTES, max_depth: rex_fhir::json::DEFAULT_MAX_DEPTH },
            large_bodies: LargeBodies::new(http::DEFAULT_LARGE_BODY_BYTES, http::DEFAULT_LARGE_BODY_SLOTS),
            delivery_targets: outbound::DeliveryTargets::default(),
            video_link_template: interactions::consult::DEFAULT_VIDEO_LINK_TEMPLATE.to_string(),
            unknown_profiles: UnknownProfiles::default(),
            mailer: None,
        }
    }
}

/// What every request handler shares.
pub struct App {
    pub store: Store,
    pub config: Config,
    /// The routing rules referrals are queued by.
    pub routing: RoutingConfig,
    /// Profile validation of everything written and of `$validate`.
    pub validator: Arc<Validator>,
    /// Extra profiles per partner (`profiles/partners/{id}/`).
    pub partner_profiles: PartnerProfiles,
    /// Partner and staff authentication; `None` only in development mode (`--dev`).
    pub security: Option<Security>,
    /// Request counters for `/metrics`.
    pub metrics: operations::Metrics,
    /// AuditEvents of reads and refusals, written in the background.
    pub audit: audit::AuditJournal,
    capability_statement: Value,
}

impl App {
    /// The validator with the policy for `caller`'s unknown profile claims: its partner's
    /// `unknown_profiles`, else the server's.
    pub fn checker(&self, caller: &Caller) -> validation::Checker {
        let partner = caller.partner().and_then(|id| self.security.as_ref()?.partners().get(id));
        // The security configuration was checked at start: a partner's policy is warn or reject.
        let partner_policy = partner.and_then(|p| p.unknown_profiles.as_deref()?.parse().ok());
        validation::Checker {
            validator: self.validator.clone(),
            unknown_profiles: partner_policy.unwrap_or(self.config.unknown_profiles),
        }
    }
}

/// Cheap-to-clone handle on the [`App`].
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    /// Builds the shared state and makes sure every queue of the routing rules exists as a
    /// HealthcareService (id = queue code), so Tasks can name their owner from the first referral,
    /// and every partner's configured notification endpoint as a Subscription.
    pub async fn start(
        store: Store,
        config: Config,
        routing: RoutingConfig,
        validator: Arc<Validator>,
        partner_profiles: PartnerProfiles,
        security: Option<Security>,
    ) -> Result<AppState, String> {
        alerts::check_targets(&routing, config.mailer.as_ref(), &config.delivery_targets).await?;
        let mut capability_statement = capabilities::capability_statement(&config.base_url);
        if let Some(security) = &security {
            capability_statement["rest"][0]["security"] = security::capability_security(security.token_url());
        }
        let state = AppState(Arc::new(App {
            store: store.clone(),
            config,
            routing,
            validator,
            partner_profiles,
            security,
            metrics: operations::Metrics::default(),
            audit: audit::AuditJournal::start(store.clone()),
            capability_statement,
        }));
        let sandbox = rex_referral::task::sandbox_queue();
        let queues = state.routing.queues.iter().chain([&sandbox]).map(queue_service);
        for resource in queues.chain(notifications::configured_subscriptions(&state).await?) {
            let resource_type = resource["resourceType"].as_str().unwrap_or_default().to_string();
            let id = resource["id"].as_str().unwrap_or_default().to_string();
            let op = WriteOp::Update { resource_type, target: Target::Id(id.clone()), resource, if_match: None };
            interactions::in_transaction(&state.store, Isolation::RowLocking, &op, |tx, op| {
                Box::pin(execute(tx, &Caller::Unrestricted, op.clone()))
            })
            .await
            .map_err(|err| format!("cannot write {id} at start: {:?}", err.issues))?;
        }
        Ok(state)
    }
}

/// The production router: the FHIR API behind authentication, and the public documents (the
/// CapabilityStatement, the SMART configuration, the token endpoint) beside it.
pub fn router(state: AppState) -> Router {
    let fhir = Router::new()
        .route("/fhir", post(base::handle))
        .route("/fhir/", post(base::handle))
        .route("/fhir/_history", get(history::system))
        .route("/fhir/$process-message", post(message::process))
        .route("/fhir/$validate", post(validate::system))
        .route("/fhir/$partner-scorecard", get(interactions::scorecard::operation))
        .route("/fhir/$sandbox-reset", post(interactions::sandbox::reset))
        .route(
            "/fhir/{type}",
            get(search::search_get)
                .post(rest_write::create)
                .put(rest_write::conditional_update)
                .delete(rest_write::conditional_delete),
        )
        .route("/fhir/{type}/_search", post(search::search_post))
        .route("/fhir/{type}/_history", get(history::of_type))
        .route(
            "/fhir/{type}/{id}",
            get(read::read)
                .post(validate::type_operation)
                .put(rest_write::update)
                .delete(rest_write::delete)
                .patch(rest_write::patch),
        )
        .route("/fhir/{type}/{id}/_history", get(history::of_instance))
        .route("/fhir/{type}/{id}/{operation}", post(validate::instance_operation))
        .route(
            "/fhir/Subscription/{id}/$status",
            get(notifications::status_operation).post(notifications::status_operation),
        )
        .route("/fhir/{type}/{id}/_history/{version}", get(read::vread))
        .route("/metrics", get(operations::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), xml::convert_request))
        .route_layer(middleware::from_fn_with_state(state.clone(), http::admit_large_bodies))
        .route_layer(middleware::from_fn_with_state(state.clone(), security::authenticate));
    let public = Router::new()
        .route("/fhir/metadata", get(capabilities::metadata))
        .route("/fhir/.well-known/smart-configuration", get(security::smart_configuration_document))
        .route("/.well-known/smart-configuration", get(security::smart_configuration_document))
        .route("/health/live", get(operations::live))
        .route("/health/ready", get(operations::ready))
        .route_layer(middleware::from_fn(security::label_route));
    // The token endpoint speaks OAuth (RFC 6749 JSON errors), not FHIR.
    let oauth = Router::new()
        .route("/auth/token", post(security::token))
        .route("/auth/jwks", get(security::jwks))
        .route_layer(middleware::from_fn(security::label_route));
    Router::new()
        .merge(fhir)
        .merge(public)
        .fallback(|| async { ApiError::not_found(msg!("no-endpoint")) })
        .layer(middleware::from_fn(outcome_for_bare_errors))
        .layer(middleware::from_fn(xml::convert_response))
        .layer(middleware::from_fn(language::negotiate))
        .merge(oauth)
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), security::log_request))
        .with_state(state)
}

/// Errors produced outside rex's handlers (an unmatched method, a malformed path) come without an
/// OperationOutcome; this gives them one, so every error a client sees is FHIR.
async fn outcome_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_fhir =
        response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/fhir+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_fhir {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (IssueCode::NotSupported, msg!("method-not-allowed")),
        StatusCode::NOT_FOUND => (IssueCode::NotFound, msg!("not-found")),
        s if s.is_server_error() => (IssueCode::Exception, msg!("internal-error")),
        s => (IssueCode::Invalid, msg!("malformed-request", reason = s.canonical_reason().unwrap_or("bad request"))),
    };
    ApiError::one(status, code, message).into_response()
}

/// Loads every `*.json` transaction Bundle in `dir` (sorted by name) when the database holds no
/// referrals yet, so a newcomer sees referrals at once. Returns how many Bundles were loaded.
pub async fn load_demo_data(state: &AppState, dir: &Path) -> Result<usize, String> {
    // The queues exist from the first start, so "no ServiceRequest yet" is what marks a fresh database.
    let scope = rex_store::HistoryScope::Type("ServiceRequest".into());
    if state.store.history(&scope, None, 1, 0).await.map_err(|e| e.to_string())?.total > 0 {
        return Ok(0);
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read demo data in {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let bundle: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        base::process_bundle(state, &Caller::Unrestricted, std::sync::Arc::new(bundle), Prefer::default())
            .await
            .map_err(|err| {
                let messages: Vec<String> = err
                    .issues
                    .iter()
                    .map(|i| format!("{} ({})", i.diagnostics, i.expression.as_deref().unwrap_or("-")))
                    .collect();
                format!("{} was refused: {}", file.display(), messages.join("; "))
            })?;
    }
    Ok(files.len())
}
