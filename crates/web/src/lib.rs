//! rex's specialist worklist and referral viewer: plain server-rendered HTML under `/ui`.
//!
//! The UI holds no data and makes no access decision of its own: every read and every action is a
//! FHIR request dispatched in-process to the API router with the signed-in user's bearer token,
//! so authentication, queues, partner compartments, validation, the Task state machine and the
//! audit trail are exactly those of the API. The user's role and queues (read from the same token)
//! only choose what the pages show.
//!
//! Pages carry no personal data in URLs (only opaque resource ids and filter codes); actions are
//! POST forms protected by a per-session CSRF token; the session lives in HttpOnly, SameSite=Strict
//! cookies. No script and no build step: HTML and one small stylesheet.

mod api;
mod consult;
mod coordinator;
mod html;
mod oidc;
mod referral;
mod session;
mod sla;
mod worklist;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use rex_auth::OidcConfig;
use serde::Deserialize;
use serde_json::Value;

use api::{Api, Failure, parameters, query};
use html::{escape, message, page};
pub use oidc::OidcClient;
use session::{CSRF_COOKIE, SESSION_COOKIE, User, clear_cookie, cookie, csrf_matches, new_csrf_token, set_cookie};

/// Largest opinion upload (the form with its PDF).
const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;
/// Largest plain form (sign-in with a token, an action with its text).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// How the UI is set up.
#[derive(Clone, Debug, Default)]
pub struct WebOptions {
    /// Offer the development login (choose a role and queues, no token). Only for a server in
    /// `--dev` mode, which listens on loopback and whose API needs no token.
    pub dev_login: bool,
    /// The staff identity provider: signed-in tokens are verified with it (as the API does) to
    /// learn the user's role, queues and PractitionerRole. `None` when there is none (`--dev`).
    pub oidc: Option<OidcConfig>,
    /// Mark cookies `Secure` (set when rex is reached over HTTPS).
    pub secure_cookies: bool,
    /// rex as a client of `oidc`'s provider: staff sign in there (`/ui/login`), besides pasting a
    /// token. `None`: token paste only.
    pub sign_in: Option<OidcClient>,
}

#[derive(Clone)]
struct Web {
    api: Api,
    options: Arc<WebOptions>,
    /// Talks to the identity provider (discovery, code exchange).
    http: reqwest::Client,
}

/// The UI's routes under `/ui`, calling `api` (the FHIR API router, `/fhir/...`) in-process.
/// Merge them beside the API: `api.clone().merge(rex_web::routes(api, options))`.
pub fn routes(api: Router, options: WebOptions) -> Router {
    let web = Web { api: Api::new(api), options: Arc::new(options), http: oidc::http_client() };
    Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/style.css", get(style))
        .route("/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/ui/dev-sign-in", post(dev_sign_in))
        .route("/ui/login", get(login))
        .route("/ui/callback", get(callback))
        .route("/ui/sign-out", post(sign_out))
        .route("/ui/worklist", get(worklist_page))
        .route("/ui/coordinator", get(coordinator_page))
        .route("/ui/slots", get(slots_page).post(open_slots))
        .route("/ui/slots/block", post(block_time))
        .route("/ui/referral/{id}", get(referral_page))
        .route("/ui/referral/{id}/opinion", post(opinion).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .route("/ui/referral/{id}/{action}", post(act))
        .route("/ui/file/{type}/{id}/{index}", get(file))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(middleware::from_fn(protect))
        .with_state(web)
}

/// Headers every UI answer carries: nothing cached (pages hold personal data), no referrer, no
/// sniffing, and for pages a policy allowing only the stylesheet and same-origin forms.
async fn protect(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let is_page = headers.get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if is_page {
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    response
}

fn html_response(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, location.to_string())]).into_response()
}

/// No valid session: the user must sign in (again, when `expired`).
struct SignInNeeded {
    expired: bool,
}

/// The signed-in user and the CSRF token.
struct Session {
    user: User,
    csrf: String,
}

impl Web {
    fn session(&self, headers: &HeaderMap) -> Result<Session, SignInNeeded> {
        let user = cookie(headers, SESSION_COOKIE).and_then(|value| {
            User::from_cookie(value, self.options.oidc.as_ref(), self.options.dev_login, Utc::now().timestamp())
        });
        let csrf = cookie(headers, CSRF_COOKIE).unwrap_or_default().to_string();
        match user {
            Some(user) if !csrf.is_empty() => Ok(Session { user, csrf }),
            _ => Err(SignInNeeded { expired: cookie(headers, SESSION_COOKIE).is_some() }),
        }
    }

