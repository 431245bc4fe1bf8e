//! The operations page (docs/results.md#the-operations-page): `report --html` and
//! `supervise` with `report_html` write one owner-only, self-contained HTML file that shows
//! every drain, escapes what the database holds, and draws one chart point per datum.
//! `scripts/report-test` renders it in Chromium.

use std::os::unix::fs::PermissionsExt;

use regex::Regex;
use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";
/// A point every 2 hours for 7 days, and one now.
const BURNDOWN_POINTS: usize = 7 * 12 + 1;
const HOSTILE: &str = "<script>alert(\"x\")</script> & 'quotes' <img src=x onerror=alert(1)>";

/// Drains `docs` (quota group `chair`) and `idle-drain`; `group` declares `chair`, if at all.
fn config_with(defaults: &str, group: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n{defaults}\n{group}\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"chair\"\nmax_items_per_pass = 2\n\n\
         [[drain]]\nname = \"idle-drain\"\ncommand = [\"FAKE_WORKER\"]\n"
    )
}

fn config(defaults: &str) -> String {
    config_with(defaults, "")
}

fn ok(key: &str) -> (String, serde_json::Value) {
    (key.to_string(), json!({ "steps": [{ "out": format!("result of {key}") }] }))
}

/// The `data-point` elements of the `<svg data-chart="CHART">` of the drain's section.
fn chart_points(page: &str, drain: &str, chart: &str) -> Vec<String> {
    let section = section_of(page, drain);
    let Some(start) = section.find(&format!("<svg data-chart=\"{chart}\"")) else {
        return Vec::new();
    };
    let svg = &section[start..start + section[start..].find("</svg>").expect("the chart ends")];
    let point = Regex::new(r"<(circle|rect)[^>]*\sdata-point[\s>][^>]*>").unwrap();
    point.find_iter(svg).map(|found| found.as_str().to_string()).collect()
}

fn section_of<'a>(page: &'a str, drain: &str) -> &'a str {
    let start =
        page.find(&format!("data-drain=\"{drain}\"")).unwrap_or_else(|| panic!("no section of {drain}"));
    let end = page[start..].find("</section>").unwrap();
    &page[start..start + end]
}

