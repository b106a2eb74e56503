-- Issue 12: migrations 15 and 16 kept event ids and identity edges once by exclusion
-- constraints on hash indexes (~120 bytes an event less than B-tree primary keys). Taken
-- back: the planner knows that a hash index's values are unique only from the table's
-- statistics, so until a table is analyzed (a new install's first minute, after an import
-- or a restore, which carry none) lookups by `= ANY(ids)` and joins on these columns scan
-- the whole table. Measured before any ANALYZE: the ingest's duplicate check of 1,000 ids
-- scanned 50,000 journal rows (3.3 ms, growing with the table); the identity edges'
-- update of 50 edges scanned 33,000 (5-9 ms in each batch's commit). A unique B-tree
-- tells the planner without statistics.
ALTER TABLE timeline DROP CONSTRAINT IF EXISTS timeline_event_once;
ALTER TABLE timeline ADD PRIMARY KEY (event_id);
ALTER TABLE ingest_journal DROP CONSTRAINT IF EXISTS ingest_journal_event_once;
ALTER TABLE ingest_journal ADD PRIMARY KEY (event_id);
ALTER TABLE case_routes DROP CONSTRAINT IF EXISTS case_routes_event_once;
ALTER TABLE case_routes ADD PRIMARY KEY (event_id);
ALTER TABLE identity_edges DROP CONSTRAINT IF EXISTS identity_edges_once;
ALTER TABLE identity_edges ADD PRIMARY KEY (edge);
