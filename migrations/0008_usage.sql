-- What a worker reported its attempt cost (docs/results.md): usage read from the worker's
-- own output (`claude -p` JSON, codex `--json`, gemini `--output-format json`). A column is
-- NULL when the output reported nothing for it: drainctl never guesses.
ALTER TABLE attempts
    ADD COLUMN cost_usd           numeric,
    ADD COLUMN input_tokens       bigint,
    ADD COLUMN output_tokens      bigint,
    ADD COLUMN cache_read_tokens  bigint,
    ADD COLUMN cache_write_tokens bigint,
    ADD COLUMN turns              integer,
    ADD COLUMN api_ms             bigint,
    ADD COLUMN usage_at           timestamptz;

-- When the usage was recorded (the worker's exit): sums over the last 24 h / 7 d, the
-- daily budget and the page's cost per day read only the attempts that reported usage.
-- Its own column, not finished_at: an index on finished_at would make every attempt's
-- closing update a non-HOT one, on the drain's hot path, for workers that report nothing.
CREATE INDEX attempts_usage_at ON attempts (usage_at) WHERE usage_at IS NOT NULL;

-- Monotonic cost and token counters for Prometheus, kept by a trigger like the others in
-- 0007: cost in micro-dollars (the metric divides), tokens by kind. One statement adds
-- every figure the update changed; a figure first reported (even as 0) starts its series.
CREATE FUNCTION counters_attempt_usage() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counters (metric, labels, value)
    SELECT v.metric, v.labels || jsonb_build_object('drain', i.drain), v.amount
      FROM items i,
           (VALUES
              ('cost_microusd_total', '{}'::jsonb, NEW.cost_usd IS DISTINCT FROM OLD.cost_usd,
               round((coalesce(NEW.cost_usd, 0) - coalesce(OLD.cost_usd, 0)) * 1000000)::bigint),
              ('tokens_total', '{"kind": "input"}'::jsonb, NEW.input_tokens IS DISTINCT FROM OLD.input_tokens,
               coalesce(NEW.input_tokens, 0) - coalesce(OLD.input_tokens, 0)),
              ('tokens_total', '{"kind": "output"}'::jsonb, NEW.output_tokens IS DISTINCT FROM OLD.output_tokens,
               coalesce(NEW.output_tokens, 0) - coalesce(OLD.output_tokens, 0)),
              ('tokens_total', '{"kind": "cache_read"}'::jsonb,
               NEW.cache_read_tokens IS DISTINCT FROM OLD.cache_read_tokens,
               coalesce(NEW.cache_read_tokens, 0) - coalesce(OLD.cache_read_tokens, 0)),
              ('tokens_total', '{"kind": "cache_write"}'::jsonb,
               NEW.cache_write_tokens IS DISTINCT FROM OLD.cache_write_tokens,
               coalesce(NEW.cache_write_tokens, 0) - coalesce(OLD.cache_write_tokens, 0))
           ) AS v (metric, labels, changed, amount)
     WHERE i.id = NEW.item_id AND v.changed
    ON CONFLICT (metric, labels) DO UPDATE SET value = counters.value + EXCLUDED.value;
    RETURN NULL;
END
$$;
CREATE TRIGGER attempts_usage_counter
    AFTER UPDATE OF cost_usd, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens
    ON attempts FOR EACH ROW EXECUTE FUNCTION counters_attempt_usage();