fn attribute<'a>(element: &'a str, name: &str) -> &'a str {
    let start = element.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("no {name} in {element}"))
        + name.len()
        + 3;
    &element[start..start + element[start..].find('"').unwrap()]
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn report_html_writes_an_owner_only_self_contained_page_that_escapes_what_the_database_holds() {
    let accounts =
        "[[quota_group]]\nname = \"chair\"\naccounts = [{ name = \"team\" }, { name = \"personal\" }]\n";
    let fixture = Fixture::new(&config_with("", accounts), NOW);
    fixture.enqueue("docs", &[ok("a"), ok("b"), ok("c")]);
    fixture.drainctl(&["pause", "docs", "--note", HOSTILE]).run().assert_code(0);
    fixture
        .drainctl(&["burst", "on", "idle-drain", "--until", "+6h", "--note", HOSTILE])
        .run()
        .assert_code(0);
    let path = fixture.path("ops.html");
    // An old page, readable by others, is replaced by an owner-only one.
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let result = fixture.drainctl(&["report", "--html", path.to_str().unwrap()]).run();
    result.assert_code(0);
    assert_eq!(result.stdout.trim(), format!("wrote the operations page of 2 drains to {}", path.display()));
    assert_eq!(mode_of(&path), 0o600);
    let names: Vec<String> = std::fs::read_dir(fixture.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains("ops.html"))
        .collect();
    assert_eq!(names, ["ops.html"], "no temporary file is left");
    let page = std::fs::read_to_string(&path).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    for drain in ["docs", "idle-drain"] {
        assert!(page.contains(&format!(
            "<section class=\"card drain\" id=\"drain-{drain}\" data-drain=\"{drain}\">"
        )));
    }
    assert!(page.contains("data-state=\"paused\""), "the paused drain says so");
    // The quota groups with their accounts: the first is the one the next item runs on.
    for (group, account, state) in
        [("chair", "team", "in-use"), ("chair", "personal", "available"), ("idle-drain", "", "available")]
    {
        let row = format!("<tr data-group=\"{group}\" data-account=\"{account}\">");
        let start = page.find(&row).unwrap_or_else(|| panic!("no row {row}"));
        let end = start + page[start..].find("</tr>").unwrap();
        assert!(
            page[start..end].contains(&format!("class=\"state state-{state}\"")),
            "{}",
            &page[start..end]
        );
    }
    // The hostile notes are text, never markup.
    assert!(!page.contains("<script"), "a script element: {page}");
    assert!(!page.contains("<img"), "an image element");
    assert!(page
        .contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39; &lt;img src=x"));
    // Nothing outside the file: no script, style sheet, font or image from anywhere.
    let external =
        Regex::new(r#"(?i)src\s*=\s*["']?\s*(https?:|//)|href\s*=\s*["']?\s*(https?:|//)|@import|url\("#)
            .unwrap();
    assert!(external.find(&page).is_none(), "an external reference: {:?}", external.find(&page));
    assert!(
        page.contains("content=\"default-src 'none'; style-src 'unsafe-inline'\""),
        "the page may load nothing"
    );
    // Without a FILE, `--html` writes to report_html, which is not set here.
    let result = fixture.drainctl(&["report", "--html"]).run();
    result.assert_code(64);
    assert!(result.stderr.contains("[defaults] report_html, which is not set"), "{}", result.stderr);
}

#[test]
fn every_chart_has_one_point_per_datum_of_the_database() {
    let fixture = Fixture::new(&config(""), "2026-11-24T10:00:00Z");
    fixture.enqueue("docs", &[ok("a"), ok("b"), ok("c"), ok("d")]);
    fixture.set_now("2026-11-25T10:00:00Z");
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    // A quota hit a day ago: one point on the group's timeline, with its backoff.
    fixture.set_now("2026-11-26T09:59:00Z");
    let hit = json!({ "steps": [{ "err": "Claude usage limit reached. Your limit will reset at 2pm (UTC)." }, { "exit": 1 }] });
    fixture.enqueue("docs", &[("hit".to_string(), hit)]);
    fixture.client().execute("UPDATE items SET available_at = '2026-11-01' WHERE key = 'hit'", &[]).unwrap();
    fixture.set_now("2026-11-26T10:00:00Z");
    fixture.drainctl(&["drain", "docs"]).run();
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 1);
    // What the workers reported the two done attempts cost, on two days; the hit reported nothing.
    fixture
        .client()
        .batch_execute(
            "UPDATE attempts SET cost_usd = 0.25, usage_at = finished_at WHERE outcome = 'done';
             UPDATE attempts SET finished_at = '2026-11-23T12:00:00Z', usage_at = '2026-11-23T12:00:00Z'
              WHERE id = (SELECT min(id) FROM attempts WHERE outcome = 'done');",
        )
        .unwrap();
    fixture.set_now(NOW);
    let path = fixture.path("ops.html");
    fixture.drainctl(&["report", "--html", path.to_str().unwrap()]).run().assert_code(0);
    let page = std::fs::read_to_string(&path).unwrap();

    let backlog = chart_points(&page, "docs", "burndown");
    assert_eq!(backlog.len(), BURNDOWN_POINTS);
    let value_at = |at: &str| {
        let point = backlog
            .iter()
            .find(|point| attribute(point, "data-at") == at)
            .unwrap_or_else(|| panic!("no point at {at}"));
        attribute(point, "data-value").parse::<i64>().unwrap()
    };
    // Nothing before the first enqueue, four waiting until the pass took two, then the hit
    // joined them, and it is still waiting (a quota hit costs no attempt).
    assert_eq!(value_at("2026-11-20T10:00:00+00:00"), 0);
    assert_eq!(value_at("2026-11-24T10:00:00+00:00"), 4);
    assert_eq!(value_at("2026-11-25T08:00:00+00:00"), 4);
    assert_eq!(value_at("2026-11-25T10:00:00+00:00"), 2);
    assert_eq!(value_at("2026-11-26T10:00:00+00:00"), 3);
    assert_eq!(value_at("2026-11-27T10:00:00+00:00"), 3);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 3);

    let hits = chart_points(&page, "docs", "timeline");
    assert_eq!(hits.len(), 1);
    assert_eq!(attribute(&hits[0], "data-at"), "2026-11-26T10:00:00+00:00");
    assert_eq!(attribute(&hits[0], "data-kind"), "backoff_set");

    let days = chart_points(&page, "docs", "cost");
    let days: Vec<(&str, &str)> =
        days.iter().map(|day| (attribute(day, "data-day"), attribute(day, "data-usd"))).collect();
    assert_eq!(days, [("2026-11-23", "0.25"), ("2026-11-25", "0.25")]);
    // The page's days are local calendar days, not status's 168 hours: it says which.
    // Four places below a dollar, as `status` says it (before: `$0.50`, status `$0.5000`).
    assert!(section_of(&page, "docs").contains("$0.5000 in the 7 days since Sat 21 Nov"), "{page}");

    // A drain without history has a flat burn-down, and shows no hit and no cost at all.
    let idle = section_of(&page, "idle-drain");
    assert_eq!(chart_points(&page, "idle-drain", "burndown").len(), BURNDOWN_POINTS);
    assert!(chart_points(&page, "idle-drain", "burndown")
        .iter()
        .all(|point| attribute(point, "data-value") == "0"));
    assert!(idle.contains("data-no-chart=\"timeline\""), "{idle}");
    assert!(idle.contains("data-no-chart=\"cost\">No usage reported"), "{idle}");
    assert!(!idle.contains("data-chart=\"cost\""), "never a guessed cost: {idle}");
}

