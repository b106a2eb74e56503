-- Issue 12 (the pipeline's cost): the scores are taken off the batch path. A batch only
-- queues the customers (base ids) whose figures it moved, in its own transaction; the
-- scorer (adapters/figurestore.py, FigureWriter.score_queued) rescores them in rounds
-- of its own, so a customer touched by many batches under load is scored once a round.
-- A round claims ids (claim, claimed_at) in a short transaction, scores them, and takes
-- off the queue those no batch queued again meanwhile (a batch clears the claim): nothing
-- queued is lost to a crash (a claim expires), any worker may claim any row (FOR UPDATE
-- SKIP LOCKED), and a batch never waits for a round's scoring.
CREATE TABLE score_queue (
  customer_id TEXT COLLATE "C" PRIMARY KEY, claim TEXT, claimed_at TIMESTAMPTZ);
