//! The notification outbox: rows written in the transaction of the change they announce, then
//! leased, delivered and marked by a worker on any instance (see rex-server's `notifications`).

use sqlx::Row;

use crate::{Backend, Isolation, Store, StoreError, Tx};

/// A notification to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    /// `Subscription/<id>`.
    pub subscription: String,
    pub endpoint: String,
    /// JSON list of `Name: value` headers to send.
    pub headers: String,
    pub event_number: i64,
    /// The notification Bundle.
    pub payload: String,
    /// Deliveries tried, this one included.
    pub attempts: i64,
}

/// The delivery state of one Subscription's notifications, for `Subscription/{id}/$status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionDelivery {
    /// The last event number given out (`events-since-subscription-start`).
    pub last_event: i64,
    /// Notifications waiting for delivery (or for their retry).
    pub pending: i64,
    pub delivered: i64,
    /// Notifications given up on.
    pub dead: i64,
    /// The highest event number delivered.
    pub last_delivered_event: Option<i64>,
    /// When the first waiting notification is next tried (microseconds since the Unix epoch).
    pub next_attempt: Option<i64>,
    /// The error of the last failed attempt still unresolved: of the first waiting notification,
    /// else of the last dead letter.
    pub last_error: Option<String>,
}

/// How many notifications wait and how many gave up, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: i64,
    pub dead: i64,
}