#[test]
fn a_drain_whose_workers_report_tokens_but_no_cost_says_so() {
    let fixture = Fixture::new(&config(""), "2026-11-26T10:00:00Z");
    fixture.enqueue("docs", &[ok("a"), ok("b")]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    // What codex and gemini report: tokens, never a price.
    fixture
        .client()
        .batch_execute(
            "UPDATE attempts SET input_tokens = 1200, cache_read_tokens = 34, output_tokens = 500,
                    usage_at = finished_at",
        )
        .unwrap();
    fixture.set_now(NOW);
    let page = fixture.drainctl(&["report"]).run().stdout;
    let docs = section_of(&page, "docs");
    // Before, it said "No usage reported by the workers", although status showed the tokens.
    assert!(!docs.contains("No usage reported"), "{docs}");
    assert!(docs.contains("No cost reported by the workers (tokens only: 3,468 tokens in the "), "{docs}");
    assert!(docs.contains("data-tokens=\"3468\""), "{docs}");
    assert!(!docs.contains("data-chart=\"cost\""), "never a guessed cost: {docs}");
    assert!(section_of(&page, "idle-drain").contains("No usage reported"));
}

#[test]
fn the_weekly_cost_total_is_added_up_exactly() {
    let fixture = Fixture::new(&config(""), "2026-11-26T10:00:00Z");
    let items: Vec<_> = (0..9).map(|i| ok(&format!("k{i}"))).collect();
    fixture.enqueue("docs", &items);
    for _ in 0..5 {
        fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    }
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'done'"), 9);
    // $0.40 each, spread over the seven days: $0.80 on the last two, $0.40 on the others.
    fixture
        .client()
        .batch_execute(
            "UPDATE attempts a SET cost_usd = 0.40,
                    usage_at = '2026-11-27T01:00:00Z'::timestamptz - (r.rank % 7) * interval '1 day'
               FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS rank FROM attempts) r
              WHERE r.id = a.id",
        )
        .unwrap();
    fixture.set_now(NOW);
    let page = fixture.drainctl(&["report"]).run().stdout;
    let docs = section_of(&page, "docs");
    assert_eq!(chart_points(&page, "docs", "cost").len(), 7);
    // Before, the days were added as floats: 3.5999999999999996.
    assert!(docs.contains("data-cost-total=\"3.6\">$3.60 in the 7 days since Sat 21 Nov"), "{docs}");
}

