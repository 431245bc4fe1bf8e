//! What real clients do that the classifier alone cannot see: a client that announces a
//! long wait for its quota and sleeps is stopped at once and recorded as a quota hit;
//! a zone-less wall-clock reset is read in the worker's own `TZ`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

fn config(item_timeout: &str, env: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"Europe/Paris\"\n\n\
         [[drain]]\nname = \"alpha\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\nquota_profile = \"gemini\"\n\
         max_wait = \"0s\"\nitem_timeout = \"{item_timeout}\"\n{env}"
    )
}

fn attempt_outcomes(fixture: &Fixture) -> Vec<String> {
    fixture.column("SELECT outcome FROM attempts ORDER BY id")
}

#[test]
fn a_client_sleeping_until_its_quota_resets_is_stopped_and_backs_the_group_off() {
    let fixture = Fixture::new(&config("2m", ""), NOW);
    let announcement = "Attempt 1 failed: You have exhausted your capacity on this model. Your quota will reset after 8h44m7s.. Retrying after 31733994ms...";
    fixture
        .enqueue("alpha", &[("a1".into(), json!({ "steps": [{ "err": announcement }, { "hang": true }] }))]);
    let started = Instant::now();
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    assert!(started.elapsed() < Duration::from_secs(30), "waited {:?} for the client", started.elapsed());
    assert_eq!(result.json()["status"], "rate_limited", "{}", result.stdout);
    let (state, attempts, _) = fixture.item("alpha", "a1");
    assert_eq!((state.as_str(), attempts), ("pending", 0), "the attempt is refunded");
    // The client's own reset (8h44m7s) plus the one-minute margin.
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T18:45:07Z");
    assert_eq!(attempt_outcomes(&fixture), ["quota_hit"]);
}

/// gemini-cli's words for a per-minute quota whose API said "retry in 0.6 s" but whose
/// `RetryInfo` it could not use: it sleeps its own 60 s.
const GEMINI_SOONER_THAN_ITS_WAIT: [&str; 4] = [
    "Attempt 1 failed: You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 3, model: gemini-2.5-pro",
    "Please retry in 0.600000s.",
    "Suggested retry after 60s.. Retrying after 60520ms...",
];

/// A fixture whose drain `alpha` (quota group `shared`, `max_wait` 0s) runs `script` with
/// `sh -c` like a client that exits 0 on SIGTERM, with `extra` settings, and one item.
fn script_fixture(script: &str, extra: &str) -> Fixture {
    let config = format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\n\n[[drain]]\nname = \"alpha\"\n\
         command = [\"sh\", \"-c\", {}]\nquota_group = \"shared\"\nmax_wait = \"0s\"\n{extra}",
        serde_json::to_string(&format!("cat >/dev/null; trap 'exit 0' TERM; {script}; sleep 300 & wait"))
            .unwrap()
    );
    let fixture = Fixture::new(&config, NOW);
    fixture.enqueue("alpha", &[("a1".into(), json!("Ticket 1"))]);
    fixture
}

