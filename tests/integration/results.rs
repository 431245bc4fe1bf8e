//! Results out and cost in (docs/results.md): usage and cost recorded per attempt from
//! what the real clients print (tests/fixtures/usage/), their sums in `status`, `runs
//! show` and the metrics, the cost budgets, and `export`.

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

/// The `stdout` of a usage fixture, as the client printed it.
fn fixture_output(name: &str) -> String {
    let path = format!("{}/tests/fixtures/usage/{name}/stdout", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The `meta.toml` of a usage fixture.
fn fixture_meta(name: &str) -> toml::Table {
    let path = format!("{}/tests/fixtures/usage/{name}/meta.toml", env!("CARGO_MANIFEST_DIR"));
    toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A payload whose worker prints the fixture's output (without its last newline, which
/// `out` adds back) and exits with `exit`.
fn printing(name: &str, exit: i32) -> serde_json::Value {
    let text = fixture_output(name);
    json!({ "steps": [{ "out": text.strip_suffix('\n').unwrap_or(&text) }, { "exit": exit }] })
}

/// A decimal such as `0.03617865` in units of 10⁻¹² dollars, to add costs exactly.
fn picodollars(text: &str) -> i128 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let fraction = format!("{fraction:0<12}");
    whole.parse::<i128>().unwrap() * 1_000_000_000_000 + fraction[..12].parse::<i128>().unwrap()
}

fn config(extra: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\n\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"chair\"\nmax_attempts = 1\nmax_items_per_pass = 100\n{extra}\n\
         [[drain]]\nname = \"plain\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"chair\"\n"
    )
}

const REPORTING: [(&str, i32); 12] = [
    ("real-claude-json-success", 0),
    ("real-claude-stream-json-success", 0),
    ("real-codex-json-success", 0),
    ("real-gemini-json-success", 0),
    ("real-gemini-stream-json-success", 0),
    ("gemini-stream-json-thoughts", 0),
    ("claude-json-success", 0),
    ("claude-json-error-max-turns", 1),
    ("claude-stream-json-success", 0),
    ("claude-json-verbose", 0),
    ("codex-exec-json-success", 0),
    ("gemini-json-success", 0),
];

#[test]
fn usage_of_every_client_is_recorded_per_attempt_and_summed_exactly() {
    let fixture = Fixture::new(&config(""), NOW);
    let mut items: Vec<(String, serde_json::Value)> =
        REPORTING.iter().map(|(name, exit)| (name.to_string(), printing(name, *exit))).collect();
    items.push(("claude-text".into(), printing("claude-text", 0)));
    // Last: a quota hit stops the pass, and it costs what it reports too.
    items.push(("claude-json-usage-limit".into(), printing("claude-json-usage-limit", 1)));
    fixture.enqueue("docs", &items);
    fixture.enqueue("plain", &[("p1".into(), json!({ "plain": 1 }))]);
    // First the drain whose worker reports nothing: the quota hit below backs the group off.
    fixture.drainctl(&["drain", "plain"]).run().assert_code(0);
    assert_eq!(fixture.item("plain", "p1").0, "done");
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).run();
    pass.assert_code(0);
    assert_eq!(pass.json()["status"], "rate_limited", "{}", pass.stdout);

    // Each attempt carries exactly what its client reported; NULL where it reported nothing.
    let mut client = fixture.client();
    let columns = [
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "turns",
        "api_ms",
    ];
    let mut expected_cost: i128 = 0;
    let mut expected_tokens = [0i64; 4];
    for name in REPORTING.iter().map(|(name, _)| *name).chain(["claude-text", "claude-json-usage-limit"]) {
        let meta = fixture_meta(name);
        let row = client
            .query_one(
                "SELECT a.cost_usd::text, a.input_tokens, a.output_tokens, a.cache_read_tokens,
                        a.cache_write_tokens, a.turns::int8, a.api_ms, a.outcome
                   FROM attempts a JOIN items i ON i.id = a.item_id WHERE i.key = $1",
                &[&name],
            )
            .unwrap();
        let cost: Option<String> = row.get(0);
        let wanted_cost = meta.get("cost_usd").map(|value| value.to_string());
        assert_eq!(
            cost.as_deref().map(picodollars),
            wanted_cost.as_deref().map(picodollars),
            "{name}: cost_usd"
        );
        expected_cost += cost.as_deref().map(picodollars).unwrap_or(0);
        for (index, column) in columns.iter().enumerate().skip(1) {
            let value: Option<i64> = row.get(index);
            assert_eq!(value, meta.get(*column).and_then(toml::Value::as_integer), "{name}: {column}");
            if index <= 4 {
                expected_tokens[index - 1] += value.unwrap_or(0);
            }
        }
        let outcome: String = row.get(7);
        let wanted_outcome = match name {
            "claude-json-error-max-turns" => "failure",
            "claude-json-usage-limit" => "quota_hit",
            _ => "done",
        };
        assert_eq!(outcome, wanted_outcome, "{name}");
    }
    // The exact sum of the reported costs: the real clients' 0.00034 twice, then
    // 0.03617865 + 0.1204731 + 0.0290421 + 0.0112308.
    assert_eq!(expected_cost, picodollars("0.19760465"));
    let stored: String = client.query_one("SELECT sum(cost_usd)::text FROM attempts", &[]).unwrap().get(0);
    assert_eq!(picodollars(&stored), expected_cost);
    let expected_usd = 0.19760465;

    // status: the drain's and the quota group's sums; the drain without usage shows none.
    let status = fixture.drainctl(&["status", "--json"]).run();
    status.assert_code(0);
    let status = status.json();
    let drain = |name: &str| {
        status["drains"].as_array().unwrap().iter().find(|d| d["drain"] == name).unwrap().clone()
    };
    let docs = drain("docs");
    for window in ["last_24h", "last_7d"] {
        let sums = &docs["usage"][window];
        assert_eq!(sums["cost_usd"].as_f64(), Some(expected_usd), "{window}: {sums}");
        assert_eq!(
            sums["attempts"],
            REPORTING.len() + 1,
            "{window}: the reporting attempts and the quota hit"
        );
        assert_eq!(sums["input_tokens"], expected_tokens[0]);
        assert_eq!(sums["output_tokens"], expected_tokens[1]);
        assert_eq!(sums["cache_read_tokens"], expected_tokens[2]);
        assert_eq!(sums["cache_write_tokens"], expected_tokens[3]);
    }
    assert_eq!(drain("plain")["usage"], json!({ "last_24h": null, "last_7d": null }));
    let group =
        status["quota_groups"].as_array().unwrap().iter().find(|g| g["quota_group"] == "chair").unwrap();
    assert_eq!(group["usage"]["last_24h"]["cost_usd"].as_f64(), Some(expected_usd));
    let human = fixture.drainctl(&["status"]).run();
    assert!(
        human.stdout.contains("usage reported by the workers\n  docs: last 24h $0.1976 · "),
        "{}",
        human.stdout
    );
    assert!(!human.stdout.contains("  plain: last"), "a drain without usage shows nothing: {}", human.stdout);

    // runs show: the run's own sums; the run of the drain without usage has none.
    let run_of = |drain: &str| -> i64 {
        fixture.client().query_one("SELECT id FROM runs WHERE drain = $1", &[&drain]).unwrap().get(0)
    };
    let shown = fixture.drainctl(&["runs", "show", &run_of("docs").to_string(), "--json"]).run();
    shown.assert_code(0);
    assert_eq!(shown.json()["usage"]["cost_usd"].as_f64(), Some(expected_usd));
    assert_eq!(shown.json()["usage"]["output_tokens"], expected_tokens[1]);
    let plain = fixture.drainctl(&["runs", "show", &run_of("plain").to_string(), "--json"]).run();
    assert_eq!(plain.json()["usage"], serde_json::Value::Null);
    let plain_human = fixture.drainctl(&["runs", "show", &run_of("plain").to_string()]).run();
    assert!(!plain_human.stdout.contains("usage"), "{}", plain_human.stdout);

    // items show: the item's own attempts; an item whose worker reported nothing has none.
    let item = fixture.drainctl(&["items", "show", "docs", "claude-json-success", "--json"]).run();
    item.assert_code(0);
    let limited = fixture_meta("claude-json-success");
    assert_eq!(
        item.json()["usage"]["cost_usd"].as_f64(),
        limited.get("cost_usd").and_then(toml::Value::as_float),
        "{}",
        item.stdout
    );
    assert_eq!(item.json()["usage"]["attempts"], 1);
    let item_human = fixture.drainctl(&["items", "show", "docs", "claude-json-success"]).run();
    assert!(item_human.stdout.contains("\nusage       $0.0362 · "), "{}", item_human.stdout);
    let plain_item = fixture.drainctl(&["items", "show", "plain", "p1", "--json"]).run();
    assert_eq!(plain_item.json()["usage"], serde_json::Value::Null);

    // Metrics: the counters the trigger kept; no series for the drain without usage.
    let metrics = fixture.drainctl(&["metrics"]).run();
    metrics.assert_code(0);
    let sample = |line: &str| -> f64 {
        let found = metrics
            .stdout
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line} in {}", metrics.stdout));
        found.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    assert_eq!(
        sample("drainctl_cost_usd_total{drain=\"docs\"}"),
        0.197605,
        "micro-dollars, rounded per attempt"
    );
    assert_eq!(sample("drainctl_tokens_total{drain=\"docs\",kind=\"input\"}"), expected_tokens[0] as f64);
    assert_eq!(
        sample("drainctl_tokens_total{drain=\"docs\",kind=\"cache_write\"}"),
        expected_tokens[3] as f64
    );
    assert!(!metrics.stdout.contains("drainctl_cost_usd_total{drain=\"plain\"}"), "{}", metrics.stdout);
    assert!(!metrics.stdout.contains("drainctl_tokens_total{drain=\"plain\""), "{}", metrics.stdout);
}

