-- A hung or crashed run keeps its worker recorded until everything it left was seen
-- ended; every supervise pass looks for such runs (docs/operations.md, "Hung and crashed
-- runs"). They are nearly always none: a partial index keeps that look from reading the
-- whole history of runs.
CREATE INDEX runs_kill_unconfirmed ON runs (host, finished_at)
    WHERE worker_pid IS NOT NULL AND status IN ('hung', 'crashed');
