//! The referral identity table: which ServiceRequest and Task a partner's business identifier
//! already has, so re-sends never create a second referral.

use sqlx::{AnyConnection, Row};

use crate::rows::{AnyQuery, placeholders};
use crate::{Backend, StoreError, Tx, now_micros};

/// A referral rex has taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralRecord {
    pub partner: String,
    pub identifier_system: String,
    pub identifier_value: String,
    pub service_request_id: String,
    pub task_id: String,
    /// JSON list of `{"fullUrl", "type", "id"}` for the resources of the Bundle last received.
    pub entries: String,
}

impl Tx {
    /// The referral with this identity, if rex has it.
    ///
    /// Most Bundles are first sends. So on SQLite, while the transaction has not yet run a
    /// statement, it first looks at what is committed, on a reader connection: when the identity
    /// is not there the transaction does not take the writer yet. A referral that lands after
    /// this look makes the transaction fail as retryable when the row [`Tx::insert_referral`]
    /// queued is sent, and the retry finds it.
    pub async fn find_referral(
        &mut self,
        partner: &str,
        system: &str,
        value: &str,
    ) -> Result<Option<ReferralRecord>, StoreError> {
        if let Some(readers) = self.readers_before_first_statement() {
            let mut conn = readers.acquire().await?;
            if find_referral(&mut conn, partner, system, value).await?.is_none() {
                return Ok(None);
            }
        }
        self.flush().await?;
        find_referral(self.conn().await?, partner, system, value).await
    }

    /// Records a new referral. The row is queued and sent with the transaction's other rows. When
    /// the identity is taken (a concurrent first send of the same referral) the transaction fails
    /// as retryable; the retry then finds the referral and treats the Bundle as a re-send.
    pub fn insert_referral(&mut self, record: ReferralRecord) {
        self.pending.referrals.push((record, now_micros()));
    }

    /// Records an amendment: the entries of the amended Bundle and when it came.
    pub async fn record_amendment(&mut self, record: &ReferralRecord) -> Result<(), StoreError> {
        self.flush().await?;
        sqlx::query(
            "UPDATE referrals SET entries = $1, amended = $2 \
             WHERE partner = $3 AND identifier_system = $4 AND identifier_value = $5",
        )
        .bind(&record.entries)
        .bind(now_micros())
        .bind(&record.partner)
        .bind(&record.identifier_system)
        .bind(&record.identifier_value)
        .execute(self.conn().await?)
        .await?;
        Ok(())
    }

    /// Forgets every referral identity of `partner`, so the same referrals can be sent again as
    /// new ones (a sandbox reset). Returns how many were forgotten.
    pub async fn forget_referrals(&mut self, partner: &str) -> Result<u64, StoreError> {
        self.flush().await?;
        let result =
            sqlx::query("DELETE FROM referrals WHERE partner = $1").bind(partner).execute(self.conn().await?).await?;
        Ok(result.rows_affected())
    }

    /// The current (not deleted) resources of any type whose `meta.tag` has `system|code`.
    pub async fn tagged_resources(&mut self, system: &str, code: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.flush().await?;
        let rows = sqlx::query(
            "SELECT t.resource_type, t.id FROM idx_token t \
             JOIN resources r ON r.resource_type = t.resource_type AND r.id = t.id AND r.deleted = 0 \
             WHERE t.param = '_tag' AND t.system = $1 AND t.code = $2 ORDER BY t.resource_type, t.id",
        )
        .bind(system)
        .bind(code)
        .fetch_all(self.conn().await?)
        .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }
}

async fn find_referral(
    conn: &mut AnyConnection,
    partner: &str,
    system: &str,
    value: &str,
) -> Result<Option<ReferralRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT service_request_id, task_id, entries FROM referrals \
         WHERE partner = $1 AND identifier_system = $2 AND identifier_value = $3",
    )
    .bind(partner)
    .bind(system)
    .bind(value)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| ReferralRecord {
        partner: partner.to_string(),
        identifier_system: system.to_string(),
        identifier_value: value.to_string(),
        service_request_id: row.get(0),
        task_id: row.get(1),
        entries: row.get(2),
    }))
}

/// Values of one `referrals` row.
pub(crate) const COLUMNS: usize = 7;

/// The INSERT of `rows` referral rows (a record and when it was received); [`bind_rows`] binds
/// their values.
pub(crate) fn insert_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO referrals (partner, identifier_system, identifier_value, service_request_id, task_id, entries, received) VALUES {}",
        placeholders(backend, rows, COLUMNS)
    )
}

pub(crate) fn bind_rows<'q>(mut query: AnyQuery<'q>, rows: &'q [(ReferralRecord, i64)]) -> AnyQuery<'q> {
    for (record, received) in rows {
        query = query
            .bind(record.partner.as_str())
            .bind(record.identifier_system.as_str())
            .bind(record.identifier_value.as_str())
            .bind(record.service_request_id.as_str())
            .bind(record.task_id.as_str())
            .bind(record.entries.as_str())
            .bind(*received);
    }
    query
}
