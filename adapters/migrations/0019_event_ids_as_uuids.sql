-- Issue 12 (footprint): an event id is any text of up to 200 characters, but nearly
-- always a UUID in its canonical text (36 lowercase characters: what publishers send,
-- and the ids the system makes). The three tables keyed by it (the timeline, the ingest
-- journal, the case routes) keep such an id in 16 bytes (uuid) and any other in text:
-- `eid` or `etext`, exactly one of them, each unique (the text's index holds only the
-- rows that have one). The row is ~21 bytes smaller, the unique index's entry ~28 bytes
-- instead of ~52 (~120 bytes an event for the timeline and the journal together). The
-- views under the tables' old names show `event_id` as before (`coalesce(eid::text,
-- etext)`: the same text, so the same order); writes and lookups by id go to the tables
-- (`event_uuid(id)` says which column an id is in).
CREATE FUNCTION event_uuid(id text) RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN id COLLATE "C" ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
              THEN id::uuid END;
CREATE FUNCTION event_etext(id text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN event_uuid(id) IS NULL THEN id END;
CREATE FUNCTION event_uuids(ids text[]) RETURNS uuid[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY(SELECT event_uuid(i) FROM unnest(ids) AS i);

CREATE TABLE timeline_rows (
  eid UUID UNIQUE,
  occurred_ms BIGINT NOT NULL, received_at BIGINT NOT NULL,
  customer_id TEXT COLLATE "C" NOT NULL, occurred_at TEXT NOT NULL,
  type TEXT COLLATE "C" NOT NULL, channel TEXT COLLATE "C" NOT NULL, source TEXT NOT NULL,
  agent_id TEXT COLLATE "C", queue TEXT COLLATE "C", case_id TEXT COLLATE "C",
  payload JSONB NOT NULL, key_id TEXT COLLATE "C",
  etext TEXT COLLATE "C",
  CONSTRAINT timeline_one_id CHECK ((eid IS NULL) <> (etext IS NULL)));
INSERT INTO timeline_rows
  SELECT event_uuid(event_id), occurred_ms, received_at, customer_id, occurred_at, type,
         channel, source, agent_id, queue, case_id, payload, key_id,
         event_etext(event_id)
  FROM timeline;
DROP TABLE timeline;
CREATE VIEW timeline AS
  SELECT coalesce(eid::text, etext) COLLATE "C" AS event_id, customer_id, occurred_ms,
         occurred_at, received_at, type, channel, source, agent_id, queue, case_id, payload,
         key_id
  FROM timeline_rows;
CREATE UNIQUE INDEX timeline_rows_etext_key ON timeline_rows (etext) WHERE etext IS NOT NULL;
CREATE INDEX timeline_by_customer ON timeline_rows (customer_id, occurred_ms DESC);
CREATE INDEX timeline_by_type ON timeline_rows (type, occurred_ms);
CREATE INDEX timeline_by_case ON timeline_rows (case_id) WHERE case_id IS NOT NULL;

CREATE TABLE ingest_journal_rows (
  eid UUID UNIQUE,
  partition INTEGER NOT NULL, "offset" BIGINT NOT NULL,
  block BIGINT REFERENCES ingest_blocks (id),
  etext TEXT COLLATE "C",
  topic TEXT, key BYTEA, value BYTEA, received_at BIGINT,
  CONSTRAINT ingest_journal_one_id CHECK ((eid IS NULL) <> (etext IS NULL)),
  CONSTRAINT ingest_journal_value_or_block CHECK ((block IS NULL) = (value IS NOT NULL)),
  CONSTRAINT ingest_journal_place
    CHECK (block IS NOT NULL OR (topic IS NOT NULL AND received_at IS NOT NULL)));
INSERT INTO ingest_journal_rows
  SELECT event_uuid(event_id), partition, "offset", block,
         event_etext(event_id),
         topic, key, value, received_at
  FROM ingest_journal;
DROP TABLE ingest_journal;
CREATE VIEW ingest_journal AS
  SELECT coalesce(eid::text, etext) COLLATE "C" AS event_id, topic, partition, "offset",
         key, value, received_at, block
  FROM ingest_journal_rows;
CREATE UNIQUE INDEX ingest_journal_rows_etext_key ON ingest_journal_rows (etext)
  WHERE etext IS NOT NULL;
CREATE INDEX ingest_journal_by_position ON ingest_journal_rows (partition, "offset");

CREATE TABLE case_route_rows (
  eid UUID UNIQUE,
  case_id TEXT COLLATE "C",
  etext TEXT COLLATE "C",
  CONSTRAINT case_routes_one_id CHECK ((eid IS NULL) <> (etext IS NULL)));
INSERT INTO case_route_rows
  SELECT event_uuid(event_id), case_id, event_etext(event_id)
  FROM case_routes;
DROP TABLE case_routes;
CREATE UNIQUE INDEX case_route_rows_etext_key ON case_route_rows (etext)
  WHERE etext IS NOT NULL;
CREATE VIEW case_routes AS
  SELECT coalesce(eid::text, etext) COLLATE "C" AS event_id, case_id FROM case_route_rows;