    /// Back to the sign-in page; `expired` says the session was there but is no longer valid.
    fn to_sign_in(&self, expired: bool) -> Response {
        let mut response = see_other(if expired { "/ui/sign-in?expired=1" } else { "/ui/sign-in" });
        if expired {
            self.set(&mut response, &clear_cookie(SESSION_COOKIE, self.options.secure_cookies));
        }
        response
    }

    fn set(&self, response: &mut Response, cookie: &str) {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }

    /// The answer to a failed API call: sign in again after a 401, else a page with its message.
    fn failure(&self, failure: Failure, session: &Session, title: &str) -> Response {
        match failure {
            Failure::SignIn(_) => self.to_sign_in(true),
            Failure::Refused { status, message: text } => {
                let body = format!("<h1>{}</h1>{}", escape(title), message("error", &text));
                html_response(status, page(title, Some(&session.user), &session.csrf, &body))
            }
        }
    }

    /// The queues (HealthcareServices with rex's queue identifier).
    async fn queues(&self, user: &User) -> Result<Vec<worklist::Queue>, Failure> {
        Ok(worklist::queues_of(&self.api.search(user, "HealthcareService?_count=1000").await?.matches))
    }
}

/// The fields of a URL-encoded form body, in order (a name may repeat).
fn form_fields(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
}

async fn home(State(web): State<Web>, headers: HeaderMap) -> Response {
    match web.session(&headers) {
        Ok(_) => see_other("/ui/worklist"),
        Err(needed) => web.to_sign_in(needed.expired),
    }
}

async fn style() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("style.css")).into_response()
}

#[derive(Deserialize)]
struct SignInQuery {
    expired: Option<String>,
}

async fn sign_in_page(State(web): State<Web>, headers: HeaderMap, Query(query): Query<SignInQuery>) -> Response {
    let existing = cookie(&headers, CSRF_COOKIE).filter(|c| !c.is_empty()).map(String::from);
    let csrf = existing.clone().unwrap_or_else(new_csrf_token);
    let notice = if query.expired.is_some() {
        message("notice", "Your session has ended; please sign in again.")
    } else {
        String::new()
    };
    let mut response =
        html_response(StatusCode::OK, page("Sign in", None, &csrf, &sign_in_body(&web, &csrf, &notice).await));
    if existing.is_none() {
        web.set(&mut response, &set_cookie(CSRF_COOKIE, &csrf, web.options.secure_cookies));
    }
    response
}

async fn sign_in_body(web: &Web, csrf: &str, notice: &str) -> String {
    let csrf = escape(csrf);
    let provider = match web.options.sign_in {
        Some(_) => {
            r#"<p><a class="button" href="/ui/login">Sign in with the hospital account</a></p>
<p>Or paste a staff bearer token:</p>
"#
        }
        None => "",
    };
    let mut body = format!(
        r#"<h1>Sign in</h1>{notice}
{provider}<form class="sign-in" method="post" action="/ui/sign-in">
<input type="hidden" name="csrf" value="{csrf}">
<label for="token">Staff bearer token (from the hospital identity provider)</label>
<textarea id="token" name="token" rows="4" required autocomplete="off" spellcheck="false"></textarea>
<button type="submit">Sign in</button>
</form>
"#
    );
    if web.options.dev_login {
        // In development mode the API answers without a token, so the queue list can be read.
        let nobody = User::development(rex_auth::StaffRole::Coordinator, None, Vec::new());
        let queues = web.queues(&nobody).await.unwrap_or_default();
        let boxes: String = queues
            .iter()
            .map(|q| {
                format!(
                    r#"<div class="check"><input type="checkbox" id="q-{code}" name="queue" value="{code}"><label for="q-{code}">{name}</label></div>"#,
                    code = escape(&q.code),
                    name = escape(&q.name)
                )
            })
            .collect();
        body.push_str(&format!(
            r#"<h2>Development login</h2>
<p>This server runs in development mode (no authentication, loopback only).</p>
<form class="sign-in" method="post" action="/ui/dev-sign-in">
<input type="hidden" name="csrf" value="{csrf}">
<label for="dev-role">Role</label>
<select id="dev-role" name="role"><option value="specialist">Specialist</option><option value="coordinator">Coordinator</option><option value="admin">Admin</option></select>
<label for="dev-practitioner">PractitionerRole</label>
<input id="dev-practitioner" name="practitioner_role" value="PractitionerRole/dev-specialist" pattern="PractitionerRole/[A-Za-z0-9.\-]{{1,64}}">
<fieldset><legend>Queues served</legend>{boxes}</fieldset>
<button type="submit">Sign in for development</button>
</form>
"#
        ));
    }
    body
}

