-- Every Bundle a partner submitted (to the base or $process-message), accepted or refused, and the
-- issues rex answered it with: the partner conformance scorecard ($partner-scorecard). No content
-- of the Bundle is kept: an issue is its severity, code, location, a normalised rule key and the
-- profile when known, never the issue text (which can quote values).
CREATE TABLE submissions (
    id BIGSERIAL PRIMARY KEY,
    partner TEXT NOT NULL,
    received BIGINT NOT NULL,               -- microseconds since the Unix epoch, UTC
    kind TEXT NOT NULL,                     -- transaction, batch, message or other
    accepted BIGINT NOT NULL,               -- 1 answered 2xx, 0 refused
    status BIGINT NOT NULL,                 -- the HTTP status of the answer
    issue_count BIGINT NOT NULL             -- issues in the answer (rows below keep the first 100)
);
CREATE INDEX submissions_partner_time ON submissions (partner, received);
CREATE TABLE submission_issues (
    submission_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,                    -- order in the answer
    severity TEXT NOT NULL,
    code TEXT NOT NULL,                     -- OperationOutcome issue type
    rule TEXT NOT NULL,                     -- invariant key, or code@Type.element without indexes
    location TEXT,                          -- the FHIRPath location as answered
    profile TEXT,                           -- canonical URL of the profile, when the issue names one
    PRIMARY KEY (submission_id, seq)
);
