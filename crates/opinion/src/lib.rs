//! rex's opinion document: the PDF a specialist's second opinion is presented as (the
//! DiagnosticReport's `presentedForm`), rendered by rex from the report itself, so the document
//! the partner files says exactly what the signed report says. No IO, no HTTP, no SQL.

mod document;
mod pdf;

pub use document::{Opinion, Sources};
pub use pdf::render;
