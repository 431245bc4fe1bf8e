-- Which machine and PID namespace a run's pid belongs to. Two hosts (or two containers)
-- may share a host name; a pid means something only where the boot id and the PID
-- namespace are the same. A run with no identity (recorded before this column) is
-- judged by its host name alone, as before.
ALTER TABLE runs ADD COLUMN host_id text;