/// Starts a session: a new CSRF token, and the session cookie; on to the worklist.
fn signed_in(web: &Web, user: &User) -> Response {
    start_session(web, user, see_other("/ui/worklist"))
}

/// Sets the cookies of `user`'s session on `response`.
fn start_session(web: &Web, user: &User, mut response: Response) -> Response {
    let secure = web.options.secure_cookies;
    web.set(&mut response, &set_cookie(SESSION_COOKIE, &user.cookie_value(), secure));
    web.set(&mut response, &set_cookie(CSRF_COOKIE, &new_csrf_token(), secure));
    response
}

async fn refuse_sign_in(web: &Web, headers: &HeaderMap, reason: &str) -> Response {
    let csrf = cookie(headers, CSRF_COOKIE).unwrap_or_default().to_string();
    let body = sign_in_body(web, &csrf, &message("error", reason)).await;
    html_response(StatusCode::UNAUTHORIZED, page("Sign in", None, &csrf, &body))
}

/// `GET /ui/login`: off to the identity provider (OpenID Connect, `oidc.rs`).
async fn login(State(web): State<Web>, headers: HeaderMap) -> Response {
    let (Some(oidc), Some(client)) = (&web.options.oidc, &web.options.sign_in) else {
        return html_response(StatusCode::NOT_FOUND, page("Not found", None, "", "<h1>Not found</h1>"));
    };
    match oidc::start(&web.http, oidc, client, Utc::now().timestamp()).await {
        Ok((location, login)) => {
            let mut response = see_other(&location);
            web.set(&mut response, &login_cookie(&login, oidc::LOGIN_MAX_AGE, web.options.secure_cookies));
            response
        }
        Err(reason) => {
            tracing::warn!(%reason, "OpenID Connect sign-in could not start");
            refuse_sign_in(&web, &headers, &format!("Signing in with the hospital account is unavailable: {reason}"))
                .await
        }
    }
}

/// The sign-in in progress: SameSite=Lax, since the provider's redirect back to rex is a
/// navigation from another site, which never carries Strict cookies.
fn login_cookie(value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{}={value}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}", oidc::LOGIN_COOKIE)
}

/// `GET /ui/callback`: back from the identity provider with a code.
async fn callback(State(web): State<Web>, headers: HeaderMap, Query(callback): Query<oidc::Callback>) -> Response {
    let (Some(oidc), Some(client)) = (&web.options.oidc, &web.options.sign_in) else {
        return html_response(StatusCode::NOT_FOUND, page("Not found", None, "", "<h1>Not found</h1>"));
    };
    let login = cookie(&headers, oidc::LOGIN_COOKIE);
    let finished = oidc::finish(&web.http, oidc, client, login, &callback, Utc::now().timestamp()).await;
    let mut response = match finished {
        // This request came from the provider's site, so the browser would not send the new
        // SameSite=Strict session cookie along a redirect; a page of rex's own moves on instead.
        Ok(user) => {
            let onward = r#"<!doctype html><meta http-equiv="refresh" content="0; url=/ui/worklist"><title>Signed in</title><p><a href="/ui/worklist">Continue to the worklist</a></p>"#;
            start_session(&web, &user, html_response(StatusCode::OK, onward.to_string()))
        }
        Err(reason) => {
            tracing::warn!(%reason, "OpenID Connect sign-in refused");
            refuse_sign_in(&web, &headers, &format!("Signing in was refused: {reason}")).await
        }
    };
    web.set(&mut response, &login_cookie("", 0, web.options.secure_cookies));
    response
}

fn forbidden_form() -> Response {
    html_response(
        StatusCode::FORBIDDEN,
        page(
            "Form expired",
            None,
            "",
            "<h1>Form expired</h1><p>This form is no longer valid. <a href=\"/ui/sign-in\">Start again</a>.</p>",
        ),
    )
}