#[test]
fn a_cost_is_rounded_half_up_and_status_says_how_many_attempts_reported_one() {
    // Before: $2.67 for an exact 2.675 (a float's 2.67499999…), and `status` said "over 3
    // attempts" beside the dollars where the page said "over 2".
    let fixture = Fixture::new(&config(""), "2026-11-27T10:00:00Z");
    fixture.enqueue("docs", &[ok("k0"), ok("k1"), ok("k2")]);
    for _ in 0..2 {
        fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    }
    fixture
        .client()
        .batch_execute(
            "UPDATE attempts a SET cost_usd = r.cost, input_tokens = 45, usage_at = finished_at
               FROM (SELECT id, (ARRAY[0.1, 2.675, NULL])[row_number() OVER (ORDER BY id)] AS cost
                       FROM attempts) r
              WHERE r.id = a.id",
        )
        .unwrap();
    fixture.set_now(NOW);
    let status = fixture.drainctl(&["status"]).run().stdout;
    assert!(status.contains("$2.78 · 135 tokens (135 in) over 3 attempts (2 with a cost)"), "{status}");
    let page = fixture.drainctl(&["report"]).run().stdout;
    let docs = section_of(&page, "docs");
    assert!(docs.contains("data-cost-total=\"2.775\">$2.78 in the 7 days"), "{docs}");
    assert!(docs.contains("$2.78 over 2 attempts that reported a cost"), "{docs}");
}

#[test]
fn the_burndown_draws_the_forecast_line_to_the_burst_deadline() {
    let fixture = Fixture::new(&config(""), "2026-11-27T06:00:00Z");
    let items: Vec<_> = (0..6).map(|i| ok(&format!("k{i}"))).collect();
    fixture.enqueue("docs", &items);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    // The pass took an hour: 2 items per hour, 4 left, so 2 hours of work.
    fixture.client().execute("UPDATE runs SET started_at = finished_at - interval '1 hour'", &[]).unwrap();
    fixture.set_now(NOW);
    fixture.drainctl(&["burst", "on", "docs", "--until", "2026-11-27T18:00:00Z"]).run().assert_code(0);
    let path = fixture.path("ops.html");
    fixture.drainctl(&["report", "--html", path.to_str().unwrap()]).run().assert_code(0);
    let page = std::fs::read_to_string(&path).unwrap();
    let section = section_of(&page, "docs");
    assert_eq!(section.matches(" data-deadline ").count(), 1, "{section}");
    let forecast = Regex::new(r"<polyline[^>]*\sdata-forecast\s[^>]*>").unwrap();
    let line = forecast.find(section).expect("a forecast line").as_str();
    assert_eq!(attribute(line, "data-until"), "2026-11-27T12:00:00+00:00", "empty 2 hours from now");
    assert_eq!(attribute(line, "data-left"), "0");
    assert_eq!(attribute(line, "data-starts"), "2026-11-27T10:00:00+00:00", "nothing holds it: from now");
    assert!(section.contains("finishes before the deadline"), "{section}");
    // Without a burst there is no deadline and no forecast line.
    assert!(!section_of(&page, "idle-drain").contains("data-forecast"));
}

#[test]
fn every_supervise_pass_rewrites_report_html_with_its_heartbeat() {
    let fixture = Fixture::new(&config("report_html = \"page.html\"\n"), NOW);
    let path = fixture.path("page.html");
    fixture.drainctl(&["supervise", "--dry-run"]).run().assert_code(0);
    assert!(!path.exists(), "a dry run changes nothing");
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    assert_eq!(mode_of(&path), 0o600);
    let page = std::fs::read_to_string(&path).unwrap();
    assert!(page.contains("data-now=\"2026-11-27T10:00:00+00:00\""), "{page}");
    assert!(page.contains("data-late=\"false\">last supervise pass now<"), "{page}");
    fixture.enqueue("idle-drain", &[ok("x")]);
    fixture.drainctl(&["pause", "idle-drain"]).run().assert_code(0);
    fixture.set_now("2026-11-27T10:15:00Z");
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    let page = std::fs::read_to_string(&path).unwrap();
    assert!(page.contains("data-now=\"2026-11-27T10:15:00+00:00\""), "the page is rewritten");
    assert!(section_of(&page, "idle-drain").contains("1 pending, 0 running"), "{page}");
    // `report --html` without FILE writes the same file.
    fixture.set_now("2026-11-27T10:20:00Z");
    fixture.drainctl(&["report", "--html"]).run().assert_code(0);
    let page = std::fs::read_to_string(&path).unwrap();
    assert!(page.contains("last supervise pass 5m ago"), "{page}");
}

