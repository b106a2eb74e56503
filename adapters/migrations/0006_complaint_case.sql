-- The case a complaint's envelope named (NULL: none), kept with the complaint: a complaint
-- that arrives late can make a later one the third of its 30 days, and that later one's
-- escalation names the later complaint's case, which only its own record still knows.
ALTER TABLE complaints ADD COLUMN case_id TEXT COLLATE "C";
-- complaints recorded before: the case their envelope named, as the timeline kept it
UPDATE complaints c SET case_id = t.case_id FROM timeline t
 WHERE t.event_id = c.event_id AND t.case_id IS NOT NULL;
