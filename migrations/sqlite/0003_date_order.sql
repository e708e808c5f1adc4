-- Searches sorted by a date ascending (a work queue, "due first") and claim-next walk the date
-- index in value order, with the id breaking ties, and stop at the first page. The former value
-- index (resource_type, param, low, high) served no query that this one does not.
DROP INDEX idx_date_value;
CREATE INDEX idx_date_order ON idx_date (resource_type, param, low, id);

-- Search criteria are correlated EXISTS probes by (resource_type, id), which SQLite answers with
-- the *_owner indexes; its planner never used these value indexes (EXPLAIN QUERY PLAN), yet every
-- index row written paid for one more B-tree page, at a random place, in each commit: about half
-- of the pages an intake Bundle wrote. PostgreSQL, which turns EXISTS into semi-joins that can
-- start from a value, keeps them. A search that drives from values must bring its index back.
DROP INDEX idx_string_value;
DROP INDEX idx_token_value;
DROP INDEX idx_number_value;
DROP INDEX idx_quantity_value;
DROP INDEX idx_uri_value;
DROP INDEX idx_reference_url;
