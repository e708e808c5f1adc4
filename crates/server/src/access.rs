//! Who is asking and what they may see: the one place where SMART scopes, partner isolation and
//! specialist queues are decided. Handlers never decide visibility themselves; they pass the
//! [`Caller`] to the write executor and filter what they read through it.
//!
//! A partner's compartment is marked on the resources themselves: every resource written by or for
//! a partner carries the tag [`PARTNER_TAG_SYSTEM`]`|<partner id>` in `meta.tag`. rex sets it (a
//! partner cannot choose or remove it), searches are narrowed by it in the database (so totals and
//! paging stay right), and reads of anything without the caller's tag answer 404 as if the
//! resource did not exist.

use axum::http::StatusCode;
use rex_auth::{Interaction, Principal, StaffRole};
use rex_fhir::IssueCode;
use rex_fhir::query::{Criterion, Match, SearchQuery, SystemMatch};
use rex_i18n::msg;
use rex_store::{SearchResult, StoredResource};
use serde_json::{Value, json};

use crate::error::ApiError;

/// `meta.tag` system naming the partner whose compartment a resource belongs to.
pub const PARTNER_TAG_SYSTEM: &str = "https://rex.example/fhir/CodeSystem/partner";

/// Types of the resources rex keeps for every partner to point at (queues are HealthcareServices);
/// one of them outside any partner's compartment is shared.
const SHARED_TYPES: [&str; 6] =
    ["HealthcareService", "Organization", "Location", "Practitioner", "PractitionerRole", "Endpoint"];

/// The caller of one request, as the authentication middleware established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// `--dev` on loopback, and rex itself (demo data): no authentication and no limits.
    Unrestricted,
    Authenticated(Principal),
}

impl Caller {
    /// The partner id when a partner calls.
    pub fn partner(&self) -> Option<&str> {
        match self {
            Caller::Authenticated(principal) => principal.partner_id(),
            Caller::Unrestricted => None,
        }
    }

    /// Who this is, for logs and AuditEvents: an id, never a name or token.
    pub fn label(&self) -> String {
        match self {
            Caller::Unrestricted => "development".into(),
            Caller::Authenticated(Principal::Partner { id, .. }) => format!("partner:{id}"),
            Caller::Authenticated(Principal::Staff { subject, role, .. }) => format!("{}:{subject}", role.as_str()),
        }
    }

    /// The SMART scope check of one interaction on one type (staff are limited by role and queue
    /// instead, see [`Caller::sees`]).
    pub fn require(&self, resource_type: &str, interaction: Interaction) -> Result<(), ApiError> {
        match self {
            Caller::Authenticated(principal) => principal
                .require(resource_type, interaction)
                .map_err(|err| ApiError::one(StatusCode::FORBIDDEN, IssueCode::Forbidden, err.message()).denied()),
            Caller::Unrestricted => Ok(()),
        }
    }

    /// Workflow operations are staff work: partners may not run them.
    pub fn require_staff(&self, operation: &str) -> Result<(), ApiError> {
        match self {
            Caller::Authenticated(Principal::Partner { .. }) => {
                Err(ApiError::one(StatusCode::FORBIDDEN, IssueCode::Forbidden, msg!("staff-only-operation", operation))
                    .denied())
            }
            _ => Ok(()),
        }
    }

    /// Whether the caller may open slots and block time on the schedule of `actor` (a
    /// `PractitionerRole/…` or `HealthcareService/…` reference): a specialist only on their own
    /// PractitionerRole's, coordinators and admins on any, partners on none.
    pub fn manages_schedule_of(&self, actor: &str) -> bool {
        match self {
            Caller::Unrestricted => true,
            Caller::Authenticated(Principal::Partner { .. }) => false,
            Caller::Authenticated(Principal::Staff { role: StaffRole::Specialist, practitioner_role, .. }) => {
                practitioner_role.as_deref() == Some(actor)
            }
            Caller::Authenticated(Principal::Staff { .. }) => true,
        }
    }

    /// Whether a specialist may work on `queue` (coordinators and admins work on every queue).
    pub fn serves_queue(&self, queue: &str) -> bool {
        match self {
            Caller::Authenticated(Principal::Staff { role: StaffRole::Specialist, queues, .. }) => {
                queues.iter().any(|q| q == queue)
            }
            Caller::Authenticated(Principal::Partner { .. }) => false,
            _ => true,
        }
    }

