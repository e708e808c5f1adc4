-- Notifications to partners, written in the transaction of the change they announce and
-- delivered by a worker (see crates/server/src/notifications.rs).
CREATE TABLE subscription_events (
    subscription TEXT PRIMARY KEY,          -- Subscription/<id>
    last_event INTEGER NOT NULL             -- the last event number given out
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    headers TEXT NOT NULL,                  -- JSON list of "Name: value" strings
    event_number INTEGER NOT NULL,
    payload TEXT NOT NULL,                  -- the notification Bundle
    status TEXT NOT NULL,                   -- pending, delivered, dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,          -- microseconds since the Unix epoch
    leased_until INTEGER,                   -- an instance is delivering it until then
    last_error TEXT,
    created INTEGER NOT NULL,
    delivered INTEGER,
    UNIQUE (subscription, event_number)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt);
