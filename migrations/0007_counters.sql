-- Monotonic counters for Prometheus (docs/operations.md#metrics): they only grow, and
-- pruning old items, attempts and events does not lower them, so `rate()` works.
-- Triggers keep them in the transaction that made the change.
--   items_finished_total  {drain, outcome}  an item became done, dead or skipped_missing
--   worker_starts_total   {drain}           an attempt that started its worker ended (any
--                                           outcome but not_started and skipped_missing)
--   quota_hits_total      {group}           a quota hit set a backoff (backoff_set event)
CREATE TABLE counters (
    metric text  NOT NULL,
    labels jsonb NOT NULL,
    value  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (metric, labels)
);

CREATE FUNCTION counters_bump(p_metric text, p_labels jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO counters (metric, labels, value) VALUES (p_metric, p_labels, 1)
    ON CONFLICT (metric, labels) DO UPDATE SET value = counters.value + 1
$$;

CREATE FUNCTION counters_item_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('done', 'dead', 'skipped_missing') AND NEW.state IS DISTINCT FROM OLD.state THEN
        PERFORM counters_bump('items_finished_total',
                              jsonb_build_object('drain', NEW.drain, 'outcome', NEW.state));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER items_finished_counter AFTER UPDATE OF state ON items
    FOR EACH ROW EXECUTE FUNCTION counters_item_finished();

CREATE FUNCTION counters_worker_started() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.outcome IS NULL AND NEW.outcome IS NOT NULL
       AND NEW.outcome NOT IN ('not_started', 'skipped_missing') THEN
        PERFORM counters_bump('worker_starts_total',
                              jsonb_build_object('drain', (SELECT drain FROM items WHERE id = NEW.item_id)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER attempts_started_counter AFTER UPDATE OF outcome ON attempts
    FOR EACH ROW EXECUTE FUNCTION counters_worker_started();

CREATE FUNCTION counters_quota_hit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'backoff_set' AND NEW.quota_group IS NOT NULL THEN
        PERFORM counters_bump('quota_hits_total', jsonb_build_object('group', NEW.quota_group));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_quota_hit_counter AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION counters_quota_hit();

-- Start from what the history still holds.
INSERT INTO counters (metric, labels, value)
SELECT 'items_finished_total', jsonb_build_object('drain', drain, 'outcome', state), count(*)
FROM items WHERE state IN ('done', 'dead', 'skipped_missing') GROUP BY drain, state;
INSERT INTO counters (metric, labels, value)
SELECT 'worker_starts_total', jsonb_build_object('drain', i.drain), count(*)
FROM attempts a JOIN items i ON i.id = a.item_id
WHERE a.outcome IS NOT NULL AND a.outcome NOT IN ('not_started', 'skipped_missing')
GROUP BY i.drain;
INSERT INTO counters (metric, labels, value)
SELECT 'quota_hits_total', jsonb_build_object('group', quota_group), count(*)
FROM events WHERE kind = 'backoff_set' AND quota_group IS NOT NULL GROUP BY quota_group;
