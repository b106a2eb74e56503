-- Issue 12 (the pipeline's cost): the scores are taken off the batch path. A batch only
-- queues the customers (base ids) whose figures it moved, in its own transaction; the
-- scorer (adapters/figurestore.py, FigureWriter.score_queued) rescores them in rounds
-- of its own, so a customer touched by many batches under load is scored once a round.
-- A row stays until a scorer's transaction rescored it and committed: nothing queued
-- is lost to a crash, and any worker may take any row (FOR UPDATE SKIP LOCKED).
CREATE TABLE score_queue (customer_id TEXT COLLATE "C" PRIMARY KEY);
