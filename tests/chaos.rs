//! The chaos test: 1,000 items over 3 drains (two share a quota group) while a driver runs
//! `supervise` in a loop and kills, at random, drain and worker processes it started.
//! The fake worker randomly succeeds, fails, prints a usage limit with a reset a few
//! seconds ahead, prints a server error that mentions rate limits, hangs, or exits mid-output.
//! Some drains run as another host (their own UTS namespace, where the machine allows it):
//! the driver freezes them, waits until a supervise judges their run hung by liveness (it
//! may not signal another host's process), then thaws them — the race of a run ended while
//! its process lives on, which must neither claim nor commit again.
//! After a final quiet phase every item must be done exactly once with its full result,
//! or dead with an attempt history that explains it; no run may be left running; the
//! counts kept in `item_counts` must equal a count of the items and attempts; and no
//! item may have been claimed, nor a worker started, while its quota group backed off.
//!
//! Randomness is seeded; the seed is printed, and `CHAOS_SEED=N` repeats its choices
//! (process timing still varies from run to run).

#[path = "integration/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::*;

const DRAINS: [(&str, usize); 3] = [("alpha", 400), ("beta", 350), ("gamma", 250)];
const CHAOS_PHASE: Duration = Duration::from_secs(45);
const QUIET_PHASE_LIMIT: Duration = Duration::from_secs(180);

/// xorshift64*: small, seeded, good enough to pick victims.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `max_wait = "10s"`: a pass waits for the 4-s resets, and ends where the server errors
/// of two items in a row would make it wait 30 s (docs/rate-limits.md, "Server errors"):
/// the supervise loop starts the next at once.
fn config(dir: &Path) -> String {
    let log = dir.join("workers.log");
    let mut text = format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"500ms\"\nreset_margin = \"1s\"\n\
         suspected_backoff = \"4s\"\ndefault_backoff = \"6s\"\nlog_dir = \"{}\"\n",
        dir.join("logs").display()
    );
    for (name, _) in DRAINS {
        let group = if name == "gamma" { "solo" } else { "shared" };
        text.push_str(&format!(
            "\n[[drain]]\nname = \"{name}\"\ncommand = [\"{FAKE_WORKER}\"]\nquota_group = \"{group}\"\n\
             env = {{ FAKE_WORKER_LOG = \"{}\" }}\nconcurrency = 2\nmax_items_per_pass = 40\n\
             item_timeout = \"2s\"\nliveness_timeout = \"4s\"\nmax_attempts = 4\nmax_wait = \"10s\"\n\
             retry_backoff = {{ base = \"200ms\", max = \"1s\" }}\n",
            log.display()
        ));
    }
    text
}

fn expected_result(key: &str) -> String {
    format!("result:{key}:{}\n", key.repeat(40))
}

/// `dir`: where an item marks the limit it met, so that it meets one once. The choice is
/// the same for the same item, attempt and run, and a limit uses no attempt: an item
/// whose choice is the limit would otherwise meet it on every call of the pass waiting
/// out its resets — a limit that never lifts, which no item succeeding beside it tells
/// from a real one (docs/rate-limits.md, "Poison items").
fn payload(seed: u64, key: &str, dir: &Path) -> Value {
    let result = expected_result(key);
    let limit_met = dir.join(format!("limit-met-{key}"));
    let result = result.trim_end();
    let limit = r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Rate limited. Please try again in 4s."}}"#;
    let server = r#"API Error: 500 {"type":"error","error":{"type":"api_error","message":"Internal server error (not your usage limit) · Rate limited"}}"#;
    json!({ "steps": [{ "choose": { "seed": seed, "options": [
        { "weight": 140, "steps": [{ "out": result }] },
        { "weight": 14, "steps": [{ "checkpoints": { "count": 2, "every": 0.1 } }, { "sleep": 0.2 }, { "out": result }] },
        { "weight": 16, "steps": [{ "err": "worker failed: bad input" }, { "exit": 3 }] },
        { "weight": 2, "steps": [{ "if_file": { "path": limit_met, "then": [{ "out": result }],
            "else": [{ "touch": limit_met }, { "err": limit }, { "exit": 1 }] } }] },
        { "weight": 12, "steps": [{ "err": server }, { "exit": 1 }] },
        { "weight": 5, "steps": [{ "hang": true }] },
        { "weight": 10, "steps": [{ "out": "half a resu" }, { "cut_off": true }] },
    ] } }] })
}

