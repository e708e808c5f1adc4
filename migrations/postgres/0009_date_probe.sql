-- A date criterion is checked per candidate resource: "has this resource a value of this parameter
-- in this range?". With only (resource_type, id) in the owner index, a planner without fresh
-- statistics answered that probe from idx_date_order (resource_type, param, low), reading every
-- value of the parameter in the range for each candidate: quadratic (Observation?date=sa2020 took
-- 74 s on 40,000 Observations). Leading with the resource and holding the parameter and the range,
-- this index answers the probe from the resource's own few rows, and every planner prefers it
-- for that with or without statistics. It also serves the earliest value of a resource (date sort)
-- and the deletion of a resource's rows, as the former index did.
DROP INDEX idx_date_owner;
CREATE INDEX idx_date_owner ON idx_date (resource_type, id, param, low, high);