async fn sign_in(State(web): State<Web>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form_fields(&body);
    if !csrf_matches(cookie(&headers, CSRF_COOKIE), field(&fields, "csrf")) {
        return forbidden_form();
    }
    let Some(token) = field(&fields, "token") else {
        return refuse_sign_in(&web, &headers, "Paste your bearer token.").await;
    };
    let Some(oidc) = &web.options.oidc else {
        return refuse_sign_in(
            &web,
            &headers,
            "This server has no staff identity provider; use the development login.",
        )
        .await;
    };
    match User::from_token(token, oidc, Utc::now().timestamp()) {
        Ok(user) => signed_in(&web, &user),
        Err(reason) => refuse_sign_in(&web, &headers, &format!("This token was refused: {reason}")).await,
    }
}

async fn dev_sign_in(State(web): State<Web>, headers: HeaderMap, body: Bytes) -> Response {
    if !web.options.dev_login {
        return html_response(StatusCode::NOT_FOUND, page("Not found", None, "", "<h1>Not found</h1>"));
    }
    let fields = form_fields(&body);
    if !csrf_matches(cookie(&headers, CSRF_COOKIE), field(&fields, "csrf")) {
        return forbidden_form();
    }
    let Some(role) = field(&fields, "role").and_then(session::parse_role) else {
        return refuse_sign_in(&web, &headers, "Choose a role.").await;
    };
    let practitioner_role = field(&fields, "practitioner_role")
        .filter(|r| r.strip_prefix("PractitionerRole/").is_some_and(|id| !id.is_empty() && !id.contains('/')))
        .map(String::from);
    let queues = fields.iter().filter(|(k, _)| k == "queue").map(|(_, v)| v.clone()).collect();
    signed_in(&web, &User::development(role, practitioner_role, queues))
}

async fn sign_out(State(web): State<Web>, headers: HeaderMap, body: Bytes) -> Response {
    if !csrf_matches(cookie(&headers, CSRF_COOKIE), field(&form_fields(&body), "csrf")) {
        return forbidden_form();
    }
    let mut response = see_other("/ui/sign-in");
    web.set(&mut response, &clear_cookie(SESSION_COOKIE, web.options.secure_cookies));
    web.set(&mut response, &clear_cookie(CSRF_COOKIE, web.options.secure_cookies));
    response
}

async fn worklist_page(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(filters): Query<worklist::Filters>,
) -> Response {
    let session = match web.session(&headers) {
        Ok(session) => session,
        Err(needed) => return web.to_sign_in(needed.expired),
    };
    match worklist_content(&web, &session.user, filters).await {
        Ok(body) => html_response(StatusCode::OK, page("Worklist", Some(&session.user), &session.csrf, &body)),
        Err(failure) => web.failure(failure, &session, "Worklist"),
    }
}

async fn worklist_content(web: &Web, user: &User, filters: worklist::Filters) -> Result<String, Failure> {
    let now = Utc::now();
    let queues = worklist::served(user, &web.queues(user).await?);
    let filters = filters.checked(&queues);
    let found = web.api.search(user, &worklist::task_search(user, &queues, &filters)).await?;
    let partners = partners(web, user, found.matches.iter().filter_map(worklist::partner_of)).await?;
    let updates = unseen_updates(web, user, &found.matches).await?;
    let rows: Vec<worklist::Row> =
        found.matches.iter().map(|task| worklist::row(task, &found, &partners, &updates, now)).collect();
    let consults = consult::upcoming(&web.api, user, now).await?;
    Ok(format!("{}{consults}", worklist::render(&queues, &filters, &rows, found.total, found.has_next, user, now)))
}

async fn slots_page(State(web): State<Web>, headers: HeaderMap, Query(query): Query<ReferralQuery>) -> Response {
    let session = match web.session(&headers) {
        Ok(session) => session,
        Err(needed) => return web.to_sign_in(needed.expired),
    };
    let notice = match query.done.as_deref() {
        Some("open-slots") => message("notice", "Your slots are open."),
        Some("block-time") => message("notice", "The time is blocked."),
        _ => String::new(),
    };
    show_slots(&web, &session, StatusCode::OK, &notice).await
}

async fn show_slots(web: &Web, session: &Session, status: StatusCode, banner: &str) -> Response {
    match consult::slots_page(&web.api, &session.user, &session.csrf, banner, Utc::now()).await {
        Ok(body) => html_response(status, page("My consult slots", Some(&session.user), &session.csrf, &body)),
        Err(failure) => web.failure(failure, session, "My consult slots"),
    }
}

