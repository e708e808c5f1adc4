//! `POST /fhir`: a transaction or batch Bundle posted to the base. A batch runs entry by entry, a
//! transaction that carries a referral goes to intake (`intake.rs`), any other to
//! `transaction.rs`; every partner submission is recorded for the scorecard.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rex_i18n::msg;
use rex_referral::Referral;
use serde_json::Value;

use super::intake;
use super::scorecard::{self, Endpoint};
use super::transaction::{parse_bundle, run_batch, run_transaction};
use super::{format_param, query_pairs};
use crate::AppState;
use crate::access::Caller;
use crate::bundles::AnswerBundle;
use crate::error::ApiError;
use crate::http::{BodyKind, Prefer, body_kind, check_accept, fhir_json, parse_json, read_body};
use crate::validation::{require_valid_bundle, rex_profile};

/// `POST /fhir` and `POST /fhir/`.
pub async fn handle(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let received = rex_store::now_micros();
    let mut submitted = None;
    let result = async {
        check_accept(format_param(&query_pairs(query.as_deref())))?;
        if body_kind(&headers)? != BodyKind::FhirJson {
            return Err(ApiError::unsupported_media(msg!("bundle-media")));
        }
        let bytes = read_body(body, state.config.limits).await?;
        let bundle_value = submitted.insert(Arc::new(parse_json(bytes, state.config.limits).await?));
        process_bundle(&state, &caller, bundle_value.clone(), Prefer::from_headers(&headers)).await
    }
    .await;
    scorecard::record(&state, &caller, Endpoint::Base, received, submitted.as_deref(), (&result).into()).await;
    Ok(fhir_json(StatusCode::OK, &result?))
}

/// Runs a transaction or batch Bundle and returns the response Bundle. The Bundle is shared with
/// the validator's blocking task rather than copied for it.
pub async fn process_bundle(
    state: &AppState,
    caller: &Caller,
    bundle: Arc<Value>,
    prefer: Prefer,
) -> Result<AnswerBundle, ApiError> {
    let bundle_value = bundle.as_ref();
    let (bundle_type, entries) = parse_bundle(bundle_value)?;
    if bundle_type == "batch" {
        return Ok(run_batch(state, caller, &entries, prefer).await);
    }
    let referral =
        Referral::recognise(bundle_value).map_err(|issues| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, issues))?;
    // A referral Bundle must meet rex's referral profiles; any transaction must meet the base spec.
    let (profiles, entry_profiles) = match &referral {
        Some(referral) => {
            let mut entry_profiles = vec![(referral.service_request_entry, rex_profile("rex-referral-servicerequest"))];
            if let Some(patient) =
                entries.iter().find(|e| e.full_url.as_deref() == Some(referral.subject_reference.as_str()))
            {
                entry_profiles.push((patient.index, rex_profile("rex-international-patient")));
            }
            // The partner's own, tighter profiles, for every entry of the types they constrain.
            for entry in &entries {
                let resource_type =
                    entry.resource.as_ref().and_then(|r| r["resourceType"].as_str()).unwrap_or_default();
                if resource_type == "Consent" {
                    entry_profiles.push((entry.index, rex_profile("rex-referral-consent")));
                }
                for url in state.partner_profiles.for_resource(&referral.partner, resource_type) {
                    entry_profiles.push((entry.index, url.to_string()));
                }
            }
            (vec![rex_profile("rex-referral-bundle")], entry_profiles)
        }
        None => (Vec::new(), Vec::new()),
    };
    let warnings = require_valid_bundle(&state.checker(caller), bundle.clone(), profiles, entry_profiles).await?;
    let mut answer = match referral {
        Some(referral) => intake::take_in(state, caller, &referral, entries, prefer).await?,
        None => run_transaction(state, caller, &entries, prefer).await?,
    };
    // The entries of a transaction-response answer those of the request, in order.
    answer.add_entry_warnings(&warnings);
    Ok(answer)
}