#[test]
fn a_client_stopped_for_its_wait_that_exits_0_on_the_signal_backs_off_until_the_vendors_reset() {
    // Like gemini-cli, it exits 0 on SIGTERM.
    let script = format!(
        "printf '%s\\n' {} >&2",
        GEMINI_SOONER_THAN_ITS_WAIT.iter().map(|line| format!("'{line}'")).collect::<Vec<_>>().join(" ")
    );
    let fixture = script_fixture(&script, "quota_profile = \"gemini\"\nitem_timeout = \"2m\"\n");
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "rate_limited", "{}", result.stdout);
    // The vendor's 0.6 s and the 2 s margin; before, the exit 0 made the output a
    // success's and the client's own 60 s was taken: three windows lost each time.
    let waited: f64 = fixture
        .client()
        .query_one(
            &format!(
                "SELECT extract(epoch FROM backoff_until - '{NOW}'::timestamptz)::float8 FROM quota_backoffs"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert!((2.0..3.0).contains(&waited), "backs off {waited} s");
    assert_eq!(attempt_outcomes(&fixture), ["quota_hit"]);
}

#[test]
fn a_timed_out_answer_quoting_a_limit_that_exits_0_on_the_signal_is_a_timeout() {
    let answer = r#"{"type":"result","subtype":"success","is_error":false,"result":"Summary: the log shows: Claude AI usage limit reached|1796600000 then the job resumed."}"#;
    let fixture = script_fixture(&format!("printf '%s\\n' '{answer}'"), "item_timeout = \"2s\"\n");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    // A timeout, never the quoted limit (an earlier change of this session read it as one).
    assert_eq!(attempt_outcomes(&fixture), ["transient"]);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
}

#[test]
fn codex_timed_out_while_it_sleeps_out_a_429_is_a_quota_hit_not_a_failure() {
    // codex exec --json given `retry-after: 3600`: one notice naming no wait, then silence.
    let notice = r#"{"type":"error","message":"Reconnecting... 1/1 (exceeded retry limit, last status: 429 Too Many Requests, request id: req_x)"}"#;
    let script = format!("printf '%s\\n' '{{\"type\":\"turn.started\"}}' '{notice}'");
    let fixture =
        script_fixture(&script, "quota_profile = \"openai\"\nitem_timeout = \"2s\"\nmax_attempts = 1\n");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    // Before: a transient timeout, the item dead at max_attempts, no backoff: the next
    // pass called into the limit again.
    assert_eq!(attempt_outcomes(&fixture), ["quota_hit"]);
    assert_eq!(fixture.item("alpha", "a1").0, "pending");
    assert_eq!(
        fixture
            .count("SELECT count(*) FROM quota_backoffs WHERE backoff_until > now() - interval '100 days'"),
        1
    );
    let reason: Vec<String> = fixture.column("SELECT reason FROM quota_backoffs");
    assert!(reason[0].contains("429 Too Many Requests"), "{reason:?}");
    // The same notice followed by more work is no wait: a timeout, as before.
    let script = format!("printf '%s\\n' '{notice}' '{{\"type\":\"turn.started\"}}'");
    let fixture = script_fixture(&script, "quota_profile = \"openai\"\nitem_timeout = \"2s\"\n");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(attempt_outcomes(&fixture), ["transient"]);
}

#[test]
fn a_vendor_that_refuses_connections_is_a_server_error_for_each_real_client() {
    for (profile, stream, line) in [
        ("claude", "", "API Error: Unable to connect to API (ConnectionRefused)"),
        ("gemini", ">&2", "Error when talking to Gemini API Full report available at: /tmp/x.json Error: exception TypeError: fetch failed sending request"),
        ("openai", "", r#"{"type":"turn.failed","error":{"message":"Reconnecting... waiting for network (Connection failed: error sending request)"}}"#),
        // codex's text mode, until item_timeout (before: a plain timeout, every item's attempts used).
        ("openai", ">&2", "ERROR: Reconnecting... waiting for network"),
    ] {
        // The text-mode notice repeats until item_timeout ends the client, which dies of
        // the signal.
        let script = match line.starts_with("ERROR: Reconnecting") {
            true => format!("trap - TERM; printf '%s\\n' '{line}' {stream}"),
            false => format!("printf '%s\\n' '{line}' {stream}; exit 1"),
        };
        let fixture = script_fixture(&script, &format!("quota_profile = \"{profile}\"\nitem_timeout = \"2s\"\n"));
        fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
        // Before: an ordinary failure, the backlog dead-lettered at full speed.
        let errors: Vec<String> = fixture.column("SELECT error FROM attempts");
        assert!(errors.len() == 1 && errors[0].starts_with("server error: "), "{profile}: {errors:?}");
        assert_eq!(attempt_outcomes(&fixture), ["transient"], "{profile}");
    }
}

#[test]
fn a_timed_out_gemini_that_exits_0_on_the_signal_without_an_answer_is_a_timeout() {
    let script = "echo '[ERROR] Model stream ended without a finish reason.' >&2";
    let fixture = script_fixture(script, "quota_profile = \"gemini\"\nitem_timeout = \"2s\"\n");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    let errors: Vec<String> = fixture.column("SELECT error FROM attempts");
    assert_eq!(errors, ["timed out after item_timeout 2s"]);
}

#[test]
fn a_limit_the_client_retried_past_before_its_key_was_refused_parks_the_group() {
    let fixture = Fixture::new(&config("2m", ""), NOW);
    let mut steps: Vec<serde_json::Value> =
        GEMINI_SOONER_THAN_ITS_WAIT[..3].iter().map(|line| json!({ "err": line })).collect();
    steps.push(json!({ "err": "Suggested retry after 5s.. Retrying after 5982ms..." }));
    steps.push(json!({ "err": r#"Error when talking to Gemini API _ApiError: {"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"# }));
    steps.push(json!({ "err": "An unexpected critical error occurred:[object Object]" }));
    steps.push(json!({ "exit": 1 }));
    fixture.enqueue("alpha", &[("a1".into(), json!({ "steps": steps }))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    // Before: a quota hit backing off 7 s, again and again, the refused key never told.
    let parked: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'group_parked'");
    assert!(parked.len() == 1 && parked[0].contains("API key not valid"), "{parked:?}");
}

#[test]
fn a_client_waiting_beyond_the_item_timeout_is_stopped_with_that_wait_as_the_reset() {
    let fixture = Fixture::new(&config("5s", ""), NOW);
    let steps = json!({ "steps": [
        { "err": "Request failed: 429 Too Many Requests" },
        { "err": "Retrying in 30 seconds..." },
        { "hang": true },
    ] });
    fixture.enqueue("alpha", &[("a1".into(), steps)]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.item("alpha", "a1").1, 0);
    // 30 s from now, plus a tenth of the wait as margin.
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:00:33Z");
    assert_eq!(attempt_outcomes(&fixture), ["quota_hit"]);
}

#[test]
fn a_retry_notice_without_limit_wording_leaves_a_healthy_worker_alone() {
    let fixture = Fixture::new(&config("2m", ""), NOW);
    let steps = json!({ "steps": [
        { "err": "ConnectionError: database is locked. Retrying in 2 minutes." },
        { "sleep": 0.5 },
        { "err": "Retrying in 90 seconds..." },
        { "sleep": 0.5 },
        { "out": "The summary." },
    ] });
    fixture.enqueue("alpha", &[("a1".into(), steps)]);
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "drained", "{}", result.stdout);
    assert_eq!(fixture.item("alpha", "a1").0, "done");
    assert_eq!(attempt_outcomes(&fixture), ["done"]);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
}

#[test]
fn an_answer_quoting_a_retry_notice_or_a_payload_echoed_with_one_is_not_a_client_waiting() {
    let fixture = Fixture::new(&config("2m", ""), NOW);
    // A text answer (stdout, as `claude -p` or `gemini -p` print it) that quotes a log.
    // Before: the client was taken for one announcing its wait, its answer dropped and
    // the group backed off for the quoted 2 minutes.
    let answer = "Summary of the upload log:\n- 10:03 the API answered HTTP 429 Too Many Requests\n\
                  Retrying in 2 minutes.\n- 10:05 upload finished\nThe job succeeded after one retry.\n";
    // codex's text mode echoes its prompt, the payload inside, on stderr. Before: a stop
    // and a backoff read from the item's own text.
    let payload_line = r#"{"t":"Attempt 1 failed with status 429. Retrying after 90000ms..."}"#;
    let echo = format!(
        "OpenAI Codex v0.171.0\n--------\nmodel: gpt-5-codex\n--------\nuser\nSummarise it.\n\n<stdin>\n{payload_line}\n</stdin>\ncodex\n"
    );
    fixture.enqueue(
        "alpha",
        &[
            ("text".into(), json!({ "steps": [{ "out": answer }, { "sleep": 0.3 }] })),
            (
                "echo".into(),
                json!({ "steps": [{ "err": echo }, { "sleep": 0.3 }, { "out": "The item is summarised." }] }),
            ),
            // codex's text mode prints the model's answer on stderr as well, under `codex`.
            (
                "codex-answer".into(),
                json!({ "steps": [{ "err": format!("{echo}{answer}") }, { "sleep": 0.3 }, { "out": answer }] }),
            ),
            // A one-line JSON answer quoting the log is a result, not a client's event.
            (
                "json-answer".into(),
                json!({ "steps": [
                    { "out": r#"{"summary": "The API answered 429 Too Many Requests. Retrying in 2 minutes."}"# },
                    { "sleep": 0.3 },
                ] }),
            ),
        ],
    );
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 4, "{}", result.stdout);
    assert_eq!(attempt_outcomes(&fixture), ["done", "done", "done", "done"]);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
    let results: Vec<Vec<u8>> = fixture.column("SELECT result FROM items WHERE key = 'text'");
    assert_eq!(String::from_utf8_lossy(&results[0]).trim_end(), answer.trim_end());
}

#[test]
fn a_short_retry_the_client_sits_through_is_a_success() {
    let fixture = Fixture::new(&config("2m", ""), NOW);
    let steps = json!({ "steps": [
        { "err": "Attempt 1 failed with status 429. Retrying in 0.2 seconds..." },
        { "sleep": 0.2 },
        { "out": "The summary." },
    ] });
    fixture.enqueue("alpha", &[("a1".into(), steps)]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.item("alpha", "a1").0, "done");
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
}

#[test]
fn a_zone_less_wall_clock_reset_is_read_in_the_worker_tz() {
    let fixture = Fixture::new(&config("2m", "env = { TZ = \"America/New_York\" }\n"), NOW);
    let message = "ERROR: You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again at 6:44 PM.";
    fixture.enqueue("alpha", &[("a1".into(), json!({ "steps": [{ "err": message }, { "exit": 1 }] }))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    // 18:44 in New York (UTC-5), not in the configured Paris, plus the minute's margin.
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T23:45:00Z");
}

#[test]
fn gemini_exiting_0_without_an_answer_is_a_transient_failure_not_done() {
    let fixture = Fixture::new(&config("2m", "retry_backoff = { base = \"10s\", max = \"10s\" }\n"), NOW);
    let error = "Model stream ended without a finish reason.";
    let text_mode = json!({ "steps": [{ "err": "Ripgrep is not available. Falling back to GrepTool." }, { "err": format!("[ERROR] {error}") }] });
    let json_mode = json!({ "steps": [{ "out": serde_json::to_string_pretty(&json!({
        "session_id": "34c20603-1b94-42fa-8145-6798ce6e6411",
        "response": "",
        "stats": { "models": { "gemini-2.5-pro": { "api": {
            "totalRequests": 1, "totalErrors": 1, "totalLatencyMs": 41, "errorsByType": { "NO_FINISH_REASON": 1 }
        } } } },
        "error": { "type": "INVALID_STREAM", "message": error },
    })).unwrap() }] });
    // A stream cut short: the part it got, twice, beside the same error. Before: `done`,
    // the garbled part stored as the result.
    let cut = json!({ "steps": [
        { "out": "Partial answer, cutPartial answer, cut" },
        { "err": format!("[ERROR] {error}") },
    ] });
    // An error of the client's helpers beside a whole answer is not one about it.
    let answered = json!({ "steps": [
        { "out": "The item is summarised." },
        { "err": "[ERROR] [IDEClient] cannot connect to the IDE" },
    ] });
    fixture.enqueue(
        "alpha",
        &[
            ("text".into(), text_mode),
            ("json".into(), json_mode),
            ("cut".into(), cut),
            ("answered".into(), answered),
        ],
    );
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    for key in ["text", "json", "cut"] {
        let (state, attempts, last_error) = fixture.item("alpha", key);
        assert_eq!((state.as_str(), attempts, last_error.as_deref()), ("pending", 1, Some(error)), "{key}");
    }
    let cut_result: Option<Vec<u8>> =
        fixture.client().query_one("SELECT result FROM items WHERE key = 'cut'", &[]).unwrap().get(0);
    assert_eq!(cut_result, None, "nothing of a cut answer is kept");
    assert_eq!(fixture.item("alpha", "answered").0, "done");
    assert_eq!(attempt_outcomes(&fixture), ["transient", "transient", "transient", "done"]);
    // quota test reads the two streams apart as the pass does.
    let apart = |exit_code: &str, stderr: &std::path::Path, stdout: Vec<u8>| {
        let args = ["quota", "test", "--profile", "gemini", "--exit-code", exit_code, "--json", "--stderr"];
        let mut all = args.to_vec();
        all.push(stderr.to_str().unwrap());
        fixture.drainctl(&all).stdin(stdout).run()
    };
    std::fs::write(fixture.path("err.txt"), format!("[ERROR] {error}\n")).unwrap();
    let verdict = apart("0", &fixture.path("err.txt"), b"Partial answer, cut\n".to_vec());
    verdict.assert_code(0);
    assert_eq!(verdict.json()["outcome"], "no_answer", "{}", verdict.stdout);
    // A wait the client announces on stderr counts with the streams apart too.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real-clients/gemini-text-capacity-exhausted");
    let capacity = apart("1", &dir.join("stderr"), std::fs::read(dir.join("stdout")).unwrap());
    assert_eq!(capacity.json()["outcome"], "quota_hit", "{}", capacity.stdout);
}

#[test]
fn a_server_error_matched_in_a_dumped_field_is_recorded_with_the_line_saying_what_went_wrong() {
    // gemini-cli 0.61.0 `-o json` on a 500: the error object it prints ends with
    // `"code": 500`, where the server error is seen. Before: `server error: "code": 500`.
    let fixture = Fixture::new(&config("2m", ""), NOW);
    let stderr = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/real-clients/gemini-json-server-500/stderr"),
    )
    .unwrap();
    fixture.enqueue(
        "alpha",
        &[("a1".into(), json!({ "steps": [{ "err": stderr.trim_end() }, { "exit": 1 }] }))],
    );
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    let (state, _, error) = fixture.item("alpha", "a1");
    let error = error.unwrap_or_default();
    assert_eq!(state, "pending", "{error}");
    assert!(error.starts_with("server error: ") && error.contains("Internal error encountered"), "{error}");
}

#[test]
fn a_failed_client_is_recorded_with_the_line_saying_what_went_wrong() {
    let fixture = Fixture::new(&config("2m", "max_attempts = 1\n"), NOW);
    // claude -p prints its errors on stdout; gemini-cli ends with an object dump and
    // `[object Object]`; codex with its token count.
    // (Not a refused key: that parks the group, docs/rate-limits.md, "Access refused".)
    let claude = json!({ "steps": [
        { "out": "Error: Input must be provided either through stdin or as a prompt argument when using --print" },
        { "exit": 1 },
    ] });
    let gemini_dump = "Error when talking to Gemini API Full report available at: /tmp/gemini-client-error.json ApiError: Request contains an invalid argument.\n    at classifyGoogleError (file:///x/chunk-JDPZ4CE3.js:307307:12)\n    at async main (file:///x/gemini-3HFX2LNT.js:17627:5) {\n  cause: {\n    code: 400,\n    message: 'Request contains an invalid argument.',\n    details: [ [Object] ]\n  },\n  status: 400\n}\nAn unexpected critical error occurred:[object Object]";
    let gemini = json!({ "steps": [{ "err": gemini_dump }, { "exit": 1 }] });
    let codex = json!({ "steps": [
        { "err": "ERROR: Your input exceeds the context window of this model. Please adjust your input and try again.\ntokens used\n0" },
        { "exit": 1 },
    ] });
    // Behind docs/worker-contract.md's summarise.sh: its checkpoint on stderr before
    // claude's error on stdout (before: the checkpoint was the error).
    let wrapped = json!({ "steps": [
        { "err": "::checkpoint:: summarising /data/doc-1.txt" },
        { "out": "Error: Input must be provided either through stdin or as a prompt argument when using --print" },
        { "exit": 1 },
    ] });
    fixture.enqueue(
        "alpha",
        &[
            ("claude".into(), claude),
            ("gemini".into(), gemini),
            ("codex".into(), codex),
            ("wrapped".into(), wrapped),
        ],
    );
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    let expected = [
        ("claude", "exit code 1: Error: Input must be provided either through stdin or as a prompt argument when using --print"),
        // The dumped field by its text (before: `message: '…',`).
        ("gemini", "exit code 1: Request contains an invalid argument."),
        ("codex", "exit code 1: ERROR: Your input exceeds the context window of this model. Please adjust your input and try again."),
        ("wrapped", "exit code 1: Error: Input must be provided either through stdin or as a prompt argument when using --print"),
    ];
    for (key, error) in expected {
        assert_eq!(fixture.item("alpha", key), ("dead".to_string(), 1, Some(error.to_string())), "{key}");
    }
    let dead: Vec<String> =
        fixture.column("SELECT data->>'error' FROM events WHERE kind = 'item_dead_lettered' ORDER BY id");
    assert_eq!(dead, expected.map(|(_, error)| error.to_string()));
}
