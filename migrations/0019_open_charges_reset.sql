-- A charge whose item's attempts were reset since it was opened (`retry`, `enqueue
-- --replace`, a changed source file) has no attempt count to go by: null. Taking such a
-- charge back relabels its attempt and gives the item nothing back — no attempt, no
-- revival of a dead item, which died again on its own since (docs/rate-limits.md,
-- "Poison items").
ALTER TABLE open_charges ALTER COLUMN attempts_at_charge DROP NOT NULL;