#[test]
fn supervise_that_cannot_write_report_html_exits_78_and_records_why() {
    let fixture = Fixture::new(
        &config("report_html = \"TMPDIR/missing/page.html\"\nmetrics_textfile = \"TMPDIR/drainctl.prom\"\n"),
        NOW,
    );
    let result = fixture.drainctl(&["supervise"]).run();
    result.assert_code(78);
    let folder = fixture.path("missing");
    assert!(
        result.stderr.contains(&format!("its folder {} does not exist", folder.display())),
        "{}",
        result.stderr
    );
    let messages: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'supervise_error'");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].starts_with("could not write report_html"), "{messages:?}");
    // The pass itself was recorded: the heartbeat does not depend on the page.
    assert_eq!(fixture.count("SELECT count(*) FROM supervisor_passes WHERE status = 'done'"), 1);
    // The textfile the alerts read counts the failure (before: 0, written before the page).
    let textfile = std::fs::read_to_string(fixture.path("drainctl.prom")).unwrap();
    assert!(textfile.contains("\ndrainctl_supervisor_last_pass_errors 1\n"), "{textfile}");
}

#[test]
fn a_textfile_and_a_page_in_a_missing_folder_are_each_recorded_once() {
    // Before: the textfile's failure was recorded again when it was written after the page.
    let fixture = Fixture::new(
        &config("report_html = \"TMPDIR/missing/page.html\"\nmetrics_textfile = \"TMPDIR/missing/drainctl.prom\"\n"),
        NOW,
    );
    fixture.drainctl(&["supervise"]).run().assert_code(78);
    let messages: Vec<String> =
        fixture.column("SELECT message FROM events WHERE kind = 'supervise_error' ORDER BY id");
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].starts_with("could not write metrics_textfile"), "{messages:?}");
    assert!(messages[1].starts_with("could not write report_html"), "{messages:?}");
}

#[test]
fn doctor_refuses_a_link_or_a_directory_at_the_output_paths_as_supervise_would() {
    let fixture = Fixture::new(
        &config("report_html = \"TMPDIR/page.html\"\nmetrics_textfile = \"TMPDIR/drainctl.prom\"\n"),
        NOW,
    );
    let check = |result: &Finished, key: &str| -> (String, String) {
        let checks = result.json()["checks"].as_array().unwrap().clone();
        let found = checks.iter().find(|check| check["check"] == key).unwrap();
        (found["status"].as_str().unwrap().to_string(), found["message"].as_str().unwrap().to_string())
    };
    let (page, textfile) = (fixture.path("page.html"), fixture.path("drainctl.prom"));
    std::os::unix::fs::symlink(fixture.path("elsewhere.html"), &page).unwrap();
    std::fs::create_dir(&textfile).unwrap();
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    doctor.assert_code(78);
    let (status, message) = check(&doctor, "report_html");
    assert_eq!(status, "fail");
    assert!(message.contains("is a symbolic link"), "{message}");
    let (status, message) = check(&doctor, "metrics_textfile");
    assert_eq!(status, "fail");
    assert!(message.contains("is a directory"), "{message}");
    fixture.drainctl(&["supervise"]).run().assert_code(78);
    // Both fixed: doctor and supervise agree again.
    std::fs::remove_file(&page).unwrap();
    std::fs::remove_dir(&textfile).unwrap();
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    assert_eq!(check(&doctor, "report_html").0, "ok");
    assert_eq!(check(&doctor, "metrics_textfile").0, "ok");
    fixture.drainctl(&["supervise"]).run().assert_code(0);
}