/// Is `pid` a process of this program (so the driver never kills anything else)?
fn is_ours(pid: i32, program: &str) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == Path::new(program))
}

/// Longer than a supervise pass may take: its lock timeout behind a frozen drain
/// (`SUPERVISE_LOCK_WAIT`, 10 s) and the rest of the pass.
const SUPERVISE_STALLED: Duration = Duration::from_secs(20);

fn run_supervise(fixture: &Fixture) {
    let mut child = fixture.drainctl(&["supervise"]).env_remove("DRAINCTL_NOW").spawn();
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let output = child.wait_with_output().map(finished);
                assert!(status.success(), "supervise failed: {output:?}");
                return;
            }
            // A pass may wait up to its lock timeout (10 s) behind a drain frozen inside a
            // transaction, then fail that one decision and go on: stalled means longer.
            Ok(None) if started.elapsed() > SUPERVISE_STALLED => {
                let _ = child.kill();
                let output = child.wait_with_output().map(finished);
                panic!("a supervise pass took more than {SUPERVISE_STALLED:?}: {output:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => panic!("waiting for supervise: {error}"),
        }
    }
}

#[test]
fn chaos_loses_nothing_and_never_runs_during_a_backoff() {
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("chaos seed: CHAOS_SEED={seed}");
    let mut random = Random(seed);
    let fixture = Fixture::new("", "2026-11-27T10:00:00Z");
    std::fs::write(&fixture.config_path, config(fixture.dir.path())).unwrap();
    // Real time: liveness and backoffs are measured on the wall clock here.
    let fixture_env = |args: &[&str]| fixture.drainctl(args).env_remove("DRAINCTL_NOW");
    for (drain, count) in DRAINS {
        let lines: String = (0..count)
            .map(|i| {
                let key = format!("{drain}-{i:04}");
                format!("{}\n", json!({ "key": key, "payload": payload(seed, &key, fixture.dir.path()) }))
            })
            .collect();
        fixture_env(&["enqueue", drain]).stdin(lines).run().assert_code(0);
    }
    std::fs::remove_file(&fixture.clock_path).unwrap();
    let mut fixture = ChaosFixture(fixture, 0);

    // Chaos: supervise in a loop; kill -9 drains and workers; freeze drains (hung).
    let mut kills = HashMap::from([("drain", 0), ("worker", 0), ("freeze", 0), ("thawed_after_hung", 0)]);
    // Drains of "another host", and those of them frozen: (run id, pid, when frozen).
    let can_use_another_host = can_use_another_host();
    let mut other_host: Vec<std::process::Child> = Vec::new();
    let mut frozen_elsewhere: Vec<(i64, i32, f64)> = Vec::new();
    // (run id, when) of every drain of the other host thawed.
    let mut thawed: Vec<(i64, f64)> = Vec::new();
    // (run id, when) of every drain killed, and (run id, pid, when) of every one frozen.
    let mut killed: Vec<(i64, f64)> = Vec::new();
    let mut frozen: Vec<(i64, i32, f64)> = Vec::new();
    let chaos_until = Instant::now() + CHAOS_PHASE;
    while Instant::now() < chaos_until && !fixture.settled() {
        run_supervise(&fixture.0);
        std::thread::sleep(Duration::from_millis(50 + random.below(300) as u64));
        if can_use_another_host {
            other_host_chaos(
                &fixture.0,
                &mut random,
                &mut other_host,
                (&mut frozen_elsewhere, &mut thawed),
                &mut kills,
            );
        }
        let running: Vec<(i64, i32, Option<i32>)> = fixture
            .0
            .client()
            .query("SELECT id, pid, worker_pid FROM runs WHERE status = 'running' AND host <> 'chaos-b'", &[])
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .filter(|(_, pid, _)| !frozen.iter().any(|(_, frozen_pid, _)| frozen_pid == pid))
            .collect();
        if running.is_empty() {
            continue;
        }
        let (run_id, pid, worker_pid) = running[random.below(running.len())];
        if random.chance(20) && is_ours(pid, DRAINCTL) {
            signal(pid as u32, libc::SIGKILL);
            killed.push((run_id, unix_now()));
            *kills.get_mut("drain").unwrap() += 1;
        } else if random.chance(25) {
            if let Some(worker) = worker_pid.filter(|w| is_ours(*w, FAKE_WORKER)) {
                signal(worker as u32, libc::SIGKILL);
                *kills.get_mut("worker").unwrap() += 1;
            }
        } else if random.chance(5) && is_ours(pid, DRAINCTL) {
            // A frozen drain stops checkpointing: supervise must find it hung.
            signal(pid as u32, libc::SIGSTOP);
            frozen.push((run_id, pid, unix_now()));
            *kills.get_mut("freeze").unwrap() += 1;
        }
    }
    // Thaw what is still frozen elsewhere: it is judged hung in the quiet phase, and fenced.
    for (run_id, pid, _) in frozen_elsewhere.drain(..) {
        signal(pid as u32, libc::SIGCONT);
        thawed.push((run_id, unix_now()));
    }
    println!("chaos: {kills:?}");
    fixture.1 = i64::from(kills["drain"] + kills["worker"] + kills["freeze"]);

    // Quiet: no more kills; supervise until every item is settled.
    let quiet_until = Instant::now() + QUIET_PHASE_LIMIT;
    while !fixture.settled() {
        assert!(Instant::now() < quiet_until, "not settled after the quiet phase: {}", fixture.summary());
        run_supervise(&fixture.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("settled: {}", fixture.summary());
    fixture.check_every_item();
    fixture.check_no_run_left_running();
    fixture.check_counts_exact();
    fixture.check_no_claim_during_a_backoff(&thawed);
    fixture.check_events_tell_the_story();
    // A killed drain's run crashed, a frozen one's hung — unless it had finished just
    // before the signal landed.
    fixture.check_victims(&killed, "crashed");
    let frozen_runs: Vec<(i64, f64)> = frozen.iter().map(|(run, _, at)| (*run, *at)).collect();
    fixture.check_victims(&frozen_runs, "hung");
    for (_, pid, _) in frozen {
        if is_ours(pid, DRAINCTL) {
            signal(pid as u32, libc::SIGKILL);
        }
    }
    for mut child in other_host {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Drains frozen: (run id, pid, when frozen).
type Frozen = Vec<(i64, i32, f64)>;

/// The other host's part of the chaos: now and then start a drain as host `chaos-b`,
/// freeze one of its running drains, and thaw a frozen one once a supervise (of this
/// host, which may not signal it) has judged its run hung.
fn other_host_chaos(
    fixture: &Fixture,
    random: &mut Random,
    children: &mut Vec<std::process::Child>,
    (frozen, thawed): (&mut Frozen, &mut Vec<(i64, f64)>),
    kills: &mut HashMap<&str, i32>,
) {
    children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
    if children.len() < 2 && random.chance(10) {
        let drain = DRAINS[random.below(DRAINS.len())].0;
        children.push(
            fixture.drainctl_on_host("chaos-b", false, &["drain", drain]).env_remove("DRAINCTL_NOW").spawn(),
        );
    }
    let mut client = fixture.client();
    let running: Vec<(i64, i32)> = client
        .query("SELECT id, pid FROM runs WHERE status = 'running' AND host = 'chaos-b'", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .filter(|(run, _)| !frozen.iter().any(|(frozen_run, _, _)| frozen_run == run))
        .collect();
    if let Some(&(run_id, pid)) = running.get(random.below(running.len().max(1))) {
        if random.chance(30) && is_ours(pid, DRAINCTL) {
            signal(pid as u32, libc::SIGSTOP);
            frozen.push((run_id, pid, unix_now()));
        }
    }
    let ended: Vec<i64> = client
        .query(
            "SELECT id FROM runs WHERE id = ANY($1) AND status <> 'running'",
            &[&frozen.iter().map(|f| f.0).collect::<Vec<i64>>()],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    frozen.retain(|(run_id, pid, _)| {
        if !ended.contains(run_id) {
            return true;
        }
        signal(*pid as u32, libc::SIGCONT);
        thawed.push((*run_id, unix_now()));
        *kills.get_mut("thawed_after_hung").unwrap() += 1;
        false
    });
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

struct ChaosFixture(Fixture, i64);

impl ChaosFixture {
    fn count(&self, sql: &str) -> i64 {
        self.0.count(sql)
    }

    fn settled(&self) -> bool {
        self.count("SELECT count(*) FROM items WHERE state IN ('pending', 'running')") == 0
            && self.count("SELECT count(*) FROM runs WHERE status = 'running'") == 0
    }

    fn summary(&self) -> String {
        let mut client = self.0.client();
        let rows =
            client.query("SELECT state, count(*) FROM items GROUP BY state ORDER BY state", &[]).unwrap();
        let items: Vec<String> =
            rows.iter().map(|r| format!("{}={}", r.get::<_, String>(0), r.get::<_, i64>(1))).collect();
        let rows =
            client.query("SELECT status, count(*) FROM runs GROUP BY status ORDER BY status", &[]).unwrap();
        let runs: Vec<String> =
            rows.iter().map(|r| format!("{}={}", r.get::<_, String>(0), r.get::<_, i64>(1))).collect();
        let decisions: Option<Value> = client
            .query_opt("SELECT decisions FROM supervisor_passes ORDER BY id DESC LIMIT 1", &[])
            .unwrap()
            .map(|r| r.get(0));
        let backoffs: Vec<String> = client
            .query("SELECT quota_group, backoff_until::text, coalesce(reason, '') FROM quota_backoffs", &[])
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}: {} {}",
                    r.get::<_, String>(0),
                    r.get::<_, Option<String>>(1).unwrap_or_default(),
                    r.get::<_, String>(2)
                )
            })
            .collect();
        format!(
            "items {}; runs {}; backoffs {backoffs:?}; last decisions {}",
            items.join(" "),
            runs.join(" "),
            decisions.unwrap_or(Value::Null)
        )
    }

    fn check_every_item(&self) {
        let mut client = self.0.client();
        let total: usize = DRAINS.iter().map(|(_, n)| n).sum();
        let rows = client
            .query(
                "SELECT i.key, i.state, i.result, i.attempts, i.last_error,
                        (SELECT count(*) FROM attempts a WHERE a.item_id = i.id AND a.outcome = 'done'),
                        (SELECT count(*) FROM attempts a WHERE a.item_id = i.id AND a.outcome IS NOT NULL
                            AND a.outcome NOT IN ('done', 'quota_hit', 'interrupted', 'not_started')),
                        (SELECT count(*) FROM attempts a WHERE a.item_id = i.id AND a.finished_at IS NULL)
                   FROM items i",
                &[],
            )
            .unwrap();
        assert_eq!(rows.len(), total);
        for row in rows {
            let key: String = row.get(0);
            let state: String = row.get(1);
            let done_attempts: i64 = row.get(5);
            let failed_attempts: i64 = row.get(6);
            let open_attempts: i64 = row.get(7);
            assert_eq!(open_attempts, 0, "{key}: an attempt was never closed");
            match state.as_str() {
                "done" => {
                    let result: Vec<u8> = row.get(2);
                    // Checkpoint lines on stdout are part of the result; the rest must be whole.
                    let result: String = String::from_utf8_lossy(&result)
                        .lines()
                        .filter(|line| !line.starts_with("::checkpoint::"))
                        .map(|line| format!("{line}\n"))
                        .collect();
                    assert_eq!(result, expected_result(&key), "{key}: result");
                    assert_eq!(done_attempts, 1, "{key}: committed {done_attempts} times");
                }
                "dead" => {
                    let attempts: i32 = row.get(3);
                    let error: Option<String> = row.get(4);
                    assert_eq!(done_attempts, 0, "{key}: dead but committed");
                    assert_eq!(attempts, 4, "{key}: dead after {attempts} attempts");
                    assert!(failed_attempts >= 1, "{key}: dead without a failed attempt on record");
                    assert!(error.is_some_and(|e| !e.is_empty()), "{key}: dead without a last error");
                }
                other => panic!("{key}: left {other}"),
            }
        }
        assert_eq!(self.count("SELECT count(*) FROM staged_results"), 0, "staged results left over");
    }

    /// The counts kept while passes were killed mid-statement agree with the items: per
    /// drain and state, and the worker starts and finished items only ever added.
    fn check_counts_exact(&self) {
        let mismatches = self.count(
            "WITH kept AS (
                 SELECT drain, sum(pending) AS pending, sum(running) AS running, sum(done) AS done,
                        sum(dead) AS dead, sum(skipped_missing) AS skipped_missing,
                        sum(finished_done) AS finished_done, sum(finished_dead) AS finished_dead,
                        sum(worker_starts) AS worker_starts
                   FROM item_counts GROUP BY drain),
             truth AS (
                 SELECT drain, count(*) FILTER (WHERE state = 'pending') AS pending,
                        count(*) FILTER (WHERE state = 'running') AS running,
                        count(*) FILTER (WHERE state = 'done') AS done,
                        count(*) FILTER (WHERE state = 'dead') AS dead,
                        count(*) FILTER (WHERE state = 'skipped_missing') AS skipped_missing
                   FROM items GROUP BY drain),
             started AS (
                 SELECT i.drain, count(*) AS worker_starts
                   FROM attempts a JOIN items i ON i.id = a.item_id
                  WHERE a.outcome IS NOT NULL AND a.outcome NOT IN ('not_started', 'skipped_missing')
                  GROUP BY i.drain)
             SELECT count(*) FROM truth t
               LEFT JOIN kept k USING (drain) LEFT JOIN started s USING (drain)
              WHERE (k.pending, k.running, k.done, k.dead, k.skipped_missing)
                        IS DISTINCT FROM (t.pending, t.running, t.done, t.dead, t.skipped_missing)
                 OR (k.finished_done, k.finished_dead) IS DISTINCT FROM (t.done, t.dead)
                 OR k.worker_starts IS DISTINCT FROM coalesce(s.worker_starts, 0)",
        );
        assert_eq!(mismatches, 0, "item_counts disagree with the items: {}", self.summary());
    }

    fn check_no_run_left_running(&self) {
        assert_eq!(self.count("SELECT count(*) FROM runs WHERE status = 'running'"), 0);
        assert_eq!(self.count("SELECT count(*) FROM runs WHERE finished_at IS NULL"), 0);
    }

    /// No item of a group was claimed, and no worker of a group started, while the group
    /// backed off. A backoff counts from when its transaction committed (the cluster the
    /// test scripts start tracks commit timestamps), give or take 0.5 s between its commit
    /// record and its being visible on a loaded machine; a worker starts a moment after its
    /// claim, so 2.5 s for those. Without commit timestamps, a backoff counts from when its
    /// hit was observed (its event's time), and the hit's transaction may commit a while
    /// later — longer still for a drain of the other host frozen in between and thawed
    /// (`thawed`, by run) — so 1.5 s more. Backoffs here last 4 to 6 s.
    fn check_no_claim_during_a_backoff(&self, thawed: &[(i64, f64)]) {
        let mut client = self.0.client();
        let has_commit_times: bool =
            client.query_one("SELECT current_setting('track_commit_timestamp') = 'on'", &[]).unwrap().get(0);
        let known_from = if has_commit_times {
            "extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8"
        } else {
            "extract(epoch FROM at)::float8"
        };
        let (claim_slack, start_slack) = if has_commit_times { (0.5, 2.5) } else { (1.5, 2.5) };
        let backoffs: Vec<(String, f64, f64)> = client
            .query(
                &format!(
                    "SELECT quota_group, {known_from},
                            extract(epoch FROM (data->>'backoff_until')::timestamptz)::float8, run_id
                       FROM events WHERE kind = 'backoff_set'"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| {
                let run_id: Option<i64> = r.get(3);
                let known: f64 = r.get(1);
                let known = thawed
                    .iter()
                    .filter(|(run, _)| !has_commit_times && Some(*run) == run_id)
                    .map(|(_, at)| *at)
                    .fold(known, f64::max);
                (r.get(0), known, r.get(2))
            })
            .collect();
        assert!(!backoffs.is_empty(), "no quota hit happened: the chaos was too tame");
        if has_commit_times {
            let longest: f64 = client
                .query_one(
                    "SELECT coalesce(max(extract(epoch FROM pg_xact_commit_timestamp(xmin) - at)), 0)::float8
                       FROM events WHERE kind = 'backoff_set'",
                    &[],
                )
                .unwrap()
                .get(0);
            println!("{} backoffs; the longest from its hit to its commit: {longest:.3} s", backoffs.len());
        }
        let group_of = |drain: &str| if drain == "gamma" { "solo" } else { "shared" };
        let violates = |group: &str, at: f64, slack: f64| {
            backoffs.iter().find(|(g, set, until)| g == group && at > set + slack && at < *until)
        };
        let claims = client
            .query(
                "SELECT i.drain, i.key, a.attempt, extract(epoch FROM a.started_at)::float8,
                        a.outcome IS NOT DISTINCT FROM 'not_started'
                   FROM attempts a JOIN items i ON i.id = a.item_id",
                &[],
            )
            .unwrap();
        for row in &claims {
            let drain: String = row.get(0);
            let at: f64 = row.get(3);
            if let Some(backoff) = violates(group_of(&drain), at, claim_slack) {
                panic!(
                    "{} attempt {} claimed at {at} during backoff {backoff:?}",
                    row.get::<_, String>(1),
                    row.get::<_, i32>(2)
                );
            }
        }
        let log = std::fs::read_to_string(self.0.path("workers.log")).unwrap();
        let mut starts = 0;
        for line in log.lines() {
            let mut fields = line.split_whitespace();
            assert_eq!(fields.next(), Some("start"), "{line}");
            let at: f64 = fields.next().unwrap().parse().unwrap();
            let drain = fields.find_map(|f| f.strip_prefix("drain=")).unwrap();
            starts += 1;
            if let Some(backoff) = violates(group_of(drain), at, start_slack) {
                panic!("worker started during backoff {backoff:?}: {line}");
            }
        }
        // A claim whose drain was killed before the worker logged its start has no line;
        // one given back unstarted (claimed ahead of a stop) never had a worker — except,
        // rarely, one the reaper gave back as claimed ahead in the moment its worker had
        // just started (docs/worker-contract.md): those may have a line.
        let claims = claims.iter().filter(|row| !row.get::<_, bool>(4)).count() as i64;
        let given_back_by_the_reaper = self.count(
            "SELECT count(*) FROM attempts
              WHERE outcome = 'not_started' AND error = 'claimed ahead; its run ended before its worker started'",
        );
        assert!(
            starts <= claims + given_back_by_the_reaper,
            "{starts} worker starts for {claims} claims ({given_back_by_the_reaper} given back by the reaper)"
        );
        assert!(claims - starts <= self.1, "{claims} claims but only {starts} worker starts");
    }

    fn check_events_tell_the_story(&self) {
        let kinds = |kind: &str| self.count(&format!("SELECT count(*) FROM events WHERE kind = '{kind}'"));
        assert!(kinds("run_started") > 0);
        assert_eq!(kinds("run_started"), kinds("run_finished") + kinds("run_crashed") + kinds("run_hung"));
        assert_eq!(
            kinds("item_dead_lettered"),
            self.count("SELECT count(*) FROM items WHERE state = 'dead'")
        );
    }

    /// Every victim run ended with `status`, or had finished before it was signalled.
    fn check_victims(&self, victims: &[(i64, f64)], status: &str) {
        let mut client = self.0.client();
        for (run_id, at) in victims {
            let row = client
                .query_one(
                    "SELECT status, extract(epoch FROM finished_at)::float8,
                            (SELECT count(*) FROM events e WHERE e.run_id = runs.id AND e.kind = $2)
                       FROM runs WHERE id = $1",
                    &[run_id, &format!("run_{status}")],
                )
                .unwrap();
            let (actual, finished_at, events): (String, Option<f64>, i64) =
                (row.get(0), row.get(1), row.get(2));
            if actual == status {
                assert_eq!(events, 1, "run {run_id} is {status} but has {events} run_{status} events");
            } else {
                assert!(
                    finished_at.is_some_and(|finished| finished <= *at),
                    "run {run_id} was signalled at {at} while running, but ended {actual} at {finished_at:?}"
                );
            }
        }
    }
}
