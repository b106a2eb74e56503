-- Issue 12 (footprint): a customer's timeline is read newest first, ties by event id. The
-- index held the event id too (~37 bytes of a ~70-byte entry, ~110 bytes an event with the
-- page's slack); without it, rows of one instant are put in order by an incremental sort
-- of those few rows. ~45 bytes an event instead of ~110.
DROP INDEX timeline_by_customer;
CREATE INDEX timeline_by_customer ON timeline (customer_id, occurred_ms DESC);
