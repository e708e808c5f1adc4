-- SMART client assertions already exchanged for a token (their jti), until they expire, shared by
-- every rex instance so an assertion cannot be replayed against another instance.
CREATE TABLE used_assertions (
    assertion_key TEXT PRIMARY KEY,         -- partner id and jti
    expires_at BIGINT NOT NULL              -- Unix seconds
);
CREATE INDEX used_assertions_expiry ON used_assertions (expires_at);
