//! Who is signed in, kept in cookies only (so any rex instance can serve any page): the staff
//! bearer token, or in development mode the chosen role and queues. A second cookie holds the
//! CSRF token that every form posts back. Both are HttpOnly and SameSite=Strict, scoped to `/ui`.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rex_auth::{OidcConfig, Principal, StaffRole};
use serde::{Deserialize, Serialize};

/// The cookie with the bearer token (or the development identity).
pub const SESSION_COOKIE: &str = "rex_session";
/// The cookie with the CSRF token forms must repeat.
pub const CSRF_COOKIE: &str = "rex_csrf";
/// Marks a development identity in the session cookie; a JWT never starts like this.
const DEVELOPMENT_PREFIX: &str = "dev.";

/// The signed-in staff member. Their role and queues choose what the pages show; what they may
/// see and do is decided by the FHIR API on every request made with their token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub subject: String,
    pub role: StaffRole,
    /// `PractitionerRole/<id>`: whom a claim assigns the referral to.
    pub practitioner_role: Option<String>,
    /// Queue codes served (specialists).
    pub queues: Vec<String>,
    /// The bearer token for the API; `None` in development mode, where the API needs none.
    token: Option<String>,
}

/// What the development login remembers.
#[derive(Serialize, Deserialize)]
struct DevelopmentIdentity {
    role: String,
    practitioner_role: Option<String>,
    queues: Vec<String>,
}

fn role_named(name: &str) -> Option<StaffRole> {
    match name {
        "specialist" => Some(StaffRole::Specialist),
        "coordinator" => Some(StaffRole::Coordinator),
        "admin" => Some(StaffRole::Admin),
        _ => None,
    }
}

impl User {
    /// A development identity (no token; the server runs `--dev`).
    pub fn development(role: StaffRole, practitioner_role: Option<String>, queues: Vec<String>) -> User {
        User { subject: format!("dev-{}", role.as_str()), role, practitioner_role, queues, token: None }
    }

    /// The user of a staff token, verified exactly as the API verifies it.
    pub fn from_token(token: &str, oidc: &OidcConfig, now: i64) -> Result<User, String> {
        match rex_auth::principal::verify_staff_token(token, oidc, now).map_err(|e| e.to_string())? {
            Principal::Staff { subject, role, practitioner_role, queues } => {
                Ok(User { subject, role, practitioner_role, queues, token: Some(token.to_string()) })
            }
            Principal::Partner { .. } => Err("this is a partner token; sign in with a staff token".into()),
        }
    }

    /// Coordinators and admins see every queue.
    pub fn is_coordinator(&self) -> bool {
        matches!(self.role, StaffRole::Coordinator | StaffRole::Admin)
    }

    /// "subject (role)", for the page header.
    pub fn label(&self) -> String {
        format!("{} ({})", self.subject, self.role.as_str())
    }

    /// The bearer token for API calls.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The session cookie's value for this user.
    pub fn cookie_value(&self) -> String {
        match &self.token {
            Some(token) => token.clone(),
            None => {
                let identity = DevelopmentIdentity {
                    role: self.role.as_str().into(),
                    practitioner_role: self.practitioner_role.clone(),
                    queues: self.queues.clone(),
                };
                let json = serde_json::to_vec(&identity).unwrap_or_default();
                format!("{DEVELOPMENT_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
            }
        }
    }

    /// The user of a session cookie: a token verified with `oidc`, or a development identity
    /// when `development` allows it.
    pub fn from_cookie(value: &str, oidc: Option<&OidcConfig>, development: bool, now: i64) -> Option<User> {
        if let Some(encoded) = value.strip_prefix(DEVELOPMENT_PREFIX) {
            if !development {
                return None;
            }
            let identity: DevelopmentIdentity = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
            return Some(User::development(role_named(&identity.role)?, identity.practitioner_role, identity.queues));
        }
        User::from_token(value, oidc?, now).ok()
    }
}

/// A role from the development login form.
pub fn parse_role(name: &str) -> Option<StaffRole> {
    role_named(name)
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for `/ui` only; `Secure` behind HTTPS.
pub fn set_cookie(name: &str, value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict{secure}")
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    format!("{}; Max-Age=0", set_cookie(name, "", secure))
}

/// A fresh CSRF token: 244 random bits from two v4 UUIDs, as hex.
pub fn new_csrf_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Whether a form's CSRF field repeats the cookie (compared in constant time).
pub fn csrf_matches(cookie: Option<&str>, field: Option<&str>) -> bool {
    let (Some(cookie), Some(field)) = (cookie, field) else { return false };
    if cookie.is_empty() || cookie.len() != field.len() {
        return false;
    }
    cookie.bytes().zip(field.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn development_identities_round_trip_only_in_development_mode() {
        let user =
            User::development(StaffRole::Specialist, Some("PractitionerRole/a".into()), vec!["cardiology".into()]);
        let value = user.cookie_value();
        assert!(value.starts_with("dev.") && !value.contains([';', ',', ' ', '"']));
        assert_eq!(User::from_cookie(&value, None, true, 0), Some(user));
        assert_eq!(User::from_cookie(&value, None, false, 0), None);
        assert_eq!(User::from_cookie("not-a-token", None, true, 0), None);
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; rex_csrf=abc"));
        headers.append(COOKIE, HeaderValue::from_static("rex_session=t.k.n"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("t.k.n"));
        assert_eq!(cookie(&headers, "b"), None);
        assert_eq!(set_cookie("x", "y", true), "x=y; Path=/ui; HttpOnly; SameSite=Strict; Secure");
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let token = new_csrf_token();
        assert_eq!(token.len(), 64);
        assert!(csrf_matches(Some(&token), Some(&token)));
        assert!(!csrf_matches(Some(&token), Some(&new_csrf_token())));
        assert!(!csrf_matches(Some(""), Some("")));
        assert!(!csrf_matches(None, Some(&token)));
        assert!(!csrf_matches(Some(&token), None));
    }
}
