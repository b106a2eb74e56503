-- Issue 12 (footprint): customer_activity held a row per interaction (its base, time, event
-- id and kind), a copy of what the timeline holds (customer_id, occurred_ms, event_id,
-- type) with an index as large again: about 200 bytes an event. The scores and the churn
-- report read the timeline's rows other than case events instead (timeline_by_customer
-- serves a customer's rows).
DROP TABLE customer_activity;
