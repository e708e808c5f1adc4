//! The opinion rex issues when a specialist completes a referral (`$complete`): the opinion joins
//! the referring partner's compartment, and a DiagnosticReport also gets the opinion PDF rex
//! renders from it (`presentedForm`, first) and a Provenance whose signature, a detached JWS
//! (ES384, rex's `--token-key`) over the report version's RFC 8785 canonical JSON, lets the
//! partner check that rex issued exactly this version (`docs/partner-guide.md`). All of it in
//! the `$complete` transaction.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{SecondsFormat, Utc};
use rex_opinion::{Opinion, Sources};
use rex_store::{StoredResource, Tx};
use serde_json::{Value, json};

use super::write::{Target, WriteOp, execute};
use crate::AppState;
use crate::access::{Caller, owner, set_owner};
use crate::error::ApiError;
use crate::http::stored_json;

/// `Attachment.title` of the PDF rex renders; an earlier one is replaced, not repeated.
pub const OPINION_PDF_TITLE: &str = "Second opinion (rendered and signed by rex)";
/// `Signature.type`: ASTM E1762 "Verification Signature" (rex attests the content, the
/// specialist is the author).
const VERIFICATION_SIGNATURE: &str = "1.2.840.10065.1.12.1.5";

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Issues the opinion `opinion` of the referral Task `task`.
pub async fn issue(tx: &mut Tx, state: &AppState, task: &Value, opinion: StoredResource) -> Result<(), ApiError> {
    let mut content = stored_json(&opinion)?;
    let partner = owner(task).map(str::to_string);
    let shared = partner.is_none() || owner(&content) == partner.as_deref();
    if let Some(partner) = &partner {
        set_owner(&mut content, partner);
    }
    let is_report = opinion.resource_type == "DiagnosticReport";
    if is_report {
        let pdf = render_pdf(tx, task, &content).await?;
        attach_pdf(&mut content, &pdf);
    } else if shared {
        return Ok(());
    }
    let op = WriteOp::Update {
        resource_type: opinion.resource_type.clone(),
        target: Target::Id(opinion.id.clone()),
        resource: content,
        if_match: Some(opinion.version_id),
    };
    let stored = execute(tx, &Caller::Unrestricted, op).await?.stored().cloned().ok_or_else(ApiError::internal)?;
    if is_report {
        let provenance = signed_provenance(state, &stored, partner.as_deref())?;
        let op =
            WriteOp::Create { resource_type: "Provenance".into(), resource: provenance, id: None, if_none_exist: None };
        execute(tx, &Caller::Unrestricted, op).await?;
    }
    Ok(())
}

/// Reads a referenced resource rex holds (`Type/id`), if any.
async fn referenced(tx: &mut Tx, reference: &Value) -> Result<Value, ApiError> {
    let Some((resource_type, id)) = reference["reference"].as_str().and_then(|r| r.split_once('/')) else {
        return Ok(Value::Null);
    };
    match tx.read(resource_type, id).await?.filter(|r| !r.deleted) {
        Some(stored) => stored_json(&stored),
        None => Ok(Value::Null),
    }
}

async fn render_pdf(tx: &mut Tx, task: &Value, report: &Value) -> Result<Vec<u8>, ApiError> {
    let service_request = referenced(tx, &task["focus"]).await?;
    let patient = referenced(tx, &task["for"]).await?;
    let specialist = referenced(tx, &report["performer"][0]).await?;
    let opinion = Opinion::from_resources(&Sources {
        report,
        service_request: &service_request,
        patient: &patient,
        specialist: Some(&specialist).filter(|s| s.is_object()),
    });
    rex_opinion::render(&opinion).map_err(|message| {
        tracing::error!(%message, "the opinion PDF could not be rendered");
        ApiError::internal()
    })
}

/// Puts the PDF first in `presentedForm`, keeping what the specialist attached.
fn attach_pdf(report: &mut Value, pdf: &[u8]) {
    let sha1 = openssl::sha::sha1(pdf);
    let attachment = json!({
        "contentType": "application/pdf",
        "data": STANDARD.encode(pdf),
        "size": pdf.len(),
        "hash": STANDARD.encode(sha1),
        "title": OPINION_PDF_TITLE,
        "creation": now(),
    });
    let mut forms = vec![attachment];
    forms.extend(
        report["presentedForm"].as_array().into_iter().flatten().filter(|f| f["title"] != OPINION_PDF_TITLE).cloned(),
    );
    report["presentedForm"] = Value::Array(forms);
}

/// The Provenance of the stored report version, signed by rex.
fn signed_provenance(state: &AppState, report: &StoredResource, partner: Option<&str>) -> Result<Value, ApiError> {
    let canonical = rex_auth::jcs::canonical_json(&stored_json(report)?);
    let jws = state.config.signer.sign_detached(canonical.as_bytes(), "application/fhir+json").map_err(|message| {
        tracing::error!(%message, "the opinion could not be signed");
        ApiError::internal()
    })?;
    let when = now();
    let target = format!("DiagnosticReport/{}/_history/{}", report.id, report.version_id);
    let author = stored_json(report)?["performer"][0].clone();
    let rex = json!({"display": "rex referral exchange"});
    let mut agents = vec![json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "verifier"}]},
        "who": rex,
    })];
    if author.is_object() {
        agents.insert(
            0,
            json!({
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
                "who": author,
            }),
        );
    }
    let mut provenance = json!({
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "recorded": when,
        "agent": agents,
        "signature": [{
            "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": VERIFICATION_SIGNATURE, "display": "Verification Signature"}],
            "when": when,
            "who": rex,
            "targetFormat": "application/fhir+json",
            "sigFormat": "application/jose",
            "data": STANDARD.encode(jws),
        }],
    });
    if let Some(partner) = partner {
        set_owner(&mut provenance, partner);
    }
    Ok(provenance)
}
