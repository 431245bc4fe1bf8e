-- Accounts of quota groups and resume tokens: which account each group uses and when it
-- last switched, the rule behind each account's backoff, the account of every attempt,
-- and the latest resume token a worker printed for an item.

-- One row per quota group that has had to choose an account. `account` is the account in
-- use (NULL: the group's first account); `switched_at` bounds switching by
-- `switch_cooldown`. Claims and quota hits of a group lock this row, so they agree.
CREATE TABLE quota_groups (
    quota_group text PRIMARY KEY,
    account     text,
    switched_at timestamptz,
    updated_at  timestamptz NOT NULL
);

-- The rule that set `backoff_until`: a stated reset, a suspected or a confirmed limit.
ALTER TABLE quota_backoffs
    ADD COLUMN rule text CHECK (rule IN ('parsed_reset', 'suspected', 'confirmed'));

-- The account an attempt ran on ('' = the group's only, implicit account).
ALTER TABLE attempts ADD COLUMN account text NOT NULL DEFAULT '';

-- The latest resume token the worker printed while working on the item; cleared when the
-- item succeeds or fails by itself.
ALTER TABLE items ADD COLUMN resume_token text;
