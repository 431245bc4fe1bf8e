-- A hung or crashed run is looked at again by each supervise pass until everything it
-- left was seen ended (docs/operations.md, "Hung and crashed runs"): its drain process
-- too, also when it had no worker recorded — a drain frozen between two workers, whose
-- pass that judged it hung died before stopping it, kept its concurrency slot for good.
-- So the mark is a column of its own, set when the run is ended so, cleared when
-- nothing of it is left; the partial index follows it. A constant default: no rewrite.
ALTER TABLE runs ADD COLUMN kill_unconfirmed boolean NOT NULL DEFAULT false;
UPDATE runs SET kill_unconfirmed = true WHERE worker_pid IS NOT NULL AND status IN ('hung', 'crashed');
DROP INDEX runs_kill_unconfirmed;
CREATE INDEX runs_kill_unconfirmed ON runs (host, finished_at) WHERE kill_unconfirmed;
