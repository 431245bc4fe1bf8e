-- The seconds a pass spent holding no item: waiting for a quota reset or yielding to a
-- higher-ranking drain of its group. Throughput and forecasts count a run's time less
-- these (docs/operations.md, "Forecasts"), so a pass that waited out a limit does not
-- look slow. A constant default: no table rewrite.
ALTER TABLE runs ADD COLUMN idle_seconds double precision NOT NULL DEFAULT 0;