#[test]
fn max_cost_per_pass_stops_the_pass_with_budget_and_an_event() {
    let fixture = Fixture::new(&config("max_cost_per_pass = 0.05"), NOW);
    let items: Vec<(String, serde_json::Value)> =
        (0..4).map(|i| (format!("t{i}"), printing("claude-json-success", 0))).collect();
    fixture.enqueue("docs", &items);
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).run();
    pass.assert_code(0);
    let json = pass.json();
    // 0.0362 after the first item, 0.0724 after the second: no third item starts.
    assert_eq!(json["status"], "budget", "{json}");
    assert_eq!(json["items_done"], 2);
    assert_eq!(json["note"], "max_cost_per_pass ($0.0500) reached: this pass's attempts cost $0.0724");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 2);
    let event = fixture.drainctl(&["events", "--kind", "budget_reached", "--json"]).run().json();
    let event = &event["events"][0];
    assert_eq!(event["drain"], "docs");
    assert_eq!(event["data"]["budget"], "max_cost_per_pass");
    assert_eq!(event["data"]["max_usd"].as_f64(), Some(0.05));
    let spent = event["data"]["spent_usd"].as_f64().unwrap();
    assert!((spent - 0.0723573).abs() < 1e-9, "{spent}");
    // The next pass has a budget of its own.
    let next = fixture.drainctl(&["drain", "docs", "--json"]).run().json();
    assert_eq!(next["items_done"], 2, "{next}");
}

