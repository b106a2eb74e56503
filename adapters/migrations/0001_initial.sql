-- contactstream's state, first PostgreSQL version. Text keys compare byte-wise
-- (COLLATE "C") so that order and paging never depend on the server's locale.

-- read model: what the projector keeps (rebuilt by a replay) -------------------------
CREATE TABLE timeline (
  event_id TEXT COLLATE "C" PRIMARY KEY,
  customer_id TEXT COLLATE "C" NOT NULL,
  occurred_ms BIGINT NOT NULL,
  occurred_at TEXT NOT NULL,
  received_at BIGINT NOT NULL,
  type TEXT COLLATE "C" NOT NULL,
  channel TEXT COLLATE "C" NOT NULL,
  source TEXT NOT NULL,
  agent_id TEXT COLLATE "C", queue TEXT COLLATE "C", case_id TEXT COLLATE "C",
  payload JSONB NOT NULL,
  key_id TEXT COLLATE "C"
);
CREATE INDEX timeline_by_customer ON timeline (customer_id, occurred_ms DESC, event_id DESC);
CREATE INDEX timeline_by_type ON timeline (type, occurred_ms);
CREATE INDEX timeline_by_case ON timeline (case_id) WHERE case_id IS NOT NULL;

CREATE TABLE identifiers (
  kind TEXT COLLATE "C" NOT NULL, value TEXT COLLATE "C" NOT NULL,
  customer_id TEXT COLLATE "C" NOT NULL,
  strong BOOLEAN NOT NULL DEFAULT FALSE,
  display TEXT,
  PRIMARY KEY (kind, value)
);
CREATE INDEX identifiers_by_customer ON identifiers (customer_id);

CREATE TABLE customers (
  customer_id TEXT COLLATE "C" PRIMARY KEY, name TEXT, name_ms BIGINT,
  name_event TEXT COLLATE "C"
);

CREATE TABLE cases (
  case_id TEXT COLLATE "C" PRIMARY KEY, customer_id TEXT COLLATE "C" NOT NULL,
  status TEXT NOT NULL, priority TEXT NOT NULL, channel TEXT NOT NULL,
  queue TEXT COLLATE "C", agent_id TEXT COLLATE "C", policy TEXT,
  opened_at TEXT NOT NULL, opened_ms BIGINT NOT NULL,
  first_response_ms BIGINT, resolved_ms BIGINT,
  version BIGINT NOT NULL, updated_ms BIGINT NOT NULL
);
CREATE INDEX cases_by_customer ON cases (customer_id, status);
CREATE INDEX cases_by_status ON cases (status, updated_ms);

CREATE TABLE identity_edges (
  edge TEXT COLLATE "C" PRIMARY KEY, claim_ms BIGINT NOT NULL,
  claim_event TEXT COLLATE "C" NOT NULL);
CREATE TABLE identity_bases (
  base TEXT COLLATE "C" PRIMARY KEY, kind TEXT COLLATE "C" NOT NULL,
  value TEXT COLLATE "C" NOT NULL);
CREATE TABLE customer_links (
  base TEXT COLLATE "C" PRIMARY KEY, survivor TEXT COLLATE "C" NOT NULL);
CREATE INDEX customer_links_by_survivor ON customer_links (survivor);

-- where each consumer stands: written in the same transaction as what it projected
CREATE TABLE offsets (
  consumer TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
  next_offset BIGINT NOT NULL,
  PRIMARY KEY (consumer, topic, partition)
);

-- sources of truth: kept by a replay ----------------------------------------------------
-- the unmerges admins asked for: node pairs no event may join again
CREATE TABLE identity_separations (
  a_kind TEXT COLLATE "C" NOT NULL, a_value TEXT COLLATE "C" NOT NULL,
  b_kind TEXT COLLATE "C" NOT NULL, b_value TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (a_kind, a_value, b_kind, b_value));

-- the embedded broker's memory, kept here (adapters/journal.py restores it)
CREATE TABLE broker_archive (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" BIGINT NOT NULL,
  key BYTEA, value BYTEA, headers JSONB NOT NULL, timestamp_ms BIGINT NOT NULL,
  PRIMARY KEY (topic, partition, "offset"));

-- the ingest journal: every event accepted over HTTP; the duplicate index
CREATE TABLE ingest_journal (
  event_id TEXT COLLATE "C" PRIMARY KEY,
  topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" BIGINT NOT NULL,
  key BYTEA, value BYTEA NOT NULL, received_at BIGINT NOT NULL);
