-- drainctl core schema: drains and their controls, items, runs, attempts, staged
-- results, quota-group backoff, events and supervisor passes.

-- One row per drain that drainctl has seen: the single source of truth for pause and
-- burst. `id` numbers the drain's advisory-lock keys (see docs/migrations.md).
CREATE TABLE drains (
    id               integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    paused_at        timestamptz,
    pause_note       text,
    burst_until      timestamptz,
    burst_note       text,
    burst_started_at timestamptz,
    created_at       timestamptz NOT NULL
);

-- The backlog. `claimed_by` is the fencing token: the run that owns a running item.
CREATE TABLE items (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    drain         text NOT NULL,
    key           text NOT NULL,
    payload       jsonb NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts      integer NOT NULL DEFAULT 0,
    available_at  timestamptz NOT NULL,
    claimed_by    bigint,
    claimed_at    timestamptz,
    last_error    text,
    stderr_tail   bytea,
    result        bytea,
    enqueued_at   timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    UNIQUE (drain, key)
);
-- Claims and supervise's "is an item available now" EXISTS probe.
CREATE INDEX items_pending_available ON items (drain, available_at, id) WHERE state = 'pending';
-- Reaping: the items a run holds.
CREATE INDEX items_running_claim ON items (claimed_by) WHERE state = 'running';
-- Per-state counts for status.
CREATE INDEX items_drain_state ON items (drain, state);

-- One row per `drain` invocation.
CREATE TABLE runs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    drain              text NOT NULL,
    trigger            text NOT NULL CHECK (trigger IN ('supervisor', 'burst', 'manual')),
    host               text NOT NULL,
    pid                integer NOT NULL,
    process_start_time bigint,
    worker_pid         integer,
    worker_start_time  bigint,
    started_at         timestamptz NOT NULL,
    last_checkpoint_at timestamptz NOT NULL,
    checkpoints        bigint NOT NULL DEFAULT 0,
    items_done         integer NOT NULL DEFAULT 0,
    items_failed       integer NOT NULL DEFAULT 0,
    status             text NOT NULL CHECK (status IN ('running', 'drained', 'budget',
                           'rate_limited', 'window_closed', 'burst_ended', 'failed', 'hung',
                           'crashed', 'lock_skipped')),
    finished_at        timestamptz,
    note               text,
    log_path           text
);
CREATE INDEX runs_running ON runs (drain) WHERE status = 'running';
CREATE INDEX runs_drain_started ON runs (drain, started_at DESC);

-- Every attempt of every item: the history that explains a dead letter.
CREATE TABLE attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id     bigint NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    run_id      bigint NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     text,
    exit_code   integer,
    error       text
);
CREATE INDEX attempts_item ON attempts (item_id, id);

-- A result is staged here (with its length and checksum) before the item is marked
-- done; completion moves it into items.result in one transaction.
CREATE TABLE staged_results (
    item_id       bigint NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    run_id        bigint NOT NULL,
    result        bytea NOT NULL,
    result_bytes  bigint NOT NULL,
    result_sha256 bytea NOT NULL,
    staged_at     timestamptz NOT NULL,
    PRIMARY KEY (item_id, run_id)
);
CREATE INDEX staged_results_run ON staged_results (run_id);

-- Rate-limit backoff per quota group (and account; '' is the group's only account).
CREATE TABLE quota_backoffs (
    quota_group     text NOT NULL,
    account         text NOT NULL DEFAULT '',
    backoff_until   timestamptz,
    reset_at        timestamptz,
    reason          text,
    observed_at     timestamptz,
    suspected_at    timestamptz,
    needs_attention boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (quota_group, account)
);

-- Append-only audit log of every state change.
CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    drain       text,
    quota_group text,
    run_id      bigint,
    item_id     bigint,
    message     text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_at ON events (at DESC);
CREATE INDEX events_drain_at ON events (drain, at DESC);

-- One row per `supervise` invocation.
CREATE TABLE supervisor_passes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fired_at      timestamptz NOT NULL,
    scheduled_for timestamptz NOT NULL,
    host          text NOT NULL,
    pid           integer NOT NULL,
    status        text NOT NULL CHECK (status IN ('done', 'lock_skipped')),
    duration_ms   integer NOT NULL,
    decisions     jsonb NOT NULL DEFAULT '[]'::jsonb
);
CREATE INDEX supervisor_passes_fired ON supervisor_passes (fired_at DESC);
