-- One row per referral identity (partner, ServiceRequest business identifier): what makes
-- re-sends idempotent. The primary key is what stops two concurrent first sends both creating.
CREATE TABLE referrals (
    partner TEXT NOT NULL,
    identifier_system TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    service_request_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    entries TEXT NOT NULL,                  -- JSON [{"fullUrl", "type", "id"}] of the Bundle's resources, to match a re-send
    received BIGINT NOT NULL,              -- microseconds since the Unix epoch
    amended BIGINT,
    PRIMARY KEY (partner, identifier_system, identifier_value)
);
CREATE INDEX referrals_service_request ON referrals (service_request_id);
