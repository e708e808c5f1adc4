//! FHIR R4 knowledge for rex, free of IO: parsing request bodies (JSON, and XML converted to JSON) with limits, structural checks,
//! search-parameter definitions and index extraction, search query parsing and OperationOutcome building.

pub mod datetime;
pub mod json;
pub mod outcome;
pub mod query;
pub mod search;
pub mod structure;
pub mod xml;

pub use outcome::{BindingStrength, Issue, IssueCode, Rule, Severity};
