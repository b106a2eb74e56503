-- Issue 12 (footprint): an event's published occurred_at (~26 bytes a timeline row) is
-- nearly always what its instant and its offset render to; the row then keeps the
-- offset's minutes (occurred_tz, 2 bytes; 9999 for a text ending in Z) and leaves the text
-- NULL, the view renders it (event_time, the twin of adapters/database.render_time: seconds,
-- milliseconds when not 0, the offset). Any other text is kept as it is, as are the rows
-- stored before. The same for the latest interaction of a customer's channel.
CREATE FUNCTION event_time(ms bigint, tz smallint) RETURNS text LANGUAGE sql STABLE
  PARALLEL SAFE
  RETURN to_char(to_timestamp(ms / 1000 + CASE WHEN tz = 9999 THEN 0 ELSE tz * 60 END)
                   AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || CASE WHEN ms % 1000 = 0 THEN '' ELSE '.' || lpad((ms % 1000)::text, 3, '0') END
    || CASE WHEN tz = 9999 THEN 'Z'
            ELSE CASE WHEN tz < 0 THEN '-' ELSE '+' END || lpad((abs(tz) / 60)::text, 2, '0')
                 || ':' || lpad((abs(tz) % 60)::text, 2, '0') END;

ALTER TABLE timeline_rows ADD COLUMN occurred_tz SMALLINT,
  ALTER COLUMN occurred_at DROP NOT NULL,
  ADD CONSTRAINT timeline_occurred_at CHECK ((occurred_at IS NULL) <> (occurred_tz IS NULL));
ALTER TABLE customer_channels ADD COLUMN last_tz SMALLINT,
  ALTER COLUMN last_at DROP NOT NULL,
  ADD CONSTRAINT customer_channels_last_at CHECK ((last_at IS NULL) <> (last_tz IS NULL));
CREATE OR REPLACE VIEW timeline AS
  SELECT coalesce(eid::text, etext) COLLATE "C" AS event_id, customer_id, occurred_ms,
         coalesce(occurred_at, event_time(occurred_ms, occurred_tz)) AS occurred_at,
         received_at, type, channel, source, agent_id, queue, case_id, payload, key_id
  FROM timeline_rows;
