//! The language of a request's answer: `Accept-Language` when it names one rex writes, else the
//! calling partner's configured `language`, else English. Chosen around the whole request (a
//! task-local), so the one place that turns errors into OperationOutcomes (`error.rs`) and the
//! operations answering with one on success read it without threading it through every handler.

use std::cell::Cell;

use axum::extract::Request;
use axum::http::header::ACCEPT_LANGUAGE;
use axum::middleware::Next;
use axum::response::Response;
use rex_fhir::Issue;
use rex_i18n::{Lang, Text};
use serde_json::Value;

use crate::AppState;

/// The request's language, and whether the client asked for it (then the partner's configured
/// language does not replace it).
#[derive(Clone, Copy)]
struct Chosen {
    lang: Lang,
    asked: bool,
}

tokio::task_local! {
    static CHOSEN: Cell<Chosen>;
}

/// Middleware: reads `Accept-Language` and runs the request with the language it chooses.
pub async fn negotiate(request: Request, next: Next) -> Response {
    let asked = request
        .headers()
        .get_all(ACCEPT_LANGUAGE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(rex_i18n::negotiate);
    let chosen = Chosen { lang: asked.unwrap_or_default(), asked: asked.is_some() };
    CHOSEN.scope(Cell::new(chosen), next.run(request)).await
}

/// The calling partner's configured language, used when the request did not ask for one.
pub fn use_partner_language(lang: Option<Lang>) {
    let _ = CHOSEN.try_with(|cell| {
        let chosen = cell.get();
        if let (false, Some(lang)) = (chosen.asked, lang) {
            cell.set(Chosen { lang, asked: false });
        }
    });
}

/// The language of the current request's answer; English outside a request (workers, the CLI).
pub fn current() -> Lang {
    CHOSEN.try_with(|cell| cell.get().lang).unwrap_or_default()
}

/// The configured language of `partner`: what rex writes into the resources and notifications it
/// sends that partner (English without one, and in development mode).
pub fn of_partner(state: &AppState, partner: Option<&str>) -> Lang {
    partner.and_then(|id| state.security.as_ref()?.partners().get(id)?.language).unwrap_or_default()
}

/// An OperationOutcome of `issues` in the current request's language.
pub fn outcome(issues: &[Issue]) -> Value {
    rex_fhir::outcome::operation_outcome_in(issues, current())
}

/// A success OperationOutcome (`Prefer: return=OperationOutcome`) in the request's language.
pub fn success(message: impl Into<Text>) -> Value {
    rex_fhir::outcome::success_outcome(message, current())
}