impl Tx {
    /// The next event number of a Subscription (1, 2, 3...), counted in this transaction.
    pub async fn next_event_number(&mut self, subscription: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO subscription_events (subscription, last_event) VALUES ($1, 1) \
             ON CONFLICT (subscription) DO UPDATE SET last_event = subscription_events.last_event + 1 \
             RETURNING last_event",
        )
        .bind(subscription)
        .fetch_one(self.conn().await?)
        .await?;
        Ok(row.get(0))
    }

    /// Queues the handshake of a Subscription (event number 0), due at once, after any
    /// notification of it already queued; it replaces the handshake of an earlier activation.
    pub async fn enqueue_handshake(
        &mut self,
        subscription: &str,
        endpoint: &str,
        headers: &str,
        payload: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox WHERE subscription = $1 AND event_number = 0")
            .bind(subscription)
            .execute(self.conn().await?)
            .await?;
        self.enqueue_notification(subscription, endpoint, headers, 0, payload, now).await
    }

    /// Queues a notification, due at once.
    pub async fn enqueue_notification(
        &mut self,
        subscription: &str,
        endpoint: &str,
        headers: &str,
        event_number: i64,
        payload: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outbox (subscription, endpoint, headers, event_number, payload, status, attempts, \
             next_attempt, created) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
        )
        .bind(subscription)
        .bind(endpoint)
        .bind(headers)
        .bind(event_number)
        .bind(payload)
        .bind(now)
        .execute(self.conn().await?)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Leases up to `limit` notifications due at `now` for `lease` microseconds and counts the
    /// attempt. A notification waits while an earlier one of its subscription waits for a retry or
    /// is leased elsewhere, so each subscription's notifications go out in order. Notifications another instance holds are skipped (`SKIP LOCKED` on PostgreSQL,
    /// the single writer on SQLite); one whose lease ran out is due again.
    pub async fn lease_notifications(&self, now: i64, lease: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let mut tx = self.begin(Isolation::RowLocking).await?;
        let backend = tx.backend;
        let lock = match backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let ids: Vec<i64> = sqlx::query(&format!(
            "SELECT id FROM outbox o WHERE status = 'pending' AND next_attempt <= $1 \
             AND (leased_until IS NULL OR leased_until <= $1) \
             AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.subscription = o.subscription AND e.status = 'pending' \
                 AND e.id < o.id AND (e.next_attempt > $1 OR (e.leased_until IS NOT NULL AND e.leased_until > $1))) \
             ORDER BY id LIMIT {limit}{lock}"
        ))
        .bind(now)
        .fetch_all(tx.conn().await?)
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "UPDATE outbox SET leased_until = $1, attempts = attempts + 1 WHERE id = $2 \
                 RETURNING id, subscription, endpoint, headers, event_number, payload, attempts",
            )
            .bind(now + lease)
            .bind(id)
            .fetch_one(tx.conn().await?)
            .await?;
            items.push(OutboxItem {
                id: row.get(0),
                subscription: row.get(1),
                endpoint: row.get(2),
                headers: row.get(3),
                event_number: row.get(4),
                payload: row.get(5),
                attempts: row.get(6),
            });
        }
        tx.commit().await?;
        Ok(items)
    }

    /// Gives a leased notification back untried (its attempt is not counted): an earlier one of the
    /// same subscription failed, and notifications are delivered in order.
    pub async fn notification_untried(&self, id: i64) -> Result<(), StoreError> {
        let sql = "UPDATE outbox SET leased_until = NULL, attempts = attempts - 1 WHERE id = $1";
        self.write_one(sqlx::query(sql).bind(id)).await
    }

    /// Marks a leased notification delivered.
    pub async fn notification_delivered(&self, id: i64, now: i64) -> Result<(), StoreError> {
        let sql = "UPDATE outbox SET status = 'delivered', delivered = $1, leased_until = NULL WHERE id = $2";
        self.write_one(sqlx::query(sql).bind(now).bind(id)).await
    }

    /// Records a failed delivery: due again at `retry_at`, or a dead letter when `None`.
    pub async fn notification_failed(&self, id: i64, retry_at: Option<i64>, error: &str) -> Result<(), StoreError> {
        let query = match retry_at {
            Some(at) => {
                sqlx::query("UPDATE outbox SET next_attempt = $1, leased_until = NULL, last_error = $2 WHERE id = $3")
                    .bind(at)
            }
            None => {
                sqlx::query("UPDATE outbox SET status = 'dead', leased_until = NULL, last_error = $1 WHERE id = $2")
            }
        };
        self.write_one(query.bind(error.to_string()).bind(id)).await
    }

    /// Gives up on every waiting notification of a Subscription (its handshake failed).
    pub async fn dead_letter_pending(&self, subscription: &str, reason: &str) -> Result<(), StoreError> {
        let sql = "UPDATE outbox SET status = 'dead', leased_until = NULL, last_error = $1 \
                   WHERE subscription = $2 AND status = 'pending'";
        self.write_one(sqlx::query(sql).bind(reason.to_string()).bind(subscription.to_string())).await
    }

    /// The delivery state of a Subscription's notifications.
    pub async fn subscription_delivery(&self, subscription: &str) -> Result<SubscriptionDelivery, StoreError> {
        let counts = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0), \
             MAX(CASE WHEN status = 'delivered' THEN event_number END), \
             (SELECT MAX(last_event) FROM subscription_events WHERE subscription = $1) \
             FROM outbox WHERE subscription = $1",
        )
        .bind(subscription)
        .fetch_one(&self.pool)
        .await?;
        let waiting = sqlx::query(
            "SELECT next_attempt, last_error FROM outbox WHERE subscription = $1 AND status = 'pending' \
             ORDER BY id LIMIT 1",
        )
        .bind(subscription)
        .fetch_optional(&self.pool)
        .await?;
        let last_error = match &waiting {
            Some(row) => row.get(1),
            None => sqlx::query(
                "SELECT last_error FROM outbox WHERE subscription = $1 AND status = 'dead' ORDER BY id DESC LIMIT 1",
            )
            .bind(subscription)
            .fetch_optional(&self.pool)
            .await?
            .and_then(|row| row.get(0)),
        };
        Ok(SubscriptionDelivery {
            last_event: counts.get::<Option<i64>, _>(4).unwrap_or(0),
            pending: counts.get(0),
            delivered: counts.get(1),
            dead: counts.get(2),
            last_delivered_event: counts.get(3),
            next_attempt: waiting.as_ref().map(|row| row.get(0)),
            last_error,
        })
    }

    /// Runs one statement in a write transaction of its own (on SQLite, in turn with the others).
    async fn write_one<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Isolation::RowLocking).await?;
        query.execute(tx.conn().await?).await?;
        tx.commit().await
    }

    /// Notifications waiting for delivery and dead letters.
    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0) FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxCounts { pending: row.get(0), dead: row.get(1) })
    }
}
