-- Issue 12 (footprint): an identity edge was its identifiers as JSON text (~112 bytes),
-- also its primary key (the B-tree held the text again): ~420 bytes a row, 139 an event.
-- Now the identifiers in a compact form that gives them back exactly (adapters/edges.py:
-- a keyed hash's 64 hex digits as 32 bytes) and, as the key, the first 16 bytes of
-- SHA-256 of that form as a uuid. The rows stored before are converted here, by the same
-- function in SQL (identifiers sorted by kind then value in code point order, as Python
-- sorts them; tests/integration/test_identity_edges.py compares the two).
CREATE TABLE identity_edges_compact (
  claim_ms BIGINT NOT NULL, seq BIGINT NOT NULL DEFAULT 0, edge_id UUID PRIMARY KEY,
  claim_event TEXT COLLATE "C" NOT NULL, edge BYTEA NOT NULL);

INSERT INTO identity_edges_compact (claim_ms, seq, edge_id, claim_event, edge)
SELECT e.claim_ms, e.seq, encode(substr(sha256(c.edge), 1, 16), 'hex')::uuid,
       e.claim_event, c.edge
FROM identity_edges e, LATERAL (
  SELECT string_agg(
           CASE WHEN number IS NOT NULL AND left(value, length(kind) + 1) = kind || ':'
                     AND digits ~ '^[0123456789abcdef]{64}$'
                THEN set_byte('\x00'::bytea, 0, 128 + number - 1) || decode(digits, 'hex')
                ELSE set_byte('\x00'::bytea, 0, length(convert_to(kind, 'UTF8')))
                     || convert_to(kind, 'UTF8')
                     || int4send(length(convert_to(value, 'UTF8')))
                     || convert_to(value, 'UTF8') END,
           ''::bytea ORDER BY kind COLLATE "C", value COLLATE "C") AS edge
  FROM (SELECT p->>0 AS kind, p->>1 AS value, substr(p->>1, length(p->>0) + 2) AS digits,
               array_position(ARRAY['id', 'email', 'phone', 'visitor_id'], p->>0) AS number
        FROM jsonb_array_elements(e.edge::jsonb) p) i) c;

DROP TABLE identity_edges;
ALTER TABLE identity_edges_compact RENAME TO identity_edges;
ALTER INDEX identity_edges_compact_pkey RENAME TO identity_edges_pkey;
CREATE INDEX identity_edges_seq ON identity_edges (seq);