    /// Whether the caller may see this stored resource. Partners see only their compartment (so a
    /// deleted resource, which has no content left, is not theirs to see); specialists see only
    /// the Tasks of the queues they serve or that they own.
    pub fn sees(&self, stored: &StoredResource) -> bool {
        match self {
            Caller::Unrestricted => true,
            Caller::Authenticated(Principal::Partner { id, .. }) => {
                stored.content.as_deref().and_then(owner_in_text).is_some_and(|owner| owner == *id)
            }
            Caller::Authenticated(Principal::Staff { role: StaffRole::Specialist, .. })
                if stored.resource_type == "Task" =>
            {
                let Some(content) = stored.content.as_deref() else { return true };
                let task: Value = serde_json::from_str(content).unwrap_or_default();
                task["owner"]["reference"].as_str().is_some_and(|owner| self.owns(owner))
            }
            Caller::Authenticated(Principal::Staff { .. }) => true,
        }
    }

    /// Whether this caller's writes have their references checked ([`Caller::may_reference`]): a
    /// partner's are. rex's own writes and staff's (who see every partner's referrals) may point
    /// at anything, as FHIR allows.
    pub fn checks_references(&self) -> bool {
        self.partner().is_some()
    }

    /// Whether a reference in this caller's write may point at `stored`: at what the caller sees,
    /// or at one of rex's shared resources (its queues, organisations, places and staff roles,
    /// outside every partner's compartment). A partner cannot attach its resources to another
    /// partner's referral.
    pub fn may_reference(&self, stored: &StoredResource) -> bool {
        self.sees(stored)
            || (!stored.deleted
                && SHARED_TYPES.contains(&stored.resource_type.as_str())
                && stored.content.as_deref().and_then(owner_in_text).is_none())
    }

    /// Whether a Task owned by `owner` (a queue's HealthcareService or a PractitionerRole) is in
    /// this specialist's view.
    fn owns(&self, owner: &str) -> bool {
        let Caller::Authenticated(Principal::Staff { practitioner_role, .. }) = self else { return true };
        match owner.strip_prefix("HealthcareService/") {
            Some(queue) => self.serves_queue(queue),
            None => practitioner_role.as_deref() == Some(owner),
        }
    }

    /// `found` if the caller may see it, else `None`: invisible is the same as absent.
    pub fn visible(&self, found: Option<StoredResource>) -> Option<StoredResource> {
        found.filter(|stored| self.sees(stored))
    }

    /// Narrows a search to what the caller may see, inside the database query.
    pub fn restrict(&self, query: &mut SearchQuery) {
        match self {
            Caller::Authenticated(Principal::Partner { id, .. }) => query.criteria.push(Criterion {
                param: "_tag".into(),
                negated: false,
                alternatives: vec![Match::Token {
                    system: SystemMatch::Is(PARTNER_TAG_SYSTEM.into()),
                    code: Some(id.clone()),
                }],
            }),
            Caller::Authenticated(Principal::Staff {
                role: StaffRole::Specialist, queues, practitioner_role, ..
            }) if query.resource_type == "Task" => {
                let mut owners: Vec<Match> = queues
                    .iter()
                    .map(|queue| Match::Reference { target_type: Some("HealthcareService".into()), id: queue.clone() })
                    .collect();
                if let Some((target_type, id)) = practitioner_role.as_deref().and_then(|r| r.split_once('/')) {
                    owners.push(Match::Reference { target_type: Some(target_type.into()), id: id.into() });
                }
                if owners.is_empty() {
                    // No queue and no role: a criterion no Task meets.
                    owners.push(Match::Id(String::new()));
                    query.criteria.push(Criterion { param: "_id".into(), negated: false, alternatives: owners });
                } else {
                    query.criteria.push(Criterion { param: "owner".into(), negated: false, alternatives: owners });
                }
            }
            _ => {}
        }
    }

    /// Drops `_include`d and `_revinclude`d resources the caller may not see or search.
    pub fn retain_visible(&self, result: &mut SearchResult) {
        result
            .included
            .retain(|stored| self.sees(stored) && self.require(&stored.resource_type, Interaction::Search).is_ok());
    }

    /// Puts what a partner writes into its compartment, whatever tags it sent.
    pub fn stamp(&self, resource: &mut Value) {
        if let Some(partner) = self.partner() {
            set_owner(resource, partner);
        }
    }
}

/// The partner whose compartment `resource` is in.
pub fn owner(resource: &Value) -> Option<&str> {
    resource["meta"]["tag"]
        .as_array()?
        .iter()
        .find(|tag| tag["system"] == PARTNER_TAG_SYSTEM)
        .and_then(|tag| tag["code"].as_str())
}