#[test]
fn doctor_says_a_log_dir_that_is_a_file_is_a_file() {
    let fixture = Fixture::new(&config(""), NOW);
    std::fs::write(fixture.path("logs"), "").unwrap();
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    doctor.assert_code(78);
    let checks = doctor.json()["checks"].as_array().unwrap().clone();
    let found = checks.iter().find(|check| check["check"] == "log_dir").unwrap();
    assert_eq!(
        found["message"],
        format!(
            "log_dir {} is a file, not a folder; remove it, or change log_dir to a folder",
            fixture.path("logs").display()
        )
    );
}

#[test]
fn doctor_fails_when_the_folder_of_report_html_is_missing_as_supervise_would() {
    let fixture = Fixture::new(&config("report_html = \"TMPDIR/missing/page.html\"\n"), NOW);
    let report_check = |result: &Finished| -> Option<(String, String)> {
        let checks = result.json()["checks"].as_array().unwrap().clone();
        checks.iter().find(|check| check["check"] == "report_html").map(|check| {
            (check["status"].as_str().unwrap().to_string(), check["message"].as_str().unwrap().to_string())
        })
    };
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    doctor.assert_code(78);
    let folder = fixture.path("missing");
    let page = folder.join("page.html");
    assert_eq!(
        report_check(&doctor),
        Some((
            "fail".to_string(),
            format!(
                "report_html {}: its folder {} does not exist; create it or change report_html",
                page.display(),
                folder.display()
            )
        ))
    );
    fixture.drainctl(&["supervise"]).run().assert_code(78);
    std::fs::create_dir(&folder).unwrap();
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    assert_eq!(
        report_check(&doctor),
        Some(("ok".to_string(), format!("report_html {} can be written", page.display())))
    );
    fixture.drainctl(&["supervise"]).run().assert_code(0);
}

#[test]
fn an_output_with_the_longest_valid_name_is_written() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.enqueue("docs", &[ok("a")]);
    for (args, extension) in [
        (vec!["export", "docs", "--output"], "jsonl"),
        (vec!["report", "--html"], "html"),
        (vec!["metrics", "--textfile"], "prom"),
    ] {
        // 245 bytes: a valid name, whose temporary sibling would not fit uncut.
        let name = format!("{}.{extension}", "n".repeat(244 - extension.len()));
        assert_eq!(name.len(), 245);
        let path = fixture.path(&name);
        let mut all = args.clone();
        all.push(path.to_str().unwrap());
        let result = fixture.drainctl(&all).run();
        result.assert_code(0);
        assert!(path.is_file(), "{name}");
    }
    // Nothing was left behind.
    let names: Vec<String> = std::fs::read_dir(fixture.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_page_or_metrics_cut_short_on_stdout_is_a_failure_not_a_warning() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    for command in ["report", "metrics"] {
        let out = std::fs::File::create(fixture.path(command)).unwrap();
        // As on a full disk: 100 bytes fit, the rest does not.
        let result = fixture.drainctl(&[command]).run_with_stdout_limited_to(out, 100);
        // Before: exit 0 and a warning, the file cut short.
        result.assert_code(75);
        assert!(
            result.stderr.contains("could not write the output to stdout: ")
                && result.stderr.contains("what was written is incomplete"),
            "{command}: {}",
            result.stderr
        );
    }
    // A summary is still only a warning: the work it sums up is done.
    let out = std::fs::File::create(fixture.path("status")).unwrap();
    fixture.drainctl(&["pause", "docs"]).run_with_stdout_limited_to(out, 0).assert_code(0);
}

#[test]
fn a_dash_for_the_page_or_the_textfile_is_stdout_not_a_file_named_dash() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let html = fixture.drainctl(&["report", "--html", "-"]).current_dir(fixture.dir.path()).run();
    html.assert_code(0);
    assert!(html.stdout.starts_with("<!DOCTYPE html>"), "{}", &html.stdout[..html.stdout.len().min(200)]);
    let metrics = fixture.drainctl(&["metrics", "--textfile", "-"]).current_dir(fixture.dir.path()).run();
    metrics.assert_code(0);
    assert!(metrics.stdout.contains("# TYPE drainctl_items gauge"), "{}", metrics.stdout);
    // Before: a file named `-` in the current folder, and nothing on stdout.
    assert!(!fixture.path("-").exists());
}