#[test]
fn max_cost_per_pass_counts_ten_dimes_as_a_dollar() {
    let fixture = Fixture::new(&config("max_cost_per_pass = 1.0"), NOW);
    let dime = json!({ "steps": [{ "out": r#"{"type":"result","total_cost_usd":0.1,"usage":{"input_tokens":1}}"# }] });
    let items: Vec<(String, serde_json::Value)> =
        (0..15).map(|i| (format!("t{i:02}"), dime.clone())).collect();
    fixture.enqueue("docs", &items);
    let json = fixture.drainctl(&["drain", "docs", "--json"]).run().json();
    assert_eq!((json["status"].as_str(), json["items_done"].as_i64()), (Some("budget"), Some(10)), "{json}");
    assert_eq!(json["note"], "max_cost_per_pass ($1.00) reached: this pass's attempts cost $1.00");
}

#[test]
fn an_absurd_usage_report_is_counted_at_its_ceiling_and_the_item_is_done_once() {
    // A cost or token count too large for the totals used to fail the attempt's record:
    // the item went back and its worker ran (and was billed) again on every pass.
    let absurd = r#"{"type":"result","total_cost_usd":1e300,"usage":{"input_tokens":9223372036854775807}}"#;
    let fixture = Fixture::new(&config(""), NOW);
    let item = json!({ "steps": [{ "out": absurd }] });
    fixture.enqueue("docs", &[("a".into(), item.clone()), ("b".into(), item)]);
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).run();
    pass.assert_code(0);
    assert_eq!(pass.json()["items_done"], 2, "{}", pass.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts"), 2);
    let costs: Vec<String> = fixture.column("SELECT cost_usd::text FROM attempts");
    assert_eq!(costs, vec!["1000000".to_string(), "1000000".to_string()]);
    assert_eq!(fixture.count("SELECT sum(input_tokens)::bigint FROM attempts"), 2_000_000_000_000);
    let status = fixture.drainctl(&["status", "--json"]).run();
    status.assert_code(0);
}

/// Six $0.036 items of `docs` with `max_cost_per_day = 0.1`, at 22:30 UTC (23:30 in
/// Warsaw, where the budget's day ends in half an hour), and the pass that ran them.
fn a_pass_that_spends_the_daily_budget_at_2330_in_warsaw() -> (Fixture, serde_json::Value) {
    let text = config("max_cost_per_day = 0.1").replace("timezone = \"UTC\"", "timezone = \"Europe/Warsaw\"");
    // 22:30 UTC is 23:30 in Warsaw: the budget's day ends in half an hour.
    let fixture = Fixture::new(&text, "2026-11-27T22:30:00Z");
    let items: Vec<(String, serde_json::Value)> =
        (0..6).map(|i| (format!("t{i}"), printing("claude-json-success", 0))).collect();
    fixture.enqueue("docs", &items);
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).run().json();
    (fixture, pass)
}

#[test]
fn items_discarded_today_still_count_against_the_daily_budget() {
    let (fixture, pass) = a_pass_that_spends_the_daily_budget_at_2330_in_warsaw();
    assert_eq!(pass["items_done"], 3);
    // The three done items are discarded: their $0.1085 was spent all the same. Before:
    // their attempts went with them, and the next pass spent the budget again.
    for key in ["t0", "t1", "t2"] {
        fixture.drainctl(&["discard", "docs", "--key", key]).run().assert_code(0);
    }
    let again = fixture.drainctl(&["drain", "docs", "--json"]).run().json();
    assert_eq!(
        (again["status"].as_str(), again["items_done"].as_i64()),
        (Some("budget"), Some(0)),
        "{again}"
    );
    assert!(again["note"].as_str().unwrap().contains("the drain's attempts cost $0.1085 since"), "{again}");
    // The next budget day starts afresh.
    fixture.set_now("2026-11-27T23:30:00Z");
    let tomorrow = fixture.drainctl(&["drain", "docs", "--json"]).run().json();
    assert_eq!(tomorrow["items_done"], 3, "{tomorrow}");
}

#[test]
fn max_cost_per_day_stops_passes_and_supervise_until_midnight_in_the_timezone() {
    let (fixture, pass) = a_pass_that_spends_the_daily_budget_at_2330_in_warsaw();
    // 0.0362, 0.0724, 0.1085: the third item reaches the budget.
    assert_eq!(pass["status"], "budget", "{pass}");
    assert_eq!(pass["items_done"], 3);
    assert_eq!(
        pass["note"],
        "max_cost_per_day ($0.1000) reached: the drain's attempts cost $0.1085 since Fri 2026-11-27 00:00 CET; \
         items start again from Sat 2026-11-28 00:00 CET"
    );
    // Another pass starts nothing.
    let again = fixture.drainctl(&["drain", "docs", "--json"]).run().json();
    assert_eq!((again["status"].as_str(), again["items_done"].as_i64()), (Some("budget"), Some(0)));

    // supervise does not start the drain, says until when, and records one event a day.
    fixture.client().execute("DELETE FROM events WHERE kind = 'budget_reached'", &[]).unwrap();
    for _ in 0..2 {
        let supervise = fixture.drainctl(&["supervise", "--json"]).run();
        supervise.assert_code(0);
        let json = supervise.json();
        let decision =
            json["decisions"].as_array().unwrap().iter().find(|d| d["drain"] == "docs").unwrap().clone();
        assert_eq!(decision["action"], "skip", "{decision}");
        assert_eq!(
            decision["reason"],
            "max_cost_per_day ($0.1000) reached: the drain's attempts cost $0.1085 since Fri 2026-11-27 00:00 CET; \
             starts again from Sat 2026-11-28 00:00 CET"
        );
    }
    assert_eq!(
        fixture.count("SELECT count(*) FROM events WHERE kind = 'budget_reached' AND drain = 'docs'"),
        1
    );
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    let docs = &status["drains"][0];
    assert_eq!(docs["cost_today_usd"].as_f64(), Some(0.10853595));
    assert_eq!(docs["budget_day_ends_at"], "2026-11-27T23:00:00Z");
    let spent = "daily budget spent ($0.1085 of $0.1000) until Sat 2026-11-28 00:00 CET";
    // The page says it, as status's notes do. Before: "3 left: <1m of running", as if it were about to run.
    let page = fixture.drainctl(&["report"]).run().stdout;
    assert!(page.contains(&format!("{spent}: no pass starts it before then")), "{page}");
    // Waiting for tomorrow's budget, not able to work: before, 1 all the rest of the day,
    // and the stalled-drain alert paged for a drain that spent its budget in the morning.
    let metrics = fixture.drainctl(&["metrics"]).run().stdout;
    assert!(metrics.contains("drainctl_can_work{drain=\"docs\"} 0\n"), "{metrics}");

    // Midnight in Warsaw: a new day, a new budget.
    fixture.set_now("2026-11-27T23:00:01Z");
    let metrics = fixture.drainctl(&["metrics"]).run().stdout;
    assert!(metrics.contains("drainctl_can_work{drain=\"docs\"} 1\n"), "{metrics}");
    let supervise = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run().json();
    let decision =
        supervise["decisions"].as_array().unwrap().iter().find(|d| d["drain"] == "docs").unwrap().clone();
    assert_eq!(decision["action"], "start", "{decision}");
    let next = fixture.drainctl(&["drain", "docs", "--json"]).run().json();
    assert_eq!(next["items_done"], 3, "{next}");
}

#[test]
fn a_burst_of_a_drain_whose_daily_budget_is_spent_says_it_waits_for_the_next_day() {
    let (fixture, pass) = a_pass_that_spends_the_daily_budget_at_2330_in_warsaw();
    assert_eq!(pass["status"], "budget", "{pass}");
    // A burst that ends before the budget's day: no pass starts in it.
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+20m"]).run();
    on.assert_code(0);
    // Before, it said "the next supervise pass starts it if idle", and supervise skipped it.
    assert!(!on.stdout.contains("starts it if idle"), "{}", on.stdout);
    assert!(
        on.stdout.contains(
            "its daily cost budget (max_cost_per_day) is spent until Sat 2026-11-28 00:00 CET (in 30m), \
             after the burst's end: no pass starts during this burst"
        ),
        "{}",
        on.stdout
    );
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    let forecast = &status["drains"][0]["forecast"];
    assert_eq!(forecast["finishes_before_burst_deadline"], false, "{forecast}");
    assert_eq!(forecast["burst_held_by"], "daily_budget");
    assert_eq!(forecast["burst_held_until"], "2026-11-27T23:00:00Z");
    // A longer one starts after midnight.
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h", "--json"]).run().json();
    assert_eq!(on["daily_budget_spent_until"], "2026-11-27T23:00:00Z");
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run();
    assert!(
        on.stdout.contains(
            "spent until Sat 2026-11-28 00:00 CET (in 30m): the first supervise pass after that starts it"
        ),
        "{}",
        on.stdout
    );
    // 23 items left at $0.0362 each, $0.10 a day: 3 a day from midnight, 8 budget days,
    // past a two-day burst however quick the items are. Before: "finishes".
    let more: Vec<(String, serde_json::Value)> =
        (0..20).map(|i| (format!("m{i}"), printing("claude-json-success", 0))).collect();
    fixture.enqueue("docs", &more);
    fixture.drainctl(&["burst", "on", "docs", "--until", "+2d"]).run().assert_code(0);
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    let forecast = &status["drains"][0]["forecast"];
    assert_eq!(forecast["finishes_before_burst_deadline"], false, "{forecast}");
    assert_eq!(forecast["burst_budget_days"], 8, "{forecast}");
    let human = fixture.drainctl(&["status"]).run().stdout;
    assert!(
        human.contains("burst needs 8 budget days, 1d 23h left to work: will not finish before the deadline"),
        "{human}"
    );
    let metrics = fixture.drainctl(&["metrics"]).run().stdout;
    assert!(metrics.contains("drainctl_burst_will_finish{drain=\"docs\"} 0"), "{metrics}");
}

#[test]
fn a_cost_budget_holds_during_a_burst() {
    let fixture = Fixture::new(&config("max_cost_per_pass = 0.05"), NOW);
    let items: Vec<(String, serde_json::Value)> =
        (0..4).map(|i| (format!("t{i}"), printing("claude-json-success", 0))).collect();
    fixture.enqueue("docs", &items);
    fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run().assert_code(0);
    let pass = fixture.drainctl(&["drain", "docs", "--trigger", "burst", "--json"]).run().json();
    assert_eq!((pass["status"].as_str(), pass["items_done"].as_i64()), (Some("budget"), Some(2)), "{pass}");
}

#[test]
fn a_bad_cost_budget_is_a_configuration_error() {
    for (value, shown) in [("0", "0"), ("-2.5", "-2.5"), ("1e12", "1000000000000")] {
        let fixture = Fixture::new(&config(&format!("max_cost_per_day = {value}")), NOW);
        let result = fixture.drainctl(&["status"]).run();
        result.assert_code(78);
        assert!(
            result.stderr.contains(&format!(
                "drain \"docs\": max_cost_per_day: {shown} is out of range; give US dollars above 0"
            )),
            "{}",
            result.stderr
        );
    }
}

/// The result bytes of seeded item `n`: UTF-8 text of several shapes, bytes that are not
/// UTF-8, an empty result, and none.
fn seeded_result(n: i64) -> Option<Vec<u8>> {
    match n % 7 {
        0 => Some(vec![0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, b'\n', (n % 251) as u8]),
        1 => Some(format!("line one of {n}\nline \"two\", with a comma\r\n").into_bytes()),
        2 => Some(format!("résumé ✓ {n}\u{0}nul inside").into_bytes()),
        3 => Some(Vec::new()),
        4 => None,
        5 => Some((0..300).map(|i| ((i * 7 + n) % 256) as u8).collect()),
        _ => Some(format!(" padded {n} ").into_bytes()),
    }
}

/// 10,000 items of drain `docs` straight in the database (a third pending, the rest done
/// or dead), and usage on the attempts of a few.
fn seed_items(fixture: &Fixture, count: i64) {
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut client = fixture.client();
    let mut transaction = client.transaction().unwrap();
    let insert = transaction
        .prepare(
            "INSERT INTO items (drain, key, payload, state, attempts, available_at, enqueued_at, updated_at,
                                finished_at, last_error, result)
             VALUES ('docs', $1, $2, $3, $4, '2026-11-27T09:00:00Z', '2026-11-27T09:00:00Z', '2026-11-27T09:00:00Z',
                     $5, $6, $7)",
        )
        .unwrap();
    for n in 0..count {
        let (state, finished): (&str, Option<chrono::DateTime<chrono::Utc>>) = match n % 3 {
            0 => ("pending", None),
            1 => ("done", Some(chrono::DateTime::parse_from_rfc3339("2026-11-27T09:30:00Z").unwrap().into())),
            _ => ("dead", Some(chrono::DateTime::parse_from_rfc3339("2026-11-26T09:30:00Z").unwrap().into())),
        };
        let result = if state == "pending" { None } else { seeded_result(n) };
        let error = (state == "dead").then(|| format!("exit code {}", n % 5));
        let payload = json!({ "n": n, "text": format!("payload {n}, \"quoted\"\nnext line ✓") });
        transaction
            .execute(
                &insert,
                &[&format!("key-{n:05},x"), &payload, &state, &((n % 4) as i32), &finished, &error, &result],
            )
            .unwrap();
    }
    transaction
        .batch_execute(
            "INSERT INTO attempts (item_id, run_id, attempt, started_at, finished_at, outcome)
             SELECT id, 0, 1, '2026-11-27T09:10:00Z', '2026-11-27T09:20:00Z', 'failure' FROM items WHERE key LIKE 'key-0000_,x';
             UPDATE attempts SET cost_usd = 0.03617865, input_tokens = 12, output_tokens = 642, usage_at = finished_at;",
        )
        .unwrap();
    transaction.commit().unwrap();
}

/// What the database holds of every item of `docs`: id → (key, state, payload, result,
/// attempts, finished_at).
fn stored_items(fixture: &Fixture) -> std::collections::BTreeMap<i64, serde_json::Value> {
    fixture
        .client()
        .query(
            "SELECT id, key, state, payload, result, attempts,
                    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
               FROM items WHERE drain = 'docs' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| {
            let result: Option<Vec<u8>> = row.get(4);
            let value = json!({
                "key": row.get::<_, String>(1),
                "state": row.get::<_, String>(2),
                "payload": row.get::<_, serde_json::Value>(3),
                "result": result.map(|bytes| bytes.iter().map(|b| json!(b)).collect::<Vec<_>>()),
                "attempts": row.get::<_, i32>(5),
                "finished_at": row.get::<_, Option<String>>(6),
            });
            (row.get(0), value)
        })
        .collect()
}

/// The same view of one exported JSON line, its result decoded.
fn decoded_line(line: &serde_json::Value) -> (i64, serde_json::Value) {
    use base64::Engine;
    let result = match (line["result_encoding"].as_str(), line["result"].as_str()) {
        (Some("utf-8"), Some(text)) => Some(text.as_bytes().to_vec()),
        (Some("base64"), Some(text)) => Some(base64::engine::general_purpose::STANDARD.decode(text).unwrap()),
        (None, None) => None,
        other => panic!("bad result encoding {other:?} in {line}"),
    };
    if let Some(bytes) = &result {
        assert_eq!(line["result_bytes"].as_u64(), Some(bytes.len() as u64), "{line}");
    }
    let value = json!({
        "key": line["key"],
        "state": line["state"],
        "payload": line["payload"],
        "result": result.map(|bytes| bytes.iter().map(|b| json!(b)).collect::<Vec<_>>()),
        "attempts": line["attempts"],
        "finished_at": line["finished_at"],
    });
    (line["id"].as_i64().unwrap(), value)
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

#[test]
fn export_round_trips_ten_thousand_items_byte_for_byte_and_resumes_exactly() {
    let fixture = Fixture::new(&config(""), NOW);
    seed_items(&fixture, 10_000);
    let stored = stored_items(&fixture);
    assert_eq!(stored.len(), 10_000);

    let export = fixture.drainctl(&["export", "docs"]).run();
    export.assert_code(0);
    let lines = json_lines(&export.stdout);
    crate::operator::assert_documented("drainctl export NAME", &lines[0]);
    let exported: std::collections::BTreeMap<i64, serde_json::Value> =
        lines.iter().map(decoded_line).collect();
    assert_eq!(exported.len(), 10_000);
    assert!(exported == stored, "the export differs from the database");
    let ids: Vec<i64> = lines.iter().map(|line| line["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "in id order");
    assert!(lines.iter().any(|line| line["result_encoding"] == "base64"));
    let last_id = *ids.last().unwrap();
    assert!(export.stderr.contains(&format!("--after-id {last_id} resumes after them")), "{}", export.stderr);

    // Per-item usage: the sums of the item's attempts; null for an item without any.
    let with_usage = lines.iter().find(|line| line["key"] == "key-00001,x").unwrap();
    assert_eq!(with_usage["cost_usd"].as_f64(), Some(0.03617865));
    assert_eq!(
        (with_usage["input_tokens"].as_i64(), with_usage["output_tokens"].as_i64()),
        (Some(12), Some(642))
    );
    let without = lines.iter().find(|line| line["key"] == "key-09999,x").unwrap();
    assert_eq!((without["cost_usd"].is_null(), without["input_tokens"].is_null()), (true, true), "{without}");

    // Resume after the 4,321st item: exactly the rest, nothing twice.
    let cut = ids[4320].to_string();
    let rest = fixture.drainctl(&["export", "docs", "--after-id", &cut]).run();
    rest.assert_code(0);
    let rest_ids: Vec<i64> =
        json_lines(&rest.stdout).iter().map(|line| line["id"].as_i64().unwrap()).collect();
    assert_eq!(rest_ids, ids[4321..]);
    let none = fixture.drainctl(&["export", "docs", "--after-id", &last_id.to_string()]).run();
    none.assert_code(0);
    assert_eq!(none.stdout, "");
    assert!(none.stderr.contains(&format!("(none after id {last_id})")), "{}", none.stderr);
    // Nothing matched a filter: no id is blamed (before: "none after id 0").
    let unmatched = fixture.drainctl(&["export", "docs", "--state", "running"]).run();
    unmatched.assert_code(0);
    assert!(
        unmatched.stderr.contains("exported 0 items of drain docs (none matched)"),
        "{}",
        unmatched.stderr
    );

    // Filters: a state, and the items finished since an instant or a duration ago.
    let done = json_lines(&fixture.drainctl(&["export", "docs", "--state", "done"]).run().stdout);
    assert_eq!(done.len(), 3333);
    assert!(done.iter().all(|line| line["state"] == "done"));
    let since = fixture.drainctl(&["export", "docs", "--since", "2026-11-27T00:00:00Z"]).run();
    assert_eq!(json_lines(&since.stdout).len(), 3333, "only the done items finished on the 27th");
    let last_two_days = fixture.drainctl(&["export", "docs", "--since", "2d"]).run();
    assert_eq!(json_lines(&last_two_days.stdout).len(), 6666, "done and dead; pending items never finished");
}

/// A small RFC 4180 reader: records of fields, quoted fields may hold anything.
fn read_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && record.is_empty(), "the CSV ends with a line break");
    records
}

#[test]
fn export_as_csv_carries_the_same_items() {
    use base64::Engine;
    let fixture = Fixture::new(&config(""), NOW);
    seed_items(&fixture, 700);
    let stored = stored_items(&fixture);
    let export = fixture.drainctl(&["export", "docs", "--format", "csv"]).run();
    export.assert_code(0);
    // `-o -` is stdout too. Before: a file named `-` in the working folder.
    let dash = fixture.drainctl(&["export", "docs", "--format", "csv", "-o", "-"]).run();
    dash.assert_code(0);
    assert_eq!(dash.stdout, export.stdout);
    assert!(!std::path::Path::new("-").exists());
    let records = read_csv(&export.stdout);
    let header = &records[0];
    assert_eq!(header.join(","), "id,key,state,attempts,enqueued_at,finished_at,last_error,payload,result_encoding,result_bytes,result,cost_usd,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens");
    assert_eq!(records.len(), 701);
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    // A text cell that starts with `'` lost exactly that quote (docs/json.md): the seeded
    // item 250's result is base64 that starts with `+`.
    let quoted = records[1..].iter().filter(|r| r[column("result")].starts_with("'+")).count();
    assert_eq!(quoted, 1, "one result cell starts with '+");
    for record in &records[1..] {
        let text = |name: &str| record[column(name)].strip_prefix('\'').unwrap_or(&record[column(name)]);
        let id: i64 = record[column("id")].parse().unwrap();
        let result = match text("result_encoding") {
            "utf-8" => Some(text("result").as_bytes().to_vec()),
            "base64" => Some(base64::engine::general_purpose::STANDARD.decode(text("result")).unwrap()),
            "" => None,
            other => panic!("encoding {other}"),
        };
        let finished = text("finished_at");
        let value = json!({
            "key": text("key"),
            "state": text("state"),
            "payload": serde_json::from_str::<serde_json::Value>(text("payload")).unwrap(),
            "result": result.map(|bytes| bytes.iter().map(|b| json!(b)).collect::<Vec<_>>()),
            "attempts": record[column("attempts")].parse::<i32>().unwrap(),
            "finished_at": if finished.is_empty() { serde_json::Value::Null } else { json!(finished) },
        });
        assert_eq!(stored[&id], value, "item {id}");
    }
    let with_usage = records.iter().find(|r| r[column("key")] == "key-00001,x").unwrap();
    assert_eq!(with_usage[column("cost_usd")], "0.03617865");
    assert_eq!(with_usage[column("cache_read_tokens")], "", "not reported: empty, not 0");
}

#[test]
fn export_reads_a_payload_over_64_kib_on_its_own_however_well_it_compresses() {
    let fixture = Fixture::new(&config(""), NOW);
    // `{"b": "y" × n}` is 17 + n bytes as jsonb: 65,536 (64 KiB) and one byte more.
    let mut items: Vec<(String, serde_json::Value)> = vec![
        ("small".into(), json!({ "n": 1 })),
        ("at-limit".into(), json!({ "b": "y".repeat(65_519) })),
        ("over-limit".into(), json!({ "b": "y".repeat(65_520) })),
    ];
    for i in 0..3 {
        items.push((format!("fat-{i}"), json!({ "blob": "x".repeat(1 << 20), "i": i })));
    }
    fixture.enqueue("docs", &items);
    let mut client = fixture.client();
    // Results count by their length: 64 KiB comes with its row, one byte more does not.
    client
        .batch_execute(
            "UPDATE items SET result = convert_to(repeat('r', 65536), 'UTF8') WHERE key = 'at-limit';
             UPDATE items SET result = convert_to(repeat('r', 65537), 'UTF8') WHERE key = 'small';",
        )
        .unwrap();
    let stored: Vec<(String, i64, i32, i32)> = client
        .query(
            "SELECT key, id, pg_column_size(payload), pg_column_size(payload::text::jsonb) FROM items ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let real_sizes: Vec<i32> = stored.iter().map(|(_, _, _, real)| *real).collect();
    assert_eq!(&real_sizes[1..3], [65_536, 65_537]);
    assert!(real_sizes[3..].iter().all(|&real| real > 1 << 20));
    // As stored, every large payload is compressed to well under 64 KiB.
    assert!(stored[1..].iter().all(|(_, _, size, _)| *size < 16 * 1024), "{stored:?}");

    let export = fixture.drainctl(&["-vv", "export", "docs"]).run();
    export.assert_code(0);
    let read_alone: Vec<&str> =
        export.stderr.lines().filter(|line| line.contains("read on its own")).collect();
    let id = |key: &str| stored.iter().find(|(k, ..)| k == key).unwrap().1;
    let mut expected =
        vec![format!("drainctl: debug: export: item {}: result over 64 KiB, read on its own", id("small"))];
    for key in ["over-limit", "fat-0", "fat-1", "fat-2"] {
        expected
            .push(format!("drainctl: debug: export: item {}: payload over 64 KiB, read on its own", id(key)));
    }
    // Before: only the result; the payloads came 128 to a fetch, 1 MiB each.
    assert_eq!(read_alone, expected, "{}", export.stderr);
    let lines = json_lines(&export.stdout);
    assert_eq!(lines.len(), items.len());
    for (line, (key, payload)) in lines.iter().zip(&items) {
        assert_eq!((&line["key"], &line["payload"]), (&json!(key), payload));
    }
    assert_eq!(lines[0]["result_bytes"], 65_537);
    assert_eq!(lines[1]["result_bytes"], 65_536);
}

/// Claude's json of an attempt that read and wrote its cache and reported nothing else.
const CACHE_ONLY: &str = r#"{"type":"result","result":"ok","usage":{"cache_read_input_tokens":500,"cache_creation_input_tokens":40}}"#;

#[test]
fn export_sums_the_usage_of_attempts_that_reported_only_cache_tokens() {
    let config = "[defaults]\ntimezone = \"UTC\"\n\n\
                  [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nmax_attempts = 2\n\
                  retry_backoff = { base = \"1m\", max = \"1m\" }\n";
    let fixture = Fixture::new(config, NOW);
    let failing_with_cost = r#"{"type":"result","result":"no","total_cost_usd":0.25,"usage":{"input_tokens":12,"output_tokens":30}}"#;
    fixture.enqueue(
        "docs",
        &[
            ("cache-only".into(), json!({ "steps": [{ "out": CACHE_ONLY }] })),
            // Its first attempt fails reporting a cost and tokens; its second reports
            // only cache tokens.
            (
                "both".into(),
                json!({ "steps": [{ "if_env": {
                    "var": "DRAIN_ATTEMPT",
                    "equals": "1",
                    "then": [{ "out": failing_with_cost }, { "exit": 1 }],
                    "else": [{ "out": CACHE_ONLY }],
                } }] }),
            ),
        ],
    );
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    fixture.set_now("2026-11-27T10:05:00Z");
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    assert_eq!(fixture.item("docs", "both").0, "done");

    let lines = json_lines(&fixture.drainctl(&["export", "docs"]).run().stdout);
    let line = |key: &str| lines.iter().find(|line| line["key"] == key).unwrap().clone();
    let usage = |line: &serde_json::Value| {
        json!([
            line["cost_usd"],
            line["input_tokens"],
            line["output_tokens"],
            line["cache_read_tokens"],
            line["cache_write_tokens"]
        ])
    };
    // Before: null everywhere, and the second attempt's cache tokens left out of the sums.
    assert_eq!(usage(&line("cache-only")), json!([null, null, null, 500, 40]));
    assert_eq!(usage(&line("both")), json!([0.25, 12, 30, 500, 40]));
    // The same sums as `items show` (docs/results.md, "Where it shows").
    for key in ["cache-only", "both"] {
        let shown = fixture.drainctl(&["items", "show", "docs", key, "--json"]).run();
        shown.assert_code(0);
        let sums = &shown.json()["usage"];
        assert_eq!(usage(sums), usage(&line(key)), "{key}: {}", shown.stdout);
    }

    let csv = read_csv(&fixture.drainctl(&["export", "docs", "--format", "csv"]).run().stdout);
    let column = |name: &str| csv[0].iter().position(|h| h == name).unwrap();
    let record = csv.iter().find(|r| r[column("key")] == "cache-only").unwrap();
    let cells: Vec<&str> =
        ["cost_usd", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]
            .iter()
            .map(|name| record[column(name)].as_str())
            .collect();
    assert_eq!(cells, ["", "", "", "500", "40"]);
}

#[test]
fn a_resumed_csv_export_appends_without_a_second_header() {
    let fixture = Fixture::new(&config(""), NOW);
    seed_items(&fixture, 30);
    let whole = fixture.drainctl(&["export", "docs", "--format", "csv"]).run();
    whole.assert_code(0);
    let records = read_csv(&whole.stdout);
    let cut = records[12][0].clone();
    let next: i64 = cut.parse::<i64>().unwrap() + 1;
    let head = &whole.stdout[..whole.stdout.find(&format!("\r\n{next},")).unwrap() + 2];
    let rest =
        fixture.drainctl(&["export", "docs", "--format", "csv", "--no-header", "--after-id", &cut]).run();
    rest.assert_code(0);
    assert_eq!(format!("{head}{}", rest.stdout), whole.stdout, "the two parts make the whole export");
    let refused = fixture.drainctl(&["export", "docs", "--no-header"]).run();
    refused.assert_code(64);
    assert!(refused.stderr.contains("--no-header applies to --format csv only"), "{}", refused.stderr);
}

#[test]
fn export_as_csv_writes_no_cell_a_spreadsheet_would_run_as_a_formula() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    for (key, result) in [("=cmd|' /C calc'!A0", "=HYPERLINK(\"http://evil\",\"x\")"), ("+1+1", "@SUM(1+1)")]
    {
        fixture.drainctl(&["enqueue", "docs", "--key", key, "--payload=-1"]).run().assert_code(0);
        fixture
            .client()
            .execute(
                "UPDATE items SET state = 'done', result = $2, finished_at = enqueued_at WHERE key = $1",
                &[&key, &result.as_bytes()],
            )
            .unwrap();
    }
    let export = fixture.drainctl(&["export", "docs", "--format", "csv"]).run();
    export.assert_code(0);
    let records = read_csv(&export.stdout);
    let cells: Vec<[&str; 3]> =
        records[1..].iter().map(|r| [r[1].as_str(), r[7].as_str(), r[10].as_str()]).collect();
    assert_eq!(
        cells,
        [
            ["'=cmd|' /C calc'!A0", "'-1", "'=HYPERLINK(\"http://evil\",\"x\")"],
            ["'+1+1", "'-1", "'@SUM(1+1)"]
        ]
    );
    // JSON lines carry the exact values.
    let lines = json_lines(&fixture.drainctl(&["export", "docs"]).run().stdout);
    assert_eq!(
        (lines[0]["key"].as_str(), lines[1]["result"].as_str()),
        (Some("=cmd|' /C calc'!A0"), Some("@SUM(1+1)"))
    );
}

#[test]
fn export_to_a_terminal_shows_what_a_worker_printed_escaped() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    // A worker's answer that would clear the screen, retitle the window and overwrite the
    // line above with a forged one; an error with a C1 control and a reversed key.
    let (key, result, error) =
        ("doc-\u{202e}fdp.exe", "ok\x1b[2J\x1b]0;PWNED\x07\x1b[1A\x1b[2Kfake line", "bad \u{9b}2J");
    fixture.drainctl(&["enqueue", "docs", "--key", key, "--payload={}"]).run().assert_code(0);
    fixture
        .client()
        .execute(
            "UPDATE items SET state = 'done', result = $2, last_error = $3, finished_at = enqueued_at WHERE key = $1",
            &[&key, &result.as_bytes(), &error],
        )
        .unwrap();
    let unsafe_shown =
        |text: &str| text.chars().any(|c| c == '\x1b' || c == '\u{9b}' || c == '\u{202e}' || c == '\x07');
    // Before: the raw escape sequences, which the terminal ran.
    let csv = fixture.drainctl(&["export", "docs", "--format", "csv"]).run_with_terminal_stdout();
    csv.assert_code(0);
    assert!(!unsafe_shown(&csv.stdout), "{:?}", csv.stdout);
    assert!(csv.stdout.contains("ok\\u{1b}[2J\\u{1b}]0;PWNED\\u{7}"), "{:?}", csv.stdout);
    assert!(
        csv.stdout.contains("doc-\\u{202e}fdp.exe") && csv.stdout.contains("bad \\u{9b}2J"),
        "{:?}",
        csv.stdout
    );
    // JSON lines on a terminal escape them as JSON: the same values.
    let jsonl = fixture.drainctl(&["export", "docs"]).run_with_terminal_stdout();
    jsonl.assert_code(0);
    assert!(!unsafe_shown(&jsonl.stdout), "{:?}", jsonl.stdout);
    let line: serde_json::Value = serde_json::from_str(jsonl.stdout.trim_end()).unwrap();
    assert_eq!(
        (line["key"].as_str(), line["result"].as_str(), line["last_error"].as_str()),
        (Some(key), Some(result), Some(error))
    );
    // Into a pipe or a file, the exact bytes.
    let piped = fixture.drainctl(&["export", "docs", "--format", "csv"]).run();
    assert!(piped.stdout.contains(result) && piped.stdout.contains(key), "{:?}", piped.stdout);
}

/// The id of the last complete line of (the beginning of) an export, and where it ends.
fn last_complete_line(export: &[u8]) -> (i64, usize) {
    let end = export.iter().rposition(|&b| b == b'\n').expect("a complete line") + 1;
    let start = export[..end - 1].iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
    let line: serde_json::Value = serde_json::from_slice(&export[start..end]).unwrap();
    (line["id"].as_i64().unwrap(), end)
}

/// The id an interrupted export names in `stopped after item id ID (--after-id ID resumes there)`.
fn named_resume_id(stderr: &str) -> i64 {
    let (_, after) = stderr.split_once("stopped after item id ").unwrap_or_else(|| panic!("{stderr}"));
    after.split_once(' ').unwrap().0.parse().unwrap()
}

#[test]
fn export_names_the_last_item_the_output_accepted_when_a_write_fails() {
    let fixture = Fixture::new(&config(""), NOW);
    seed_items(&fixture, 10_000);
    let whole = fixture.drainctl(&["export", "docs"]).run();
    whole.assert_code(0);
    assert!(whole.stdout.len() > 3_000_000, "{} bytes", whole.stdout.len());

    // Stdout is a file that takes 1,000,000 bytes, then fails (as a full disk does), in
    // the middle of a line: the named id is exactly that of its last complete line, and
    // resuming after it gives exactly the rest.
    let path = fixture.path("cut.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    let cut = fixture.drainctl(&["export", "docs"]).run_with_stdout_limited_to(file, 1_000_000);
    cut.assert_code(75);
    let written = std::fs::read(&path).unwrap();
    assert_eq!(written.len(), 1_000_000);
    assert_eq!(written, whole.stdout.as_bytes()[..1_000_000]);
    let (last, end) = last_complete_line(&written);
    assert!(end < 1_000_000, "the limit cuts a line");
    assert!(
        cut.stderr.contains(&format!("stopped after item id {last} (--after-id {last} resumes there)")),
        "{}",
        cut.stderr
    );
    let rest = fixture.drainctl(&["export", "docs", "--after-id", &last.to_string()]).run();
    rest.assert_code(0);
    assert_eq!(
        [&written[..end], rest.stdout.as_bytes()].concat(),
        whole.stdout.as_bytes(),
        "nothing lost, nothing twice"
    );

    // Stdout is a pipe whose reader reads 1,000,000 bytes and closes it. What the pipe
    // held unread is lost to the reader and cannot be known to drainctl: the named id is
    // at or after the reader's last complete line, and at most the pipe's capacity past
    // what the reader read (not the 256 KiB buffer in front of it as well).
    let mut child = fixture.drainctl(&["export", "docs"]).spawn();
    let mut stdout = child.stdout.take().unwrap();
    let capacity = {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_GETPIPE_SZ) }
    };
    assert!(capacity > 0);
    let mut received = vec![0; 1_000_000];
    std::io::Read::read_exact(&mut stdout, &mut received).unwrap();
    drop(stdout);
    let closed = finished(child.wait_with_output().unwrap());
    closed.assert_code(75);
    assert!(closed.stderr.contains("Broken pipe"), "{}", closed.stderr);
    let named = named_resume_id(&closed.stderr);
    let (read, _) = last_complete_line(&received);
    let start = whole.stdout.find(&format!("{{\"id\":{named},")).unwrap();
    let named_end = start + whole.stdout[start..].find('\n').unwrap() + 1;
    assert!(named >= read, "named {named}, read up to {read}");
    assert!(
        named_end <= received.len() + capacity as usize,
        "named {named} ends at byte {named_end}, past the {} read and the pipe's {capacity}",
        received.len()
    );
}

#[test]
fn sigterm_ends_an_export_blocked_on_a_reader_that_stopped_reading() {
    let fixture = Fixture::new(&config(""), NOW);
    seed_items(&fixture, 10_000);
    // Nobody reads the pipe: once it and the buffer are full, the export blocks in a write.
    let mut child = fixture.drainctl(&["export", "docs"]).spawn();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    wait_until("the export to block writing to the full pipe", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|wchan| wchan.contains("pipe_write"))
    });
    signal(pid, libc::SIGTERM);
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("SIGTERM did not end an export blocked on its output");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let interrupted = finished(child.wait_with_output().unwrap());
    drop(stdout);
    interrupted.assert_code(75);
    assert!(interrupted.stderr.contains("interrupted by SIGTERM"), "{}", interrupted.stderr);
    assert!(interrupted.stderr.contains("--after-id"), "{}", interrupted.stderr);
    assert_eq!(interrupted.stderr.trim().lines().count(), 1, "{}", interrupted.stderr);
}

