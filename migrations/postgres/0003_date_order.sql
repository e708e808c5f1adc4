-- Searches sorted by a date ascending (a work queue, "due first") and claim-next walk the date
-- index in value order, with the id breaking ties, and stop at the first page. The former value
-- index (resource_type, param, low, high) served no query that this one does not.
DROP INDEX idx_date_value;
CREATE INDEX idx_date_order ON idx_date (resource_type, param, low, id);