async fn open_slots(State(web): State<Web>, headers: HeaderMap, body: Bytes) -> Response {
    slots_operation(&web, &headers, &body, "$open-slots").await
}

async fn block_time(State(web): State<Web>, headers: HeaderMap, body: Bytes) -> Response {
    slots_operation(&web, &headers, &body, "$block-time").await
}

/// Runs `$open-slots` or `$block-time` on the signed-in specialist's own schedule.
async fn slots_operation(web: &Web, headers: &HeaderMap, body: &Bytes, operation: &str) -> Response {
    let session = match web.session(headers) {
        Ok(session) => session,
        Err(needed) => return web.to_sign_in(needed.expired),
    };
    let fields = form_fields(body);
    if !csrf_matches(Some(&session.csrf), field(&fields, "csrf")) {
        return forbidden_form();
    }
    let Some(own) = session.user.practitioner_role.clone() else {
        return show_slots(web, &session, StatusCode::FORBIDDEN, "").await;
    };
    let parameters = if operation == "$open-slots" {
        consult::open_parameters(&fields)
    } else {
        let given = ["start", "end", "reason"].map(|name| (name, field(&fields, name).unwrap_or_default()));
        parameters(&given.into_iter().filter(|(_, value)| !value.is_empty()).collect::<Vec<_>>())
    };
    match web.api.post(&session.user, &format!("{own}/{operation}"), &parameters).await {
        Ok(_) => see_other(&format!("/ui/slots?done={}", operation.trim_start_matches('$'))),
        Err(Failure::SignIn(_)) => web.to_sign_in(true),
        Err(Failure::Refused { status, message: text }) => {
            show_slots(web, &session, status, &message("error", &format!("Refused: {text}"))).await
        }
    }
}

/// The partner changes of `tasks` their assigned specialists have not opened yet, by Task id.
async fn unseen_updates(
    web: &Web,
    user: &User,
    tasks: &[Value],
) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    let references: Vec<String> =
        tasks.iter().filter_map(|t| t["id"].as_str()).map(|id| format!("Task/{id}")).collect();
    if references.is_empty() {
        return Ok(Default::default());
    }
    let pairs: Vec<(&str, &str)> = references.iter().map(|r| ("task", r.as_str())).collect();
    let answer = web.api.post(user, "Task/$partner-updates", &parameters(&pairs)).await?;
    Ok(worklist::unseen_updates(&answer))
}

/// The Organizations of the given partners, in one search.
async fn partners<'a>(
    web: &Web,
    user: &User,
    ids: impl Iterator<Item = &'a str>,
) -> Result<std::collections::BTreeMap<String, worklist::Partner>, Failure> {
    let mut ids: Vec<String> = ids.map(|id| format!("{}|{id}", rex_referral::PARTNER_SYSTEM)).collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let search = format!("Organization?{}", query(&[("identifier", &ids.join(",")), ("_count", "1000")]));
    Ok(worklist::partners_of(&web.api.search(user, &search).await?.matches))
}

async fn coordinator_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    let session = match web.session(&headers) {
        Ok(session) => session,
        Err(needed) => return web.to_sign_in(needed.expired),
    };
    if !session.user.is_coordinator() {
        let body = format!("<h1>Coordinator view</h1>{}", message("error", "This view is for coordinators."));
        return html_response(
            StatusCode::FORBIDDEN,
            page("Coordinator view", Some(&session.user), &session.csrf, &body),
        );
    }
    match coordinator_content(&web, &session.user).await {
        Ok(body) => html_response(StatusCode::OK, page("Coordinator view", Some(&session.user), &session.csrf, &body)),
        Err(failure) => web.failure(failure, &session, "Coordinator view"),
    }
}

async fn coordinator_content(web: &Web, user: &User) -> Result<String, Failure> {
    let queues = web.queues(user).await?;
    // Every open Task, page by page (1000 is the API's largest page).
    let (mut tasks, mut requests) = (Vec::new(), Vec::new());
    loop {
        let offset = tasks.len().to_string();
        let search = format!(
            "Task?{}",
            query(&[
                ("status", worklist::OPEN_STATUSES),
                ("_count", "1000"),
                ("_offset", &offset),
                ("_include", "Task:focus")
            ])
        );
        let page = web.api.search(user, &search).await?;
        let done = !page.has_next || page.matches.is_empty();
        tasks.extend(page.matches);
        requests.extend(page.included);
        if done {
            break;
        }
    }
    let (counts, flagged) = coordinator::summarise(&tasks, &requests, Utc::now());
    Ok(coordinator::render(&queues, &counts, &flagged, Utc::now()))
}

