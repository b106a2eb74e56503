-- The customer's figures as projections the worker keeps in the batch's transaction
-- (adapters/readstore.py, projections/figures.py and scores.py), so that the customer view
-- and the reports read a few rows instead of folding the timeline. Per base customer
-- (the owner of its Kafka partition); a merged customer combines its members' rows.
-- All of them are rebuilt by a replay.

-- interactions (timeline rows but case.*) per channel, and the latest of them
CREATE TABLE customer_channels (
  base TEXT COLLATE "C" NOT NULL, channel TEXT COLLATE "C" NOT NULL,
  interactions BIGINT NOT NULL,
  last_ms BIGINT NOT NULL, last_event TEXT COLLATE "C" NOT NULL, last_at TEXT NOT NULL,
  PRIMARY KEY (base, channel));

-- one row per interaction, not per day: churn's signals and the satisfaction windows are
-- defined to the millisecond, which day counts cannot place on the days windows start on.
-- kind: c contact, x complaint (also a contact), p purchase
CREATE TABLE customer_activity (
  base TEXT COLLATE "C" NOT NULL, occurred_ms BIGINT NOT NULL,
  event_id TEXT COLLATE "C" NOT NULL, kind "char" NOT NULL,
  PRIMARY KEY (base, occurred_ms, event_id));

-- every survey answer, with the agent and queue it is reported under (its own, else its
-- case's latest: eff_*), which a later row of the case can change
CREATE TABLE customer_surveys (
  base TEXT COLLATE "C" NOT NULL, event_id TEXT COLLATE "C" NOT NULL,
  occurred_ms BIGINT NOT NULL, kind TEXT COLLATE "C" NOT NULL, score INTEGER NOT NULL,
  channel TEXT COLLATE "C" NOT NULL, agent_id TEXT COLLATE "C", queue TEXT COLLATE "C",
  case_id TEXT COLLATE "C", eff_agent TEXT COLLATE "C", eff_queue TEXT COLLATE "C",
  PRIMARY KEY (base, event_id));
CREATE INDEX customer_surveys_by_time ON customer_surveys (occurred_ms);
CREATE INDEX customer_surveys_by_case ON customer_surveys (case_id)
  WHERE case_id IS NOT NULL AND (agent_id IS NULL OR queue IS NULL);

-- all-time satisfaction: good = CSAT 4-5 / NPS 9-10, bad = NPS 0-6, total = sum of scores
CREATE TABLE customer_satisfaction (
  base TEXT COLLATE "C" NOT NULL, kind TEXT COLLATE "C" NOT NULL,
  responses BIGINT NOT NULL, good BIGINT NOT NULL, bad BIGINT NOT NULL, total BIGINT NOT NULL,
  PRIMARY KEY (base, kind));

CREATE TABLE customer_revenue (
  base TEXT COLLATE "C" NOT NULL, currency TEXT COLLATE "C" NOT NULL,
  amount NUMERIC NOT NULL, purchases BIGINT NOT NULL, last_ms BIGINT NOT NULL,
  PRIMARY KEY (base, currency));

-- the latest consent answer per channel and purpose, by (occurred_ms, event_id)
CREATE TABLE customer_consent (
  base TEXT COLLATE "C" NOT NULL, channel TEXT COLLATE "C" NOT NULL,
  purpose TEXT COLLATE "C" NOT NULL, granted BOOLEAN NOT NULL, occurred_ms BIGINT NOT NULL,
  event_id TEXT COLLATE "C" NOT NULL, occurred_at TEXT NOT NULL, source TEXT NOT NULL,
  PRIMARY KEY (base, channel, purpose));

-- the latest non-empty agent and queue on a case's rows other than surveys
CREATE TABLE case_owners (
  case_id TEXT COLLATE "C" PRIMARY KEY,
  agent_id TEXT COLLATE "C", agent_ms BIGINT, agent_event TEXT COLLATE "C",
  queue TEXT COLLATE "C", queue_ms BIGINT, queue_event TEXT COLLATE "C");

-- the satisfaction report's buckets: answers per dimension (agent, channel, queue), UTC day
-- of occurred_ms, group ('' for none) and kind
CREATE TABLE survey_days (
  dim TEXT COLLATE "C" NOT NULL, day INTEGER NOT NULL, grp TEXT COLLATE "C" NOT NULL,
  kind TEXT COLLATE "C" NOT NULL,
  responses BIGINT NOT NULL, good BIGINT NOT NULL, bad BIGINT NOT NULL, total BIGINT NOT NULL,
  PRIMARY KEY (dim, day, grp, kind));

-- per customer (survivor of merges): what moves with the clock, computed for as_of (ms) and
-- good until valid_until (NULL: the clock alone never changes it); RFM as of rfm_as_of
CREATE TABLE customer_scores (
  customer_id TEXT COLLATE "C" PRIMARY KEY,
  as_of BIGINT NOT NULL, valid_until BIGINT,
  windows JSONB NOT NULL,
  churn_score DOUBLE PRECISION NOT NULL, churn_factors JSONB NOT NULL,
  revenue NUMERIC NOT NULL, purchases BIGINT NOT NULL, last_purchase_ms BIGINT,
  rfm_as_of BIGINT NOT NULL, segment TEXT COLLATE "C" NOT NULL,
  recency_days INTEGER, r SMALLINT, f SMALLINT, m SMALLINT);
CREATE INDEX customer_scores_by_risk ON customer_scores (churn_score DESC, customer_id);
CREATE INDEX customer_scores_by_segment
  ON customer_scores (segment, churn_score DESC, customer_id) INCLUDE (revenue);
CREATE INDEX customer_scores_by_revenue ON customer_scores (revenue DESC, customer_id);
CREATE INDEX customer_scores_due ON customer_scores (valid_until) WHERE valid_until IS NOT NULL;
-- rewritten by every batch for the customers it touches: vacuumed often, so that reports
-- and lists stay index-only scans
ALTER TABLE customer_scores SET (autovacuum_vacuum_scale_factor = 0.02,
                                 autovacuum_vacuum_insert_scale_factor = 0.02);

-- figures across the whole base, with the instant they were computed for: 'rfm' (quintile
-- bounds), 'alerts' (how far the refresh has read SLA breaches); 'rebuild' asks the worker
-- to build every table above from the timeline (this migration, or an imported timeline)
CREATE TABLE base_figures (
  name TEXT COLLATE "C" PRIMARY KEY, as_of BIGINT NOT NULL, body JSONB NOT NULL);
INSERT INTO base_figures VALUES ('rebuild', 0, '{"why": "migration 4"}');
