-- A quota group parked by a hit that waiting does not fix (billing, spend limit,
-- `limit: 0`): no drain of the group calls a worker until an operator clears it with
-- `drainctl resume --group NAME` (docs/rate-limits.md, "Parked groups").
ALTER TABLE quota_groups ADD COLUMN parked_at timestamptz, ADD COLUMN parked_reason text;

-- An item whose output reads as a limit again and again while other items of its group
-- succeed is charged an attempt for its hits (docs/rate-limits.md, "Poison items"):
-- how many such hits in a row, and the attempt of the last one.
ALTER TABLE items
    ADD COLUMN quota_hit_streak integer NOT NULL DEFAULT 0,
    ADD COLUMN last_quota_hit_attempt bigint;
