//! Reading the Parameters body of an operation, and the searches operations run on rex's own
//! resources.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rex_fhir::IssueCode;
use rex_fhir::query::{Handling, SearchQuery};
use rex_fhir::search::SearchRegistry;
use rex_i18n::{Text, msg};
use serde_json::Value;

use crate::error::ApiError;

/// The parameters of an operation's Parameters body, by name.
pub struct Parameters<'a>(&'a Value);

/// Where a parameter is, for `OperationOutcome.issue.expression`.
pub fn location(name: &str) -> String {
    format!("Parameters.parameter.where(name='{name}')")
}

/// A parameter with a wrong value, located.
pub fn invalid(name: &str, message: impl Into<Text>) -> ApiError {
    ApiError::bad_request(message).at(&location(name))
}

impl<'a> Parameters<'a> {
    pub fn new(body: &'a Value) -> Parameters<'a> {
        Parameters(body)
    }

    fn all(&self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.0["parameter"].as_array().into_iter().flatten().filter(move |p| p["name"] == name)
    }

    /// The text of every `name` parameter (any primitive value, or a reference's `reference`).
    pub fn texts(&self, name: &'a str) -> Vec<&'a str> {
        const KEYS: &[&str] = &[
            "valueString",
            "valueCode",
            "valueDateTime",
            "valueInstant",
            "valueDate",
            "valueTime",
            "valueUri",
            "valueId",
        ];
        self.all(name)
            .filter_map(|p| KEYS.iter().find_map(|k| p[*k].as_str()).or(p["valueReference"]["reference"].as_str()))
            .collect()
    }

    pub fn text(&self, name: &'a str) -> Option<&'a str> {
        self.texts(name).into_iter().next()
    }

    pub fn required_text(&self, name: &'a str) -> Result<&'a str, ApiError> {
        self.text(name).ok_or_else(|| required(name))
    }

    pub fn integer(&self, name: &'a str) -> Result<Option<i64>, ApiError> {
        match self.all(name).next() {
            None => Ok(None),
            Some(p) => {
                let value = p["valueInteger"].as_i64().or(p["valuePositiveInt"].as_i64());
                value.map(Some).ok_or_else(|| invalid(name, msg!("parameter-not-integer", name)))
            }
        }
    }

    pub fn boolean(&self, name: &'a str) -> Result<Option<bool>, ApiError> {
        match self.all(name).next() {
            None => Ok(None),
            Some(p) => {
                p["valueBoolean"].as_bool().map(Some).ok_or_else(|| invalid(name, msg!("parameter-not-boolean", name)))
            }
        }
    }

    /// An instant with its offset (`2027-03-15T09:00:00-07:00`).
    pub fn instant(&self, name: &'a str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.text(name)
            .map(|text| instant(text).ok_or_else(|| invalid(name, msg!("parameter-not-instant", name))))
            .transpose()
    }

    /// The resource of the `name` parameter.
    pub fn resource(&self, name: &'a str) -> Option<&'a Value> {
        self.all(name).find_map(|p| p.get("resource"))
    }
}

/// A dateTime or instant with an offset, as an instant.
pub fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|time| time.with_timezone(&Utc))
}

/// A required parameter that is missing.
pub fn required(name: &str) -> ApiError {
    ApiError::one(StatusCode::BAD_REQUEST, IssueCode::Required, msg!("parameter-required", name)).at(&location(name))
}

/// A search rex runs on its own behalf; its parameters are rex's, so a parse failure is rex's fault.
pub fn search(resource_type: &str, pairs: &[(&str, String)]) -> Result<SearchQuery, ApiError> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    SearchQuery::parse(SearchRegistry::r4(), resource_type, &pairs, Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, issues))
}
