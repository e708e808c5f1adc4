//! rex's referral domain, free of HTTP and SQL: recognising the referral in a partner's Bundle,
//! routing it to a specialist review queue with a service-level clock, and the Task and AuditEvent
//! that record the decision.

pub mod consent;
pub mod referral;
pub mod routing;
pub mod scheduling;
pub mod task;
pub mod workflow;

pub use referral::{Category, Priority, Referral};
pub use routing::{RoutingConfig, RoutingDecision};

/// Base of rex's own canonical URLs.
pub const REX_CANONICAL: &str = "https://rex.example/fhir";
/// Identifier system of partner Organizations (value = the partner's id in rex).
pub const PARTNER_SYSTEM: &str = "https://rex.example/partners";
/// Identifier system of queue HealthcareServices (value = the queue code).
pub const QUEUE_SYSTEM: &str = "urn:rex:queue";
