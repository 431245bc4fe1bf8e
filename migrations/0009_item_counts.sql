-- Exact per-drain, per-state item counts that `status`, `metrics`, `items NAME` and the
-- forecasts read in O(drains) instead of counting the backlog (docs/architecture.md,
-- "Item counts and the backlog's size"). Statement-level triggers with transition tables
-- keep them in the same transaction as every statement that inserts, updates or deletes
-- items: one upsert per statement and drain, so a COPY of a million items costs one
-- aggregate, not a million updates.
--
-- Contention: a counter row is locked from the statement that changes it until its
-- transaction commits. Every drain has up to 16 slot rows, and a statement updates the
-- one of its backend (pg_backend_pid() % 16): concurrent passes of one drain, a prune and
-- an enqueue almost always write different rows and never wait for one another, and a
-- reader sums at most 16 rows per drain. No compaction is needed: a slot row is updated
-- in place (a HOT update, as no indexed column changes).
CREATE TABLE item_counts (
    drain           text     NOT NULL,
    slot            smallint NOT NULL,
    pending         bigint   NOT NULL DEFAULT 0,
    running         bigint   NOT NULL DEFAULT 0,
    done            bigint   NOT NULL DEFAULT 0,
    dead            bigint   NOT NULL DEFAULT 0,
    skipped_missing bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (drain, slot)
);

-- Each trigger adds its statement's moves, per drain, to this backend's slot row, in drain
-- order (two statements that touch several drains lock their rows in the same order). A
-- drain whose moves net to nothing (an update that changes no state: a resume token, a
-- payload) writes nothing.
CREATE FUNCTION item_counts_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_counts AS c (drain, slot, pending, running, done, dead, skipped_missing)
    SELECT drain, (pg_backend_pid() % 16)::smallint,
           coalesce(sum(n) FILTER (WHERE state = 'pending'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'running'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'done'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'dead'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'skipped_missing'), 0)
      FROM (SELECT drain, state, 1::bigint FROM new_items) AS moves (drain, state, n)
     GROUP BY drain
     ORDER BY drain
    ON CONFLICT (drain, slot) DO UPDATE
       SET pending = c.pending + EXCLUDED.pending, running = c.running + EXCLUDED.running,
           done = c.done + EXCLUDED.done, dead = c.dead + EXCLUDED.dead,
           skipped_missing = c.skipped_missing + EXCLUDED.skipped_missing;
    RETURN NULL;
END
$$;

CREATE FUNCTION item_counts_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_counts AS c (drain, slot, pending, running, done, dead, skipped_missing)
    SELECT drain, (pg_backend_pid() % 16)::smallint,
           coalesce(sum(n) FILTER (WHERE state = 'pending'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'running'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'done'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'dead'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'skipped_missing'), 0)
      FROM (SELECT drain, state, -1::bigint FROM old_items) AS moves (drain, state, n)
     GROUP BY drain
     ORDER BY drain
    ON CONFLICT (drain, slot) DO UPDATE
       SET pending = c.pending + EXCLUDED.pending, running = c.running + EXCLUDED.running,
           done = c.done + EXCLUDED.done, dead = c.dead + EXCLUDED.dead,
           skipped_missing = c.skipped_missing + EXCLUDED.skipped_missing;
    RETURN NULL;
END
$$;

-- An update moves an item between states: +1 for its new state, −1 for its old one.
CREATE FUNCTION item_counts_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_counts AS c (drain, slot, pending, running, done, dead, skipped_missing)
    SELECT drain, (pg_backend_pid() % 16)::smallint,
           coalesce(sum(n) FILTER (WHERE state = 'pending'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'running'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'done'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'dead'), 0),
           coalesce(sum(n) FILTER (WHERE state = 'skipped_missing'), 0)
      FROM (SELECT drain, state, 1::bigint FROM new_items
            UNION ALL SELECT drain, state, -1::bigint FROM old_items) AS moves (drain, state, n)
     GROUP BY drain
    HAVING coalesce(sum(n) FILTER (WHERE state = 'pending'), 0) <> 0
        OR coalesce(sum(n) FILTER (WHERE state = 'running'), 0) <> 0
        OR coalesce(sum(n) FILTER (WHERE state = 'done'), 0) <> 0
        OR coalesce(sum(n) FILTER (WHERE state = 'dead'), 0) <> 0
        OR coalesce(sum(n) FILTER (WHERE state = 'skipped_missing'), 0) <> 0
     ORDER BY drain
    ON CONFLICT (drain, slot) DO UPDATE
       SET pending = c.pending + EXCLUDED.pending, running = c.running + EXCLUDED.running,
           done = c.done + EXCLUDED.done, dead = c.dead + EXCLUDED.dead,
           skipped_missing = c.skipped_missing + EXCLUDED.skipped_missing;
    RETURN NULL;
END
$$;

CREATE FUNCTION item_counts_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM item_counts;
    RETURN NULL;
END
$$;

-- No writer may change items between the first count and the triggers.
LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER items_counted_insert AFTER INSERT ON items
    REFERENCING NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_inserted();
CREATE TRIGGER items_counted_update AFTER UPDATE ON items
    REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_updated();
CREATE TRIGGER items_counted_delete AFTER DELETE ON items
    REFERENCING OLD TABLE AS old_items
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_deleted();
CREATE TRIGGER items_counted_truncate AFTER TRUNCATE ON items
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_truncated();

INSERT INTO item_counts (drain, slot, pending, running, done, dead, skipped_missing)
SELECT drain, 0,
       count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'running'),
       count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'dead'),
       count(*) FILTER (WHERE state = 'skipped_missing')
  FROM items GROUP BY drain;

-- `items NAME [--state S]` lists the most recently changed first: per state, this index
-- read backwards gives them in that order (the listing merges the five states), and it
-- serves every `drain = $1 AND state = $2` probe the (drain, state) index it replaces
-- served. Ascending, so that new rows (the latest `updated_at`, the highest id) are
-- appended at its right edge.
DROP INDEX items_drain_state;
CREATE INDEX items_drain_state_updated ON items (drain, state, updated_at, id);

-- Retention deletes done items oldest first, `ORDER BY finished_at, id LIMIT 1000` per
-- batch: with the id in the index each batch reads its 1000 entries, where an index on
-- finished_at alone sorted every done item finished at the same instant, per batch.
CREATE INDEX items_finished_id ON items (finished_at, id) WHERE state IN ('done', 'skipped_missing');
DROP INDEX items_finished;
