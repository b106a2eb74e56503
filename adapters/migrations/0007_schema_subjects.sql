-- Which schema each subject holds in which version, for the Confluent-compatible Schema
-- Registry API the embedded registry serves (adapters/http_registry.py): version 1, 2, ...
-- in the order a subject first met each schema id.
CREATE TABLE avro_subjects (
  subject TEXT COLLATE "C" NOT NULL,
  version INTEGER NOT NULL,
  schema_id BIGINT NOT NULL REFERENCES avro_schemas (id),
  PRIMARY KEY (subject, version),
  UNIQUE (subject, schema_id)
);
