-- Issue 14 (CRM reports, audiences, retention). Sources of truth, kept by a replay.

-- an erasure moves a customer's rows to one pseudonym per data key; the reports count
-- those pseudonyms as the one customer they were (grp: the erasure's first pseudonym)
CREATE TABLE erased_groups (
  pseudonym TEXT COLLATE "C" PRIMARY KEY, grp TEXT COLLATE "C" NOT NULL);

-- the access audit: how many customers an export gave out (audiences; NULL elsewhere)
ALTER TABLE access_log ADD COLUMN items INTEGER;

-- data that expires: the one retention policy (inactive_days NULL: off) and its runs
CREATE TABLE retention_policy (
  id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
  inactive_days INTEGER, set_at TEXT NOT NULL, set_by TEXT,
  last_run_ms BIGINT, last_erased INTEGER NOT NULL DEFAULT 0,
  erased_total BIGINT NOT NULL DEFAULT 0);
