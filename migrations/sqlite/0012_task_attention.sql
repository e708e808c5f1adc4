-- The worklist's "updated" marker: the partner's last change of a referral (an answer to a request
-- for information, an amendment, a new attachment) and who opened which referral Task when.
CREATE TABLE task_updates (
    task_id TEXT PRIMARY KEY,
    updated_at BIGINT NOT NULL,             -- microseconds since the epoch
    kind TEXT NOT NULL                      -- information-received, amended, attachment
);
CREATE TABLE task_openings (
    task_id TEXT NOT NULL,
    reader TEXT NOT NULL,                   -- the staff member's PractitionerRole reference
    opened_at BIGINT NOT NULL,              -- microseconds since the epoch, the last opening
    PRIMARY KEY (task_id, reader)
);
