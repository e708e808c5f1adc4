-- Notifications to partners, written in the transaction of the change they announce and
-- delivered by a worker (see crates/server/src/notifications.rs).
CREATE TABLE subscription_events (
    subscription TEXT PRIMARY KEY,          -- Subscription/<id>
    last_event BIGINT NOT NULL             -- the last event number given out
);
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    subscription TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    headers TEXT NOT NULL,                  -- JSON list of "Name: value" strings
    event_number BIGINT NOT NULL,
    payload TEXT NOT NULL,                  -- the notification Bundle
    status TEXT NOT NULL,                   -- pending, delivered, dead
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,          -- microseconds since the Unix epoch
    leased_until BIGINT,                   -- an instance is delivering it until then
    last_error TEXT,
    created BIGINT NOT NULL,
    delivered BIGINT,
    UNIQUE (subscription, event_number)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt);
