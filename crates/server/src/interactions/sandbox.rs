//! `POST /fhir/$sandbox-reset?partner=ID`: an admin empties a sandbox partner's test data, so its
//! integration engineers can send the same referrals again as new ones. Every resource in the
//! partner's compartment is deleted (history and AuditEvents are kept, as for any delete) except
//! its Subscriptions, and its referral identities are forgotten.

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use rex_auth::{Principal, StaffRole};
use rex_fhir::IssueCode;
use rex_store::Isolation;

use super::query_pairs;
use super::write::{Target, WriteOp, execute};
use crate::AppState;
use crate::access::{Caller, PARTNER_TAG_SYSTEM};
use crate::error::ApiError;
use crate::http::fhir_json;

pub async fn reset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let admin = matches!(
        &caller,
        Caller::Unrestricted | Caller::Authenticated(Principal::Staff { role: StaffRole::Admin, .. })
    );
    if !admin {
        return Err(ApiError::one(StatusCode::FORBIDDEN, IssueCode::Forbidden, "Only admins reset a sandbox").denied());
    }
    let pairs = query_pairs(query.as_deref());
    let partner =
        pairs.iter().find(|(name, _)| name == "partner").map(|(_, value)| value.clone()).ok_or_else(|| {
            ApiError::one(StatusCode::BAD_REQUEST, IssueCode::Required, "$sandbox-reset needs ?partner=ID")
                .at("partner")
        })?;
    let sandbox = state.security.as_ref().and_then(|s| s.partners().get(&partner)).is_some_and(|p| p.sandbox);
    if !sandbox {
        return Err(ApiError::one(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueCode::BusinessRule,
            format!("'{partner}' is not a sandbox partner (sandbox = true in the security configuration)"),
        )
        .at("partner"));
    }
    let (deleted, forgotten) =
        super::in_transaction(&state.store, Isolation::RowLocking, partner.as_str(), |tx, partner| {
            Box::pin(async move {
                let mut deleted = 0;
                for (resource_type, id) in tx.tagged_resources(PARTNER_TAG_SYSTEM, partner).await? {
                    if resource_type == "Subscription" {
                        continue;
                    }
                    let op = WriteOp::Delete { resource_type, target: Target::Id(id), if_match: None };
                    execute(tx, &Caller::Unrestricted, op).await?;
                    deleted += 1;
                }
                Ok((deleted, tx.forget_referrals(partner).await?))
            })
        })
        .await?;
    tracing::info!(%partner, deleted, forgotten, "sandbox reset");
    let message = format!("Sandbox '{partner}' reset: {deleted} resources deleted, {forgotten} referrals forgotten");
    Ok(fhir_json(StatusCode::OK, &crate::language::success(message)))
}
