//! The submission log behind the partner conformance scorecard: one row per Bundle a partner
//! submitted, accepted or refused, and one per issue of the answer. Nothing of the Bundle's
//! content is kept (see `migrations/*/0006_submissions.sql`).

use sqlx::Row;

use crate::{Isolation, Store, StoreError};

/// At most this many issues of one submission are kept (a Bundle refused with thousands of issues
/// would otherwise cost thousands of rows); [`Submission::issue_count`] still counts them all.
const MAX_ISSUES_KEPT: usize = 100;

/// One microsecond-day: submissions are grouped by UTC day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A submission as the scorecard records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub partner: String,
    /// Microseconds since the Unix epoch when the request came in.
    pub received: i64,
    /// `transaction`, `batch`, `message` or `other`.
    pub kind: String,
    /// Answered with a 2xx status.
    pub accepted: bool,
    /// The HTTP status of the answer.
    pub status: u16,
    /// How many issues the answer had (only the first [`MAX_ISSUES_KEPT`] are stored).
    pub issue_count: usize,
    pub issues: Vec<SubmissionIssue>,
}

/// One issue of a submission's answer, without its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionIssue {
    pub severity: String,
    pub code: String,
    /// A stable key of the broken rule: the invariant key, or `code@Type.element`.
    pub rule: String,
    /// The FHIRPath location as answered (`Bundle.entry[3].resource.gender`).
    pub location: Option<String>,
    /// The canonical URL of the profile, when known.
    pub profile: Option<String>,
}

/// Submissions of one UTC day and kind, accepted or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionCount {
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    pub kind: String,
    pub accepted: bool,
    pub count: i64,
}

/// How often a rule failed (issues of severity error or fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCount {
    pub rule: String,
    pub code: String,
    /// Issues naming the rule.
    pub count: i64,
    /// Submissions with at least one such issue.
    pub submissions: i64,
    /// One location where it failed (the smallest, so the answer is stable).
    pub example_location: Option<String>,
    pub profile: Option<String>,
}

/// How often a partner's resources claimed a profile rex does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileClaimCount {
    pub profile: String,
    /// Resources claiming it (issues naming it).
    pub count: i64,
    /// Submissions with at least one such resource.
    pub submissions: i64,
}

impl Store {
    /// Records a submission and its issues in a write of its own: one insert of the submission and
    /// one multi-row insert of its issues.
    pub async fn record_submission(&self, submission: &Submission) -> Result<(), StoreError> {
        let mut tx = self.begin(Isolation::RowLocking).await?;
        let row = sqlx::query(
            "INSERT INTO submissions (partner, received, kind, accepted, status, issue_count) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&submission.partner)
        .bind(submission.received)
        .bind(&submission.kind)
        .bind(i64::from(submission.accepted))
        .bind(i64::from(submission.status))
        .bind(i64::try_from(submission.issue_count).unwrap_or(i64::MAX))
        .fetch_one(tx.conn().await?)
        .await?;
        let id: i64 = row.get(0);
        let issues = &submission.issues[..submission.issues.len().min(MAX_ISSUES_KEPT)];
        if !issues.is_empty() {
            let values: Vec<String> = (0..issues.len())
                .map(|i| {
                    let p = i * 7;
                    format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7)
                })
                .collect();
            let sql = format!(
                "INSERT INTO submission_issues (submission_id, seq, severity, code, rule, location, profile) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (seq, issue) in (0i64..).zip(issues) {
                query = query
                    .bind(id)
                    .bind(seq)
                    .bind(&issue.severity)
                    .bind(&issue.code)
                    .bind(&issue.rule)
                    .bind(&issue.location)
                    .bind(&issue.profile);
            }
            query.execute(tx.conn().await?).await?;
        }
        tx.commit().await
    }