/// [`owner`] of stored JSON text, reading only `meta`.
fn owner_in_text(content: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Tagged {
        #[serde(default)]
        meta: Option<Value>,
    }
    let tagged: Tagged = serde_json::from_str(content).ok()?;
    let meta = tagged.meta?;
    owner(&json!({ "meta": meta })).map(str::to_string)
}

/// Places `resource` in `partner`'s compartment, replacing any other partner tag.
pub fn set_owner(resource: &mut Value, partner: &str) {
    let Some(object) = resource.as_object_mut() else { return };
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let tags = meta.as_object_mut().expect("meta is an object").entry("tag").or_insert_with(|| json!([]));
    if !tags.is_array() {
        *tags = json!([]);
    }
    let tags = tags.as_array_mut().expect("tag is an array");
    tags.retain(|tag| tag["system"] != PARTNER_TAG_SYSTEM);
    tags.push(json!({"system": PARTNER_TAG_SYSTEM, "code": partner}));
}

/// Keeps a resource in the compartment of its current version when a writer other than the
/// partner sends it without the tag (a specialist updating a referral Task, a JSON Patch).
pub fn keep_owner(current: &StoredResource, resource: &mut Value) {
    if owner(resource).is_none()
        && let Some(partner) = current.content.as_deref().and_then(owner_in_text)
    {
        set_owner(resource, &partner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rex_auth::ScopeSet;

    fn partner(id: &str) -> Caller {
        Caller::Authenticated(Principal::Partner {
            id: id.into(),
            scopes: ScopeSet::parse("system/*.cruds").unwrap(),
            cert_thumbprint: None,
        })
    }

    fn stored(resource_type: &str, content: &Value) -> StoredResource {
        StoredResource {
            resource_type: resource_type.into(),
            id: "1".into(),
            version_id: 1,
            last_updated: 0,
            deleted: false,
            content: Some(content.to_string()),
        }
    }

    #[test]
    fn a_partner_sees_only_its_own_compartment() {
        let mut patient = json!({"resourceType": "Patient", "meta": {"tag": [{"system": "x", "code": "y"}]}});
        set_owner(&mut patient, "a");
        assert!(partner("a").sees(&stored("Patient", &patient)));
        assert!(!partner("b").sees(&stored("Patient", &patient)));
        assert!(!partner("a").sees(&stored("Patient", &json!({"resourceType": "Patient"}))));
        assert!(Caller::Unrestricted.sees(&stored("Patient", &patient)));
    }

    #[test]
    fn a_partner_may_reference_what_it_sees_and_rex_shared_resources() {
        let mut patient = json!({"resourceType": "Patient"});
        set_owner(&mut patient, "a");
        assert!(partner("a").may_reference(&stored("Patient", &patient)));
        assert!(!partner("b").may_reference(&stored("Patient", &patient)));
        let queue = json!({"resourceType": "HealthcareService"});
        assert!(partner("b").may_reference(&stored("HealthcareService", &queue)));
        let mut their_organization = json!({"resourceType": "Organization"});
        set_owner(&mut their_organization, "a");
        assert!(!partner("b").may_reference(&stored("Organization", &their_organization)));
        assert!(!partner("b").may_reference(&stored("Patient", &json!({"resourceType": "Patient"}))));
        assert!(partner("a").checks_references() && !Caller::Unrestricted.checks_references());
    }

    #[test]
    fn stamping_replaces_a_forged_tag_and_keeps_others() {
        let mut patient = json!({"resourceType": "Patient", "meta": {"tag": [
            {"system": PARTNER_TAG_SYSTEM, "code": "b"}, {"system": "x", "code": "y"}]}});
        partner("a").stamp(&mut patient);
        assert_eq!(owner(&patient), Some("a"));
        assert_eq!(patient["meta"]["tag"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_specialist_sees_the_tasks_of_its_queues_and_its_own() {
        let specialist = Caller::Authenticated(Principal::Staff {
            subject: "s".into(),
            role: StaffRole::Specialist,
            practitioner_role: Some("PractitionerRole/dr-a".into()),
            queues: vec!["cardiology".into()],
        });
        let task = |owner: &str| stored("Task", &json!({"resourceType": "Task", "owner": {"reference": owner}}));
        assert!(specialist.sees(&task("HealthcareService/cardiology")));
        assert!(specialist.sees(&task("PractitionerRole/dr-a")));
        assert!(!specialist.sees(&task("HealthcareService/oncology")));
        assert!(!specialist.sees(&task("PractitionerRole/dr-b")));
        assert!(specialist.sees(&stored("Patient", &json!({"resourceType": "Patient"}))));
    }
}
