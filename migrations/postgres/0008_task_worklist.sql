-- One row per live Task: its status, owner ("HealthcareService/cardiology") and earliest due time,
-- written in the Task's own write transaction. A queue page ("owner, status, due first"), its
-- total and claim-next read the Tasks in the asked statuses from here, in due order, instead of
-- walking the due index of every Task and probing owner and status per row: that walk read every
-- claimed or completed Task due before the queue's first open one, so pages slowed with history.
CREATE TABLE task_worklist (
    id TEXT NOT NULL PRIMARY KEY,
    status TEXT NOT NULL,
    owner TEXT,
    due BIGINT  -- microseconds since the Unix epoch; NULL when the Task has none
);
CREATE INDEX task_worklist_order ON task_worklist (status, owner, due, id);

-- Tasks written before this version, from their search index rows (the rule the code applies).
INSERT INTO task_worklist (id, status, owner, due)
SELECT id, status, owner, due FROM (
    SELECT r.id,
        (SELECT MIN(t.code) FROM idx_token t
         WHERE t.resource_type = 'Task' AND t.id = r.id AND t.param = 'status') AS status,
        (SELECT MIN(o.target_type || '/' || o.target_id) FROM idx_reference o
         WHERE o.resource_type = 'Task' AND o.id = r.id AND o.param = 'owner') AS owner,
        (SELECT MIN(d.low) FROM idx_date d
         WHERE d.resource_type = 'Task' AND d.id = r.id AND d.param = 'due') AS due
    FROM resources r
    WHERE r.resource_type = 'Task' AND r.deleted = 0
) tasks
WHERE status IS NOT NULL;
