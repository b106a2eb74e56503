-- Issue 12 (footprint): the archive's check "is this consumed record in the ingest
-- journal" looks the journal up by the record's event id (the unique index it has anyway)
-- and compares the position, so the index by position goes (~32 bytes an event).
DROP INDEX ingest_journal_by_position;
