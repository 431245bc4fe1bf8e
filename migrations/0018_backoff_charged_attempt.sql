-- The latest poison charge of the account that no later outcome of its quota group has
-- settled yet: the attempt charged as a failure, and the reset its limit line stated
-- (null: none to go by). The group's next quota hit, before any item started after the
-- charge (and before that reset) succeeded, shows that the window was spent, not the
-- item, and takes the charge back; such a success confirms it (docs/rate-limits.md,
-- "Poison items"). Null when there is none to settle.
ALTER TABLE quota_backoffs ADD COLUMN charged_attempt bigint,
                           ADD COLUMN charged_reset timestamptz;
