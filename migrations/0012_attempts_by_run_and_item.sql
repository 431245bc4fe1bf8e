-- A run's attempt of an item (`item_id = $1 AND run_id = $2`, in every completion) is one
-- index entry whichever index the planner takes. With `attempts_run` on run_id alone, a
-- drain pass, which plans its statements once (docs/benchmarks.md, "Counting in the
-- statement, claiming ahead"), could take that index and read every attempt of the run
-- on each completion, so a pass slowed with every item it finished. Led by run_id, the
-- index still serves every read by run (retention, a run's usage, its release).
CREATE INDEX attempts_run_item ON attempts (run_id, item_id);
DROP INDEX attempts_run;
