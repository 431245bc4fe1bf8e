-- Poison charges that no later quota hit of their group has settled yet: the attempt
-- charged as a failure, its item, the account it ran on, the reset its limit line stated
-- (null: none to go by) and the item's attempt count with the charge. A later hit on the
-- account, before any item started after the charge (and before that reset) succeeded,
-- shows that the window was spent, not the item, and takes the charge back; such a
-- success confirms it (docs/rate-limits.md, "Poison items").
CREATE TABLE open_charges (
    attempt_id         bigint PRIMARY KEY REFERENCES attempts (id) ON DELETE CASCADE,
    item_id            bigint NOT NULL,
    quota_group        text NOT NULL,
    account            text NOT NULL,
    stated_reset       timestamptz,
    attempts_at_charge integer NOT NULL
);
CREATE INDEX open_charges_account ON open_charges (quota_group, account, attempt_id);