#[test]
fn an_export_waits_for_a_reader_that_pauses_longer_than_a_session_may_idle() {
    let fixture = Fixture::new(&config(""), NOW);
    seed_items(&fixture, 10_000);
    let whole = fixture.drainctl(&["export", "docs"]).run();
    whole.assert_code(0);
    // Every session of this export may idle in a transaction for 300 ms (60 s as
    // released); its reader pauses five times as long with the pipe full.
    let mut child =
        fixture.drainctl(&["export", "docs"]).env("DRAINCTL_IDLE_IN_TRANSACTION_TIMEOUT_MS", "300").spawn();
    let mut stdout = child.stdout.take().unwrap();
    let pid = child.id();
    wait_until("the export to block writing to the full pipe", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|wchan| wchan.contains("pipe_write"))
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut received = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut received).unwrap();
    let paused = finished(child.wait_with_output().unwrap());
    paused.assert_code(0);
    assert_eq!(received, whole.stdout, "the paused reader got every line");
}

#[test]
fn export_to_a_file_is_atomic_and_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new(&config(""), NOW);
    seed_items(&fixture, 10_000);
    let target = fixture.path("out/export.jsonl");
    std::fs::create_dir(fixture.path("out")).unwrap();
    std::fs::write(&target, "the previous export\n").unwrap();
    let stdout = fixture.drainctl(&["export", "docs"]).run().stdout;

    // Interrupted while it writes: the previous file is untouched and nothing is left over.
    let folder = fixture.path("out");
    let temporaries = || -> Vec<String> {
        std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "export.jsonl")
            .collect()
    };
    let child = fixture.drainctl(&["export", "docs", "--output", target.to_str().unwrap()]).spawn();
    wait_until("the temporary file", std::time::Duration::from_secs(20), || !temporaries().is_empty());
    let temporary = folder.join(&temporaries()[0]);
    assert_eq!(std::fs::metadata(&temporary).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o600), 0o600);
    signal(child.id(), libc::SIGTERM);
    let interrupted = finished(child.wait_with_output().unwrap());
    eprintln!("interrupted export: exit {}", interrupted.code);
    if interrupted.code == 0 {
        // The export won the race: it must then be complete.
        assert_eq!(std::fs::read_to_string(&target).unwrap(), stdout);
    } else {
        interrupted.assert_code(75);
        assert!(interrupted.stderr.contains("interrupted by SIGTERM"), "{}", interrupted.stderr);
        assert!(interrupted.stderr.contains("is left as it was"), "{}", interrupted.stderr);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "the previous export\n");
    }
    assert_eq!(temporaries(), Vec::<String>::new(), "no temporary file left behind");

    // Complete: the same bytes as stdout, owner-only, and a summary that names the last id.
    let done = fixture.drainctl(&["export", "docs", "-o", target.to_str().unwrap()]).run();
    done.assert_code(0);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), stdout);
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(done.stdout.starts_with("exported 10000 items of drain docs to "), "{}", done.stdout);
    assert_eq!(temporaries(), Vec::<String>::new());
}

