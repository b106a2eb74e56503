-- Issue 12 (footprint): the records a request journals, compressed together, a block per
-- request and partition (adapters/journal.py), instead of each value uncompressed in its
-- row: ~250 bytes an event instead of ~480 with requests of 1,000. A journal row keeps the
-- event's id, place and time (the duplicate index, the archive's check by position); its
-- key and value are NULL when a block holds them. Rows from before keep theirs.
CREATE TABLE ingest_blocks (
  id BIGSERIAL PRIMARY KEY,
  topic TEXT NOT NULL, partition INTEGER NOT NULL,
  records BYTEA NOT NULL);
-- compressed already: out of line without PostgreSQL trying to compress it again
ALTER TABLE ingest_blocks ALTER COLUMN records SET STORAGE EXTERNAL;
ALTER TABLE ingest_journal ALTER COLUMN value DROP NOT NULL;
ALTER TABLE ingest_journal ADD COLUMN block BIGINT REFERENCES ingest_blocks (id),
  ADD CONSTRAINT ingest_journal_value_or_block CHECK ((block IS NULL) = (value IS NOT NULL));
