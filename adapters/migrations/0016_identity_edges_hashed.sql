-- Issue 12 (footprint): an identity edge (its JSON text, ~110 bytes) is kept once by an
-- exclusion constraint on a hash index instead of a primary key's B-tree that held the
-- text whole (~200 bytes an edge, ~64 an event). The one writer of the edges (the identity
-- stage, under the identity lock) upserts as an update then an insert of the new ones.
ALTER TABLE identity_edges DROP CONSTRAINT identity_edges_pkey,
  ADD CONSTRAINT identity_edges_once EXCLUDE USING hash (edge WITH =),
  ALTER COLUMN edge SET NOT NULL;
