-- The latest poison charge of the account that no later outcome of its quota group has
-- settled yet: the attempt charged as a failure. The group's next quota hit on another
-- item, before any item started after the charge succeeded, shows that the window was
-- spent, not the item, and takes the charge back; a success started after it confirms it
-- (docs/rate-limits.md, "Poison items"). Null when there is none to settle.
ALTER TABLE quota_backoffs ADD COLUMN charged_attempt bigint;
