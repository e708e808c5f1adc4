//! Operator endpoints: `/health/live`, `/health/ready` (public, no PHI) and `/metrics` in the
//! Prometheus text format (admins, or anyone in `--dev`), with the request counters the request
//! log feeds and the queue gauges read from the database at each scrape.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use rex_auth::{Principal, StaffRole};
use rex_fhir::query::{Handling, SearchQuery};
use rex_fhir::search::SearchRegistry;
use rex_fhir::{Issue, IssueCode, Rule};
use rex_i18n::msg;
use serde_json::json;

use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;

/// Upper bounds (seconds) of the request latency histogram buckets.
const LATENCY_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Latency {
    count: u64,
    sum: f64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`].
    buckets: [u64; LATENCY_BUCKETS.len()],
}

/// Counters kept in memory by this instance (Prometheus sums them across instances).
#[derive(Default)]
pub struct Metrics {
    /// By (method, route template, status).
    requests: Mutex<BTreeMap<(String, String, u16), Latency>>,
    /// By (partner, accepted or refused): Bundles posted to the base or `$process-message`.
    submissions: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    /// Records one finished request.
    pub fn record(&self, method: &str, route: &str, status: u16, seconds: f64, caller: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let latency = requests.entry((method.to_string(), route.to_string(), status)).or_default();
        latency.count += 1;
        latency.sum += seconds;
        for (bucket, bound) in latency.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        drop(requests);
        let is_submission = method == "POST" && matches!(route, "/fhir" | "/fhir/" | "/fhir/$process-message");
        if let Some(partner) = caller.strip_prefix("partner:").filter(|_| is_submission) {
            let outcome = if (200..300).contains(&status) { "accepted" } else { "refused" };
            let mut submissions = self.submissions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *submissions.entry((partner.to_string(), outcome)).or_default() += 1;
        }
    }

    fn render(&self, out: &mut String) {
        let requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        out.push_str("# HELP rex_http_requests_total HTTP requests by method, route template and status.\n");
        out.push_str("# TYPE rex_http_requests_total counter\n");
        for ((method, route, status), latency) in requests.iter() {
            let _ = writeln!(
                out,
                "rex_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                latency.count
            );
        }
        out.push_str("# HELP rex_http_request_duration_seconds Request latency by method and route template.\n");
        out.push_str("# TYPE rex_http_request_duration_seconds histogram\n");
        let mut by_route: BTreeMap<(&str, &str), Latency> = BTreeMap::new();
        for ((method, route, _), latency) in requests.iter() {
            let total = by_route.entry((method, route)).or_default();
            total.count += latency.count;
            total.sum += latency.sum;
            for (sum, add) in total.buckets.iter_mut().zip(latency.buckets) {
                *sum += add;
            }
        }
        for ((method, route), latency) in &by_route {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (bound, count) in LATENCY_BUCKETS.iter().zip(latency.buckets) {
                let _ = writeln!(out, "rex_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "rex_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", latency.count);
            let _ = writeln!(out, "rex_http_request_duration_seconds_sum{{{labels}}} {}", latency.sum);
            let _ = writeln!(out, "rex_http_request_duration_seconds_count{{{labels}}} {}", latency.count);
        }
        drop(requests);
        out.push_str(
            "# HELP rex_referral_submissions_total Referral Bundles posted by partners, accepted or refused.\n",
        );
        out.push_str("# TYPE rex_referral_submissions_total counter\n");
        let submissions = self.submissions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for ((partner, outcome), count) in submissions.iter() {
            let _ = writeln!(
                out,
                "rex_referral_submissions_total{{partner=\"{}\",outcome=\"{outcome}\"}} {count}",
                escape(partner)
            );
        }
    }
}

/// Issues of requests refused by validation, by (issue code, rule), in this process. Kept outside
/// [`Metrics`] because the validation functions are called with the validator, not the state;
/// there is one server state per process, so the counts are this instance's as the others are.
static REFUSED_ISSUES: Mutex<BTreeMap<(&'static str, String), u64>> = Mutex::new(BTreeMap::new());

/// Counts the errors of a request validation refused, by issue code and rule: the invariant key
/// for a broken invariant (`ref-1`), else the location without list indexes
/// (`Bundle.entry.resource.gender`), which keeps the number of label values bounded by the model.
pub fn record_refused_issues(issues: &[Issue]) {
    let mut counts = REFUSED_ISSUES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for issue in issues.iter().filter(|issue| issue.is_error()) {
        *counts.entry((issue.code.as_str(), rule(issue))).or_default() += 1;
    }
}

/// The invariant key of an invariant issue (`ref-1`), else the issue's location with `[n]` removed
/// (empty when it has none).
fn rule(issue: &Issue) -> String {
    if let Some(Rule::Constraint { key, .. }) = issue.rule.as_deref() {
        return key.clone();
    }
    let mut pattern = String::new();
    let mut in_index = false;
    for c in issue.expression.as_deref().unwrap_or_default().chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => pattern.push(c),
            _ => {}
        }
    }
    pattern
}

fn render_refused_issues(out: &mut String) {
    out.push_str("# HELP rex_validation_issues_total Validation errors of refused requests by code and rule.\n");
    out.push_str("# TYPE rex_validation_issues_total counter\n");
    let counts = REFUSED_ISSUES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for ((code, rule), count) in counts.iter() {
        let _ = writeln!(out, "rex_validation_issues_total{{code=\"{code}\",rule=\"{}\"}} {count}", escape(rule));
    }
}

/// Label values escaped as the text format requires.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `GET /health/live`: the process answers.
pub async fn live() -> Response {
    health(StatusCode::OK, "pass", json!({}))
}

/// `GET /health/ready`: the database answers and the definitions are loaded, so requests can be
/// served (migrations ran before the server started listening).
pub async fn ready(State(state): State<AppState>) -> Response {
    let database = state.store.read("HealthcareService", "readiness-probe").await.is_ok();
    let definitions = state.validator.knows_profile("http://hl7.org/fhir/StructureDefinition/Patient");
    let check = |ok: bool| json!([{"status": if ok { "pass" } else { "fail" }}]);
    let checks = json!({"database:responseTime": check(database), "definitions:loaded": check(definitions)});
    if database && definitions {
        health(StatusCode::OK, "pass", checks)
    } else {
        health(StatusCode::SERVICE_UNAVAILABLE, "fail", checks)
    }
}

/// A health response in the `application/health+json` draft format.
fn health(status: StatusCode, verdict: &str, checks: serde_json::Value) -> Response {
    let body = json!({"status": verdict, "checks": checks});
    (status, [(CONTENT_TYPE, "application/health+json")], body.to_string()).into_response()
}

/// `GET /metrics`: Prometheus text format; admins only (anyone in `--dev`).
pub async fn metrics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let allowed = matches!(
        &caller,
        Caller::Unrestricted | Caller::Authenticated(Principal::Staff { role: StaffRole::Admin, .. })
    );
    if !allowed {
        return Err(ApiError::one(StatusCode::FORBIDDEN, IssueCode::Forbidden, msg!("metrics-admins-only")).denied());
    }
    let mut out = String::new();
    state.metrics.render(&mut out);
    render_refused_issues(&mut out);
    let pool = state.store.pool_use();
    out.push_str("# HELP rex_db_pool_connections Database connections of this instance's pool, busy or idle.\n");
    out.push_str("# TYPE rex_db_pool_connections gauge\n");
    let busy = (pool.open as usize).saturating_sub(pool.idle);
    let _ = writeln!(out, "rex_db_pool_connections{{state=\"busy\"}} {busy}");
    let _ = writeln!(out, "rex_db_pool_connections{{state=\"idle\"}} {}", pool.idle);
    out.push_str("# HELP rex_db_pool_max_connections The most connections this instance's pool opens.\n");
    out.push_str("# TYPE rex_db_pool_max_connections gauge\n");
    let _ = writeln!(out, "rex_db_pool_max_connections {}", pool.max);
    out.push_str(
        "# HELP rex_queue_open_referrals Referral Tasks waiting on each queue (requested, not yet claimed).\n",
    );
    out.push_str("# TYPE rex_queue_open_referrals gauge\n");
    let mut overdue_lines = String::new();
    let now = rex_store::format_instant(rex_store::now_micros());
    for queue in &state.routing.queues {
        let owner = format!("HealthcareService/{}", queue.code);
        let open = count(&state, &[("owner", &owner), ("status", "requested")]).await?;
        let overdue =
            count(&state, &[("owner", &owner), ("status", "requested"), ("due", &format!("lt{now}"))]).await?;
        let _ = writeln!(out, "rex_queue_open_referrals{{queue=\"{}\"}} {open}", escape(&queue.code));
        let _ = writeln!(overdue_lines, "rex_queue_overdue_referrals{{queue=\"{}\"}} {overdue}", escape(&queue.code));
    }
    out.push_str("# HELP rex_queue_overdue_referrals Open referral Tasks past their due time, by queue.\n");
    out.push_str("# TYPE rex_queue_overdue_referrals gauge\n");
    out.push_str(&overdue_lines);
    let outbox = state.store.outbox_counts().await?;
    out.push_str("# HELP rex_notifications_pending Partner notifications waiting for delivery.\n");
    out.push_str("# TYPE rex_notifications_pending gauge\n");
    let _ = writeln!(out, "rex_notifications_pending {}", outbox.pending);
    out.push_str("# HELP rex_notifications_dead Partner notifications given up after every retry.\n");
    out.push_str("# TYPE rex_notifications_dead gauge\n");
    let _ = writeln!(out, "rex_notifications_dead {}", outbox.dead);
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

async fn count(state: &AppState, pairs: &[(&str, &str)]) -> Result<i64, ApiError> {
    let mut pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    pairs.push(("_summary".into(), "count".into()));
    let query = SearchQuery::parse(SearchRegistry::r4(), "Task", &pairs, Handling::Strict)
        .map_err(|issues| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, issues))?;
    Ok(state.store.search(&query).await?.total.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_render_as_counters_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.record("GET", "/fhir/{type}/{id}", 200, 0.003, "partner:a");
        metrics.record("GET", "/fhir/{type}/{id}", 404, 0.2, "partner:a");
        metrics.record("POST", "/fhir/", 422, 0.04, "partner:a");
        metrics.record("POST", "/fhir/", 200, 0.04, "partner:a");
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("rex_http_requests_total{method=\"GET\",route=\"/fhir/{type}/{id}\",status=\"404\"} 1"));
        assert!(out.contains(
            "rex_http_request_duration_seconds_bucket{method=\"GET\",route=\"/fhir/{type}/{id}\",le=\"0.005\"} 1"
        ));
        assert!(out.contains(
            "rex_http_request_duration_seconds_bucket{method=\"GET\",route=\"/fhir/{type}/{id}\",le=\"0.25\"} 2"
        ));
        assert!(out.contains("rex_http_request_duration_seconds_count{method=\"GET\",route=\"/fhir/{type}/{id}\"} 2"));
        assert!(out.contains("rex_referral_submissions_total{partner=\"a\",outcome=\"refused\"} 1"));
        assert!(out.contains("rex_referral_submissions_total{partner=\"a\",outcome=\"accepted\"} 1"));
    }

    #[test]
    fn validation_issues_are_counted_by_invariant_key_or_location_pattern() {
        let invariant = Issue::error(IssueCode::Invariant, "Constraint failed: rex-test-1: 'A test rule'")
            .at("Bundle.entry[2].resource")
            .rule(Rule::Constraint { key: "rex-test-1".into(), human: "A test rule".into() });
        assert_eq!(rule(&invariant), "rex-test-1");
        let code = Issue::error(IssueCode::CodeInvalid, "bad gender").at("Bundle.entry[7].resource.gender");
        assert_eq!(rule(&code), "Bundle.entry.resource.gender");
        let warning = Issue { severity: rex_fhir::Severity::Warning, ..code.clone() };
        record_refused_issues(&[invariant.clone(), invariant, code, warning]);
        let mut out = String::new();
        render_refused_issues(&mut out);
        // Other tests of this process may count issues too: the counts are at least these.
        let count = |line: &str| {
            out.lines().find_map(|l| l.strip_prefix(line)).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0)
        };
        assert!(count("rex_validation_issues_total{code=\"invariant\",rule=\"rex-test-1\"}") >= 2, "{out}");
        assert!(count("rex_validation_issues_total{code=\"code-invalid\",rule=\"Bundle.entry.resource.gender\"}") >= 1);
    }
}
