-- Issue 12 (footprint): an event's id is kept once per table (the timeline, the ingest
-- journal, the case routes) by an exclusion constraint on a hash index instead of a
-- primary key's B-tree. The B-tree held each id whole (~37 bytes an entry, ~80 bytes an
-- event in the timeline and the journal); the hash index holds a 4-byte hash and the
-- row's place (~37 bytes an event), and answers the same questions: a second row with
-- the id is refused, INSERT … ON CONFLICT DO NOTHING skips it (also two at once: the
-- second waits for the first, as with a unique index), `event_id = x` and `= ANY(…)`
-- find rows by it.
-- (ON CONFLICT DO UPDATE needs a unique index: none of these tables' inserts uses it.)
ALTER TABLE timeline DROP CONSTRAINT timeline_pkey,
  ADD CONSTRAINT timeline_event_once EXCLUDE USING hash (event_id WITH =),
  ALTER COLUMN event_id SET NOT NULL;
ALTER TABLE ingest_journal DROP CONSTRAINT ingest_journal_pkey,
  ADD CONSTRAINT ingest_journal_event_once EXCLUDE USING hash (event_id WITH =),
  ALTER COLUMN event_id SET NOT NULL;
ALTER TABLE case_routes DROP CONSTRAINT case_routes_pkey,
  ADD CONSTRAINT case_routes_event_once EXCLUDE USING hash (event_id WITH =),
  ALTER COLUMN event_id SET NOT NULL;
