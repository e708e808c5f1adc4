//! The one place where errors become HTTP responses: every failure is an OperationOutcome with the
//! right status, and nothing internal (SQL, stack traces, resource content) reaches the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rex_fhir::outcome::operation_outcome_in;
use rex_fhir::{Issue, IssueCode};
use rex_i18n::{Text, msg};
use rex_store::StoreError;

use crate::media::fhir_json;

/// An error answered to the client as an OperationOutcome.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub issues: Vec<Issue>,
    /// Retrying the whole write may succeed (a serialization conflict on PostgreSQL).
    pub retryable: bool,
    /// The caller was refused access (scope, compartment, role): the request is audited.
    pub denied: bool,
}

/// Marks a response to a refused access, so the authentication middleware audits it.
#[derive(Clone, Debug)]
pub struct DeniedAccess(pub String);

impl ApiError {
    pub fn new(status: StatusCode, issues: Vec<Issue>) -> ApiError {
        ApiError { status, issues, retryable: false, denied: false }
    }

    pub fn one(status: StatusCode, code: IssueCode, message: impl Into<Text>) -> ApiError {
        ApiError::new(status, vec![Issue::error(code, message)])
    }

    pub fn bad_request(message: impl Into<Text>) -> ApiError {
        ApiError::one(StatusCode::BAD_REQUEST, IssueCode::Invalid, message)
    }

    pub fn not_found(message: impl Into<Text>) -> ApiError {
        ApiError::one(StatusCode::NOT_FOUND, IssueCode::NotFound, message)
    }

    pub fn gone(message: impl Into<Text>) -> ApiError {
        ApiError::one(StatusCode::GONE, IssueCode::Deleted, message)
    }

    pub fn precondition_failed(message: impl Into<Text>) -> ApiError {
        ApiError::one(StatusCode::PRECONDITION_FAILED, IssueCode::Conflict, message)
    }

    pub fn unsupported_media(message: impl Into<Text>) -> ApiError {
        ApiError::one(StatusCode::UNSUPPORTED_MEDIA_TYPE, IssueCode::NotSupported, message)
    }

    pub fn internal() -> ApiError {
        ApiError::one(StatusCode::INTERNAL_SERVER_ERROR, IssueCode::Exception, msg!("internal-error"))
    }

    /// Marks the error as a refused access (see [`DeniedAccess`]).
    pub fn denied(mut self) -> ApiError {
        self.denied = true;
        self
    }

    /// 404 for what the caller may not see, worded as for what does not exist, and audited.
    pub fn hidden(what: &str) -> ApiError {
        ApiError::not_found(msg!("resource-not-known", reference = what)).denied()
    }

    /// Sets the location of every issue that has none.
    pub fn at(mut self, expression: &str) -> ApiError {
        for issue in &mut self.issues {
            if issue.expression.is_none() {
                issue.expression = Some(expression.to_string());
            }
        }
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::VersionConflict { expected, current } => ApiError::one(
                StatusCode::PRECONDITION_FAILED,
                IssueCode::Conflict,
                msg!("version-conflict", expected, current),
            ),
            StoreError::TooCostly(issue) => ApiError::new(StatusCode::BAD_REQUEST, vec![issue]),
            StoreError::AlreadyExists(what) => {
                ApiError::one(StatusCode::CONFLICT, IssueCode::Duplicate, msg!("already-exists", what))
            }
            StoreError::Retryable => ApiError {
                retryable: true,
                ..ApiError::one(StatusCode::CONFLICT, IssueCode::Conflict, msg!("concurrent-change"))
            },
            other => {
                // The detail stays in the log; the client learns only that it failed.
                tracing::error!(error = %other, "store failure");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = fhir_json(self.status, &operation_outcome_in(&self.issues, crate::language::current()));
        if self.denied {
            let reason = self.issues.first().map(|i| i.diagnostics.clone()).unwrap_or_default();
            response.extensions_mut().insert(DeniedAccess(reason));
        }
        response
    }
}
