-- The case an interaction went to, by its event id (NULL: none). Which case an
-- interaction reaches depends on state that moves on with the log (the case index,
-- which cases are open), so a second look at the same event — a redelivery, a partition
-- read again, a replay — must find the first decision instead of deciding again.
CREATE TABLE case_routes (
  event_id TEXT COLLATE "C" PRIMARY KEY,
  case_id TEXT COLLATE "C"
);
