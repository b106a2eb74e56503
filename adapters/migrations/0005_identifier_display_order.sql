-- What the customer view shows for an identifier (an encrypted token, or the form as
-- published) is the earliest event's form, by (occurred_ms, event_id), so a replay in
-- another arrival order stores the same one. Rows written before this step keep their
-- display (its order unknown: NULL) until a replay rebuilds them.
ALTER TABLE identifiers ADD COLUMN display_ms BIGINT, ADD COLUMN display_event TEXT COLLATE "C";
