-- How many items of the quota group's drains were done (`item_counts.finished_done`,
-- which only grows) when the account's latest quota hit was recorded: a hit that finds the same
-- number follows the previous one with no success between them (docs/rate-limits.md,
-- "Now"). Null until the first hit after this migration. `now_hits`: how many hits in a
-- row, none done between them, said the reset is now (each such retry waits twice as
-- long as the one before).
ALTER TABLE quota_backoffs ADD COLUMN done_at_hit bigint,
                           ADD COLUMN now_hits integer NOT NULL DEFAULT 0;
