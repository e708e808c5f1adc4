-- Current and historical versions of every resource, and the search index filled at write time.
CREATE TABLE resources (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,          -- microseconds since the Unix epoch, UTC
    deleted INTEGER NOT NULL DEFAULT 0,
    content TEXT,                           -- the resource JSON; NULL once deleted
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resources_last_updated ON resources (resource_type, last_updated);

CREATE TABLE resource_history (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    method TEXT NOT NULL,                   -- POST, PUT or DELETE
    content TEXT,
    PRIMARY KEY (resource_type, id, version_id)
);
CREATE INDEX resource_history_time ON resource_history (last_updated);
CREATE INDEX resource_history_type_time ON resource_history (resource_type, last_updated);

CREATE TABLE idx_string (resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, normalized TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX idx_string_value ON idx_string (resource_type, param, normalized);
CREATE INDEX idx_string_owner ON idx_string (resource_type, id);

CREATE TABLE idx_token (resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, system TEXT, code TEXT);
CREATE INDEX idx_token_value ON idx_token (resource_type, param, code, system);
CREATE INDEX idx_token_owner ON idx_token (resource_type, id);

CREATE TABLE idx_reference (resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, target_type TEXT, target_id TEXT, url TEXT NOT NULL);
CREATE INDEX idx_reference_target ON idx_reference (target_type, target_id, param);
CREATE INDEX idx_reference_url ON idx_reference (url);
CREATE INDEX idx_reference_owner ON idx_reference (resource_type, id);

CREATE TABLE idx_date (resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL);
CREATE INDEX idx_date_value ON idx_date (resource_type, param, low, high);
CREATE INDEX idx_date_owner ON idx_date (resource_type, id);

CREATE TABLE idx_number (resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX idx_number_value ON idx_number (resource_type, param, value);
CREATE INDEX idx_number_owner ON idx_number (resource_type, id);

CREATE TABLE idx_quantity (resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, value REAL NOT NULL, system TEXT, code TEXT, unit TEXT);
CREATE INDEX idx_quantity_value ON idx_quantity (resource_type, param, value);
CREATE INDEX idx_quantity_owner ON idx_quantity (resource_type, id);

CREATE TABLE idx_uri (resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX idx_uri_value ON idx_uri (resource_type, param, value);
CREATE INDEX idx_uri_owner ON idx_uri (resource_type, id);