#[derive(Deserialize)]
struct ReferralQuery {
    done: Option<String>,
}

/// What a finished action says on the page it returns to.
fn done_text(action: &str) -> Option<&'static str> {
    Some(match action {
        "claim" => "You claimed this referral.",
        "release" => "The referral is back on its queue.",
        "redirect" => "The referral was redirected.",
        "decline" => "The referral was declined.",
        "request-information" => "Your request for information was sent to the partner.",
        "complete" => "Your opinion was returned and the referral is completed.",
        "request-consult" => "The consult was proposed to the partner, who books a time.",
        _ => return None,
    })
}

async fn referral_page(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ReferralQuery>,
) -> Response {
    let session = match web.session(&headers) {
        Ok(session) => session,
        Err(needed) => return web.to_sign_in(needed.expired),
    };
    let notice = query.done.as_deref().and_then(done_text).map(|t| message("notice", t)).unwrap_or_default();
    show_referral(&web, &session, &id, StatusCode::OK, &notice).await
}

/// The referral page with a message on top (a notice, or the refusal of an action).
async fn show_referral(web: &Web, session: &Session, id: &str, status: StatusCode, banner: &str) -> Response {
    let loaded = referral::load(&web.api, &session.user, id).await;
    if loaded.is_ok()
        && let Some(role) = session.user.practitioner_role.as_deref()
    {
        // The worklist's "updated" marker ends once the assigned specialist has seen the page. A
        // failure to record it must not keep the referral from them: it stays marked, that is all.
        let _ = web.api.post(&session.user, &format!("Task/{id}/$opened"), &parameters(&[("reader", role)])).await;
    }
    let queues = web.queues(&session.user).await;
    match (loaded, queues) {
        (Ok(referral), Ok(queues)) => {
            let consult = match consult_section(web, session, &referral).await {
                Ok(section) => section,
                Err(failure) => return web.failure(failure, session, "Referral"),
            };
            let body = format!(
                "{banner}{}",
                referral::render(&referral, &session.user, &queues, &session.csrf, &consult, Utc::now())
            );
            html_response(status, page("Referral", Some(&session.user), &session.csrf, &body))
        }
        (Err(Failure::Refused { .. }), _) if !banner.is_empty() => {
            // After a refused action the referral may be out of sight (claimed by someone else):
            // the refusal is what matters.
            let body = format!(r#"<h1>Referral</h1>{banner}<p><a href="/ui/worklist">Back to the worklist</a></p>"#);
            html_response(status, page("Referral", Some(&session.user), &session.csrf, &body))
        }
        (Err(failure), _) | (_, Err(failure)) => web.failure(failure, session, "Referral"),
    }
}

/// The referral's telehealth consult (or the form asking for one).
async fn consult_section(web: &Web, session: &Session, referral: &referral::Referral) -> Result<String, Failure> {
    let Some(request) = referral.task["focus"]["reference"].as_str() else { return Ok(String::new()) };
    let found = consult::of_referral(&web.api, &session.user, request).await?;
    let specialist = found.as_ref().and_then(|c| {
        c["participant"]
            .as_array()?
            .iter()
            .find_map(|p| p["actor"]["reference"].as_str().filter(|r| r.starts_with("PractitionerRole/")))
    });
    let zones = consult::specialist_zones(&web.api, &session.user, specialist.into_iter()).await?;
    let zone = specialist.and_then(|s| zones.get(s)).copied();
    Ok(consult::section(&referral.task, found.as_ref(), zone, &session.user, &session.csrf))
}

async fn act(
    State(web): State<Web>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let session = match web.session(&headers) {
        Ok(session) => session,
        Err(needed) => return web.to_sign_in(needed.expired),
    };
    let fields = form_fields(&body);
    if !csrf_matches(Some(&session.csrf), field(&fields, "csrf")) {
        return forbidden_form();
    }
    let user = &session.user;
    if action == "request-consult" {
        let operation = format!("Task/{id}/$request-consult");
        return match web.api.post(user, &operation, &consult::request_parameters(&fields)).await {
            Ok(_) => see_other(&format!("/ui/referral/{id}?done={action}")),
            Err(Failure::SignIn(_)) => web.to_sign_in(true),
            Err(Failure::Refused { status, message: text }) => {
                show_referral(&web, &session, &id, status, &message("error", &format!("Refused: {text}"))).await
            }
        };
    }
    let message_text = match (field(&fields, "message"), field(&fields, "document")) {
        (Some(message), Some(document)) => Some(format!("{message}\n\nPlease also send: {document}.")),
        (message, _) => message.map(String::from),
    };
    let arguments: Vec<(&str, Option<&str>)> = match action.as_str() {
        "claim" => vec![("owner", user.practitioner_role.as_deref())],
        "release" => vec![],
        "redirect" => vec![("queue", field(&fields, "queue")), ("reason", field(&fields, "reason"))],
        "decline" => vec![("reason", field(&fields, "reason"))],
        "request-information" => vec![("message", message_text.as_deref())],
        _ => {
            return html_response(
                StatusCode::NOT_FOUND,
                page("Not found", Some(user), &session.csrf, "<h1>Not found</h1>"),
            );
        }
    };
    // Empty fields are left out, so the API's own message names what is missing.
    let given: Vec<(&str, &str)> = arguments.iter().filter_map(|(name, value)| Some((*name, (*value)?))).collect();
    let operation = format!("Task/{id}/${action}");
    match web.api.post(user, &operation, &parameters(&given)).await {
        Ok(_) => see_other(&format!("/ui/referral/{id}?done={action}")),
        Err(Failure::SignIn(_)) => web.to_sign_in(true),
        Err(Failure::Refused { status, message: text }) => {
            show_referral(&web, &session, &id, status, &message("error", &format!("Refused: {text}"))).await
        }
    }
}

/// Reads the opinion form: its text fields and the optional PDF.
async fn opinion_form(mut multipart: Multipart) -> Result<(referral::OpinionForm, Option<String>), String> {
    let mut form = referral::OpinionForm { system: "http://snomed.info/sct".into(), ..Default::default() };
    let mut csrf = None;
    while let Some(part) = multipart.next_field().await.map_err(|e| format!("The form could not be read: {e}"))? {
        let name = part.name().unwrap_or_default().to_string();
        let file_name = part.file_name().map(String::from);
        let bytes = part.bytes().await.map_err(|e| format!("The form could not be read: {e}"))?;
        let text = || String::from_utf8_lossy(&bytes).trim().to_string();
        match name.as_str() {
            "csrf" => csrf = Some(text()),
            "conclusion" => form.conclusion = text(),
            "system" if ["http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10"].contains(&text().as_str()) => {
                form.system = text()
            }
            "code" => form.code = Some(text()).filter(|c| !c.is_empty()),
            "display" => form.display = Some(text()).filter(|d| !d.is_empty()),
            "pdf" if !bytes.is_empty() => {
                if !bytes.starts_with(b"%PDF-") {
                    return Err("The signed report must be a PDF file.".into());
                }
                form.pdf = Some(referral::Upload {
                    name: file_name.unwrap_or_else(|| "opinion.pdf".into()),
                    bytes: bytes.to_vec(),
                });
            }
            _ => {}
        }
    }
    Ok((form, csrf))
}

async fn opinion(State(web): State<Web>, headers: HeaderMap, Path(id): Path<String>, multipart: Multipart) -> Response {
    let session = match web.session(&headers) {
        Ok(session) => session,
        Err(needed) => return web.to_sign_in(needed.expired),
    };
    let (form, csrf) = match opinion_form(multipart).await {
        Ok(read) => read,
        Err(problem) => {
            return show_referral(&web, &session, &id, StatusCode::BAD_REQUEST, &message("error", &problem)).await;
        }
    };
    if !csrf_matches(Some(&session.csrf), csrf.as_deref()) {
        return forbidden_form();
    }
    if form.conclusion.is_empty() {
        return show_referral(&web, &session, &id, StatusCode::BAD_REQUEST, &message("error", "Write the conclusion."))
            .await;
    }
    let referral = match referral::load(&web.api, &session.user, &id).await {
        Ok(referral) => referral,
        Err(failure) => return web.failure(failure, &session, "Referral"),
    };
    // The report first, then `$complete` naming it; a refusal of either is shown on the page.
    let report = referral::opinion_report(&referral, &session.user, &form, Utc::now());
    let completed = async {
        let stored = web.api.post(&session.user, "DiagnosticReport", &report).await?;
        let opinion = format!("DiagnosticReport/{}", stored["id"].as_str().unwrap_or_default());
        web.api.post(&session.user, &format!("Task/{id}/$complete"), &parameters(&[("opinion", &opinion)])).await
    };
    match completed.await {
        Ok(_) => see_other(&format!("/ui/referral/{id}?done=complete")),
        Err(Failure::SignIn(_)) => web.to_sign_in(true),
        Err(Failure::Refused { status, message: text }) => {
            show_referral(&web, &session, &id, status, &message("error", &format!("Refused: {text}"))).await
        }
    }
}

#[derive(Deserialize)]
struct FileQuery {
    download: Option<String>,
}

/// Content types shown in the browser besides the inline images; anything else is only downloaded.
const INLINE_DOCUMENT_TYPES: [&str; 2] = ["application/pdf", "text/plain"];

async fn file(
    State(web): State<Web>,
    headers: HeaderMap,
    Path((resource_type, id, index)): Path<(String, String, usize)>,
    Query(query): Query<FileQuery>,
) -> Response {
    let session = match web.session(&headers) {
        Ok(session) => session,
        Err(needed) => return web.to_sign_in(needed.expired),
    };
    if !["DocumentReference", "Communication", "DiagnosticReport"].contains(&resource_type.as_str()) {
        return web.failure(
            Failure::Refused { status: StatusCode::NOT_FOUND, message: "No such file".into() },
            &session,
            "File",
        );
    }
    let resource = match web.api.get(&session.user, &format!("{resource_type}/{id}")).await {
        Ok(resource) => resource,
        Err(failure) => return web.failure(failure, &session, "File"),
    };
    let Some(attachment) = referral::attachments(&resource).get(index).copied().cloned() else {
        return web.failure(
            Failure::Refused { status: StatusCode::NOT_FOUND, message: "No such file".into() },
            &session,
            "File",
        );
    };
    let content = match attachment_content(&web, &session.user, &attachment).await {
        Ok(content) => content,
        Err(failure) => return web.failure(failure, &session, "File"),
    };
    let content_type = attachment["contentType"]
        .as_str()
        .filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric() || b" /.+-;=".contains(&b)))
        .unwrap_or("application/octet-stream")
        .to_string();
    let essence = referral::essence(&content_type);
    let image = referral::INLINE_IMAGE_TYPES.contains(&essence.as_str());
    let inline = query.download.is_none() && (image || INLINE_DOCUMENT_TYPES.contains(&essence.as_str()));
    let name: String = attachment["title"]
        .as_str()
        .unwrap_or("attachment")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || " ._-".contains(c) { c } else { '_' })
        .collect();
    let disposition = format!("{}; filename=\"{name}\"", if inline { "inline" } else { "attachment" });
    let mut response = (StatusCode::OK, content).into_response();
    for (header, value) in [(CONTENT_TYPE, content_type), (CONTENT_DISPOSITION, disposition)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header, value);
        }
    }
    if essence != "application/pdf" {
        // Whatever a partner's file holds, opened on its own it runs nothing (the browser's PDF
        // viewer needs script, and PDFs are no HTML). `nosniff` is set for every answer.
        response
            .headers_mut()
            .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; img-src 'self'; sandbox"));
    }
    response
}

/// An attachment's bytes: inline `data`, or a `Binary` on this server read through the API.
/// Other URLs are not fetched (the server must not be made to call arbitrary addresses).
async fn attachment_content(web: &Web, user: &User, attachment: &Value) -> Result<Vec<u8>, Failure> {
    let not_here = |message: &str| Failure::Refused { status: StatusCode::NOT_FOUND, message: message.into() };
    let data = match attachment["data"].as_str() {
        Some(data) => data.to_string(),
        None => {
            let url = attachment["url"].as_str().ok_or_else(|| not_here("This attachment has no content"))?;
            let binary = url
                .rsplit_once("Binary/")
                .map(|(_, id)| id)
                .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)))
                .ok_or_else(|| not_here("This attachment is stored outside rex"))?;
            let binary = web.api.get(user, &format!("Binary/{binary}")).await?;
            binary["data"].as_str().unwrap_or_default().to_string()
        }
    };
    base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|_| not_here("This attachment's content is not valid base64"))
}