    /// A partner's submissions received in `[from, to)`, counted by UTC day, kind and outcome.
    pub async fn submission_counts(
        &self,
        partner: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<SubmissionCount>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT received / {MICROS_PER_DAY} AS day, kind, accepted, COUNT(*) FROM submissions \
             WHERE partner = $1 AND received >= $2 AND received < $3 \
             GROUP BY received / {MICROS_PER_DAY}, kind, accepted ORDER BY day, kind, accepted"
        ))
        .bind(partner)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| SubmissionCount {
                day: row.get(0),
                kind: row.get(1),
                accepted: row.get::<i64, _>(2) != 0,
                count: row.get(3),
            })
            .collect())
    }

    /// Whether `partner` ever sent a submission or a referral to this database.
    pub async fn knows_partner(&self, partner: &str) -> Result<bool, StoreError> {
        for table in ["submissions", "referrals"] {
            let found = sqlx::query(&format!("SELECT 1 FROM {table} WHERE partner = $1 LIMIT 1"))
                .bind(partner)
                .fetch_optional(&self.pool)
                .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The rules a partner's submissions received in `[from, to)` broke most often (errors and
    /// fatal issues), most frequent first, at most `limit`.
    pub async fn failing_rules(
        &self,
        partner: &str,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<RuleCount>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT i.rule, MIN(i.code), COUNT(*), COUNT(DISTINCT i.submission_id), MIN(i.location), MIN(i.profile) \
             FROM submission_issues i JOIN submissions s ON s.id = i.submission_id \
             WHERE s.partner = $1 AND s.received >= $2 AND s.received < $3 AND i.severity IN ('fatal', 'error') \
             GROUP BY i.rule ORDER BY COUNT(*) DESC, i.rule LIMIT {limit}"
        ))
        .bind(partner)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| RuleCount {
                rule: row.get(0),
                code: row.get(1),
                count: row.get(2),
                submissions: row.get(3),
                example_location: row.get(4),
                profile: row.get(5),
            })
            .collect())
    }

    /// The profiles a partner's resources claimed in `meta.profile` without rex knowing them, over
    /// `[from, to)`: the issues recorded with rule `rule`, by profile, most frequent first.
    pub async fn unknown_profile_claims(
        &self,
        partner: &str,
        from: i64,
        to: i64,
        rule: &str,
    ) -> Result<Vec<ProfileClaimCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.profile, COUNT(*), COUNT(DISTINCT i.submission_id) \
             FROM submission_issues i JOIN submissions s ON s.id = i.submission_id \
             WHERE s.partner = $1 AND s.received >= $2 AND s.received < $3 AND i.rule = $4 AND i.profile IS NOT NULL \
             GROUP BY i.profile ORDER BY COUNT(*) DESC, i.profile",
        )
        .bind(partner)
        .bind(from)
        .bind(to)
        .bind(rule)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| ProfileClaimCount { profile: row.get(0), count: row.get(1), submissions: row.get(2) })
            .collect())
    }

    /// For a partner's referrals first received in `[from, to)`: how many there are, and for each
    /// one whose Task has seen a specialist action, the microseconds from its receipt to the first
    /// such action. An action is an AuditEvent about the Task (`entity`) whose `subtype` is one of
    /// `actions` in `audit_system`, as the workflow operations write them; its time is when it was
    /// stored.
    pub async fn first_action_delays(
        &self,
        partner: &str,
        from: i64,
        to: i64,
        audit_system: &str,
        actions: &[&str],
    ) -> Result<(i64, Vec<i64>), StoreError> {
        let referrals: i64 =
            sqlx::query("SELECT COUNT(*) FROM referrals WHERE partner = $1 AND received >= $2 AND received < $3")
                .bind(partner)
                .bind(from)
                .bind(to)
                .fetch_one(&self.pool)
                .await?
                .get(0);
        if actions.is_empty() {
            return Ok((referrals, Vec::new()));
        }
        let codes: Vec<String> = (0..actions.len()).map(|i| format!("${}", i + 5)).collect();
        let sql = format!(
            "SELECT MIN(a.last_updated) - r.received FROM referrals r \
             JOIN idx_reference e ON e.resource_type = 'AuditEvent' AND e.param = 'entity' \
                 AND e.target_type = 'Task' AND e.target_id = r.task_id \
             JOIN idx_token t ON t.resource_type = 'AuditEvent' AND t.id = e.id AND t.param = 'subtype' \
                 AND t.system = $4 AND t.code IN ({}) \
             JOIN resources a ON a.resource_type = 'AuditEvent' AND a.id = e.id \
             WHERE r.partner = $1 AND r.received >= $2 AND r.received < $3 \
             GROUP BY r.identifier_system, r.identifier_value, r.received",
            codes.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(partner).bind(from).bind(to).bind(audit_system);
        for action in actions {
            query = query.bind(*action);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok((referrals, rows.iter().map(|row| row.get(0)).collect()))
    }
}
