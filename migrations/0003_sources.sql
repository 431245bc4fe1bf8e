-- File-backed sources, the skipped_missing item state, and what retention needs.

-- An item whose source file vanished before it ran is settled as `skipped_missing`.
-- Every existing row satisfied the old check, a subset of the new one, so the new check
-- is added NOT VALID: no full scan of `items` while the migration holds its lock.
ALTER TABLE items DROP CONSTRAINT items_state_check;
ALTER TABLE items ADD CONSTRAINT items_state_check
    CHECK (state IN ('pending', 'running', 'done', 'dead', 'skipped_missing')) NOT VALID;

-- Every file a drain's source has enqueued: what it looked like when it was last hashed,
-- so that a scan re-hashes only a file whose size or mtime changed. A row outlives its
-- item: a done item removed by retention is not enqueued again while its file is
-- unchanged.
CREATE TABLE source_files (
    drain         text NOT NULL,
    path          text NOT NULL,          -- relative to the source's dir; the item's key
    size          bigint NOT NULL,
    mtime         timestamptz NOT NULL,   -- to the microsecond
    sha256        text NOT NULL,          -- hex
    first_seen_at timestamptz NOT NULL,
    changed_at    timestamptz NOT NULL,   -- when the item was last (re-)enqueued
    missing_at    timestamptz,            -- when a scan found the file gone; null while present
    PRIMARY KEY (drain, path)
);

-- Where the last scan of a drain's source stopped when it reached max_files_per_scan;
-- the next scan goes on after it.
CREATE TABLE source_scans (
    drain        text PRIMARY KEY,
    resume_after text,
    scanned_at   timestamptz NOT NULL
);

-- Housekeeping done at most so often (supervise's daily prune): when it last ran.
CREATE TABLE maintenance (
    task        text PRIMARY KEY,
    last_run_at timestamptz NOT NULL
);

-- Retention: runs by age, the attempts that refer to a run, finished items by age.
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX attempts_run ON attempts (run_id);
CREATE INDEX items_finished ON items (finished_at) WHERE state IN ('done', 'skipped_missing');
