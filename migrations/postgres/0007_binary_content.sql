-- Content of Binary resources uploaded raw (POST /fhir/Binary with the content's own type): kept
-- out of the resource JSON, in chunks, so it is never held whole in memory on the way in or out.
CREATE TABLE binary_content (
    binary_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (binary_id, seq)
);
