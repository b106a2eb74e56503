-- Issue 9 (many workers on one database): who holds what, and the identity graph's order.

-- the workers alive: each renews its row; a row past expires_at is a dead worker
CREATE TABLE workers (
  worker_id TEXT COLLATE "C" PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
  started_at TIMESTAMPTZ NOT NULL DEFAULT now(), expires_at TIMESTAMPTZ NOT NULL);

-- leases: 'partition:N' (partition N of the interactions AND the cases topic),
-- 'singletons' (SLA timers, outbox relays, webhooks, requests, figures, retention),
-- 'replay'. generation grows at each change of holder: the fencing token a holder's
-- transaction checks (FOR SHARE), so a worker that lost a lease never commits for it
CREATE TABLE leases (
  name TEXT COLLATE "C" PRIMARY KEY, holder TEXT COLLATE "C",
  generation BIGINT NOT NULL DEFAULT 0, expires_at TIMESTAMPTZ);

-- the identity graph's rows in commit order (written under one advisory lock, so seq
-- order is commit order): a worker folds those past the last it knows into its graph
-- before it writes. An unmerge or an erasure (which take rows away) moves the epoch
-- instead: every other worker then reloads the graph and redoes its batch
CREATE SEQUENCE identity_seq;
ALTER TABLE identity_edges ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE identity_bases ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX identity_edges_seq ON identity_edges (seq);
CREATE INDEX identity_bases_seq ON identity_bases (seq);
CREATE TABLE identity_epoch (
  id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id), epoch BIGINT NOT NULL DEFAULT 0);
INSERT INTO identity_epoch DEFAULT VALUES;
