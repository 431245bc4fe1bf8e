-- The drain's hot path writes each count once per statement (docs/benchmarks.md, "The
-- counts in the statement that changed them"). Before, every finished item ran two row
-- triggers and two upserts into one `counters` row per drain (contended by concurrent
-- passes of the drain); now the finished items and the worker starts are counted by the
-- statement-level triggers, into the slot rows of `item_counts` (0009) that the statement
-- writes anyway.
--
-- items_finished_total and worker_starts_total are from now on the sum of the `counters`
-- rows that 0007's triggers kept until this migration and of these columns, which only
-- grow: deleting items (prune) and TRUNCATE lower the state counts, never these.
-- No writer may change items or attempts between the old triggers and the new ones (and
-- the tables are locked in the order their writers lock them: items, then item_counts).
LOCK TABLE items, attempts IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE item_counts
    ADD COLUMN finished_done            bigint NOT NULL DEFAULT 0,
    ADD COLUMN finished_dead            bigint NOT NULL DEFAULT 0,
    ADD COLUMN finished_skipped_missing bigint NOT NULL DEFAULT 0,
    ADD COLUMN worker_starts            bigint NOT NULL DEFAULT 0;

DROP TRIGGER items_finished_counter ON items;
DROP FUNCTION counters_item_finished();
DROP TRIGGER attempts_started_counter ON attempts;
DROP FUNCTION counters_worker_started();

-- An update moves an item between states: +1 for its new state, -1 for its old one, and
-- an item that entered done, dead or skipped_missing counts as finished (an update that
-- keeps the state, or an insert, finishes nothing). Old and new rows are paired by id, so
-- rows that changed neither state nor drain (a resume token, a payload) write nothing.
CREATE OR REPLACE FUNCTION item_counts_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH moved AS (
        SELECT n.drain AS new_drain, n.state AS new_state, o.drain AS old_drain, o.state AS old_state
          FROM new_items n JOIN old_items o ON o.id = n.id
         WHERE n.state IS DISTINCT FROM o.state OR n.drain IS DISTINCT FROM o.drain)
    INSERT INTO item_counts AS c (drain, slot, pending, running, done, dead, skipped_missing,
                                  finished_done, finished_dead, finished_skipped_missing)
    SELECT drain, (pg_backend_pid() % 16)::smallint,
           coalesce(sum(n) FILTER (WHERE state = 'pending'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'running'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'done'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'dead'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'skipped_missing'), 0),
           count(*) FILTER (WHERE entered AND state = 'done'),
           count(*) FILTER (WHERE entered AND state = 'dead'),
           count(*) FILTER (WHERE entered AND state = 'skipped_missing')
      FROM (SELECT new_drain, new_state, 1::bigint, new_state IS DISTINCT FROM old_state FROM moved
            UNION ALL
            SELECT old_drain, old_state, -1::bigint, false FROM moved) AS moves (drain, state, n, entered)
     GROUP BY drain
     ORDER BY drain
    ON CONFLICT (drain, slot) DO UPDATE
       SET pending = c.pending + EXCLUDED.pending, running = c.running + EXCLUDED.running,
           done = c.done + EXCLUDED.done, dead = c.dead + EXCLUDED.dead,
           skipped_missing = c.skipped_missing + EXCLUDED.skipped_missing,
           finished_done = c.finished_done + EXCLUDED.finished_done,
           finished_dead = c.finished_dead + EXCLUDED.finished_dead,
           finished_skipped_missing = c.finished_skipped_missing + EXCLUDED.finished_skipped_missing;
    RETURN NULL;
END
$$;

-- TRUNCATE empties the states and keeps what has been counted.
CREATE OR REPLACE FUNCTION item_counts_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE item_counts SET pending = 0, running = 0, done = 0, dead = 0, skipped_missing = 0;
    RETURN NULL;
END
$$;

-- A worker start is counted when its attempt ends (as 0007 counted it): the attempt gets
-- its first outcome, and that outcome is neither not_started nor skipped_missing.
CREATE FUNCTION item_counts_worker_started() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_counts AS c (drain, slot, worker_starts)
    SELECT i.drain, (pg_backend_pid() % 16)::smallint, count(*)
      FROM new_attempts n
      JOIN old_attempts o ON o.id = n.id
      JOIN items i ON i.id = n.item_id
     WHERE o.outcome IS NULL AND n.outcome IS NOT NULL
       AND n.outcome NOT IN ('not_started', 'skipped_missing')
     GROUP BY i.drain
     ORDER BY i.drain
    ON CONFLICT (drain, slot) DO UPDATE SET worker_starts = c.worker_starts + EXCLUDED.worker_starts;
    RETURN NULL;
END
$$;
CREATE TRIGGER attempts_started_count AFTER UPDATE ON attempts
    REFERENCING OLD TABLE AS old_attempts NEW TABLE AS new_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_worker_started();
