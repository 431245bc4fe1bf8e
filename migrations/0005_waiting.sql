-- A pass that waits inside itself for its quota group's reset records until when and why,
-- so that `status`, `runs show` and the metrics can say so (docs/rate-limits.md).
ALTER TABLE runs ADD COLUMN waiting_until timestamptz, ADD COLUMN waiting_reason text;