CREATE INDEX ingest_journal_by_position ON ingest_journal (topic, partition, "offset");

-- what supervisors configure
CREATE TABLE sla_policies (
  name TEXT COLLATE "C" PRIMARY KEY, position BIGINT NOT NULL, body JSONB NOT NULL);
CREATE TABLE calendars (name TEXT COLLATE "C" PRIMARY KEY, body JSONB NOT NULL);
CREATE TABLE webhooks (name TEXT COLLATE "C" PRIMARY KEY, body JSONB NOT NULL);
CREATE TABLE webhook_failures (
  webhook TEXT COLLATE "C" NOT NULL, alert_seq BIGINT NOT NULL, error TEXT NOT NULL,
  at TEXT NOT NULL, PRIMARY KEY (webhook, alert_seq));

-- the case stage's memory: a customer's open case per channel, complaint history
CREATE TABLE case_index (
  customer_id TEXT COLLATE "C" NOT NULL, channel TEXT COLLATE "C" NOT NULL,
  case_id TEXT COLLATE "C" NOT NULL, PRIMARY KEY (customer_id, channel));
CREATE TABLE complaints (
  event_id TEXT COLLATE "C" PRIMARY KEY, customer_id TEXT COLLATE "C" NOT NULL,
  occurred_ms BIGINT NOT NULL);
CREATE INDEX complaints_by_customer ON complaints (customer_id, occurred_ms);

-- the alert log: each alert once, by its id; seq is the order everyone reads it in
CREATE TABLE alerts (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT COLLATE "C" NOT NULL UNIQUE, kind TEXT COLLATE "C" NOT NULL,
  case_id TEXT COLLATE "C", customer_id TEXT COLLATE "C", metric TEXT, due_at TEXT,
  at TEXT NOT NULL, level TEXT NOT NULL, detail JSONB NOT NULL);
CREATE INDEX alerts_by_kind ON alerts (kind, seq);
CREATE INDEX alerts_by_case ON alerts (case_id) WHERE case_id IS NOT NULL;
CREATE INDEX alerts_by_customer ON alerts (customer_id) WHERE customer_id IS NOT NULL;

-- positions of the outbox relays and webhook deliveries
CREATE TABLE positions (name TEXT COLLATE "C" PRIMARY KEY, position BIGINT NOT NULL);

-- admins' requests the worker carries out between batches
CREATE TABLE unmerge_requests (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  survivor TEXT COLLATE "C" NOT NULL, member TEXT COLLATE "C" NOT NULL,
  requested_by TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,
  done_at TIMESTAMPTZ, error TEXT, result JSONB);
CREATE TABLE erasure_requests (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id TEXT COLLATE "C" NOT NULL, requested_by TEXT NOT NULL, at TEXT NOT NULL,
  payload JSONB NOT NULL, done_at TIMESTAMPTZ, error TEXT, result JSONB);
-- which base customers were erased when, and under which pseudonym
CREATE TABLE erasures (
  customer_id TEXT COLLATE "C" NOT NULL, at_ms BIGINT NOT NULL,
  pseudonym TEXT COLLATE "C" NOT NULL, PRIMARY KEY (customer_id, at_ms));

-- the access audit: who read whose personal data
CREATE TABLE access_log (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at TEXT NOT NULL, role TEXT, token_id TEXT, method TEXT NOT NULL, path TEXT NOT NULL,
  action TEXT NOT NULL, customer_id TEXT COLLATE "C", case_id TEXT COLLATE "C",
  status INTEGER NOT NULL);
CREATE INDEX access_by_customer ON access_log (customer_id, seq);
CREATE INDEX access_by_role ON access_log (role, seq);

-- every Avro schema the embedded registry registered, so old records stay readable
CREATE TABLE avro_schemas (id BIGINT PRIMARY KEY, schema JSONB NOT NULL);

-- data keys, for deployments that keep them in PostgreSQL (adapters/keystore.py says
-- what that leaves behind after an erasure; the embedded default uses a forgetting file)
CREATE TABLE key_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE key_customers (
  customer_hash TEXT COLLATE "C" PRIMARY KEY, generation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE data_keys (
  key_id TEXT COLLATE "C" PRIMARY KEY, customer_hash TEXT COLLATE "C" NOT NULL,
  generation INTEGER NOT NULL, wrapped BYTEA, created_at TEXT NOT NULL,
  destroyed_at TEXT, UNIQUE (customer_hash, generation));
INSERT INTO key_meta (name, value) VALUES ('destroy_seq', '0');
