-- Issue 14 (CRM reports, audiences, retention). Sources of truth, kept by a replay.

-- an erasure moves a customer's rows to one pseudonym per data key; the reports count
-- those pseudonyms as the one customer they were (grp: the erasure's first pseudonym)
CREATE TABLE erased_groups (
  pseudonym TEXT COLLATE "C" PRIMARY KEY, grp TEXT COLLATE "C" NOT NULL);