#[test]
fn export_refuses_bad_arguments_with_one_line() {
    let fixture = Fixture::new(&config(""), NOW);
    for (args, code, message) in [
        (&["export", "nope"][..], 64, "unknown drain \"nope\""),
        (&["export", "docs", "--state", "finished"], 64, "invalid value 'finished' for '--state <STATE>'"),
        (
            &["export", "docs", "--since", "last week"],
            64,
            "--since: \"last week\" is neither a duration such as 7d",
        ),
        (&["export", "docs", "--after-id", "x"], 64, "invalid value 'x' for '--after-id <ID>'"),
        (
            &["export", "docs", "--output", "/nonexistent-folder/x.jsonl"],
            64,
            "its folder /nonexistent-folder does not exist",
        ),
    ] {
        let result = fixture.drainctl(args).run();
        result.assert_code(code);
        assert!(result.stderr.contains(message), "{args:?}: {}", result.stderr);
        assert_eq!(result.stdout, "", "{args:?}");
    }
    // A name the file system cannot take is refused before anything is read, not by the
    // rename after the whole export was written.
    let long = fixture.path(&format!("{}.jsonl", "b".repeat(250)));
    let result = fixture.drainctl(&["export", "docs", "-o", long.to_str().unwrap()]).run();
    result.assert_code(64);
    assert!(
        result
            .stderr
            .contains("its file name is 256 bytes, more than the 255 its folder's file system allows"),
        "{}",
        result.stderr
    );
    let broken = Fixture::new("[[drain]]\nname = \"docs\"\ncommand = []\n", NOW);
    let result = broken.drainctl(&["export", "docs"]).run();
    result.assert_code(78);
    assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
}
