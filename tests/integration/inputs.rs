//! Inputs at their limits: durations longer than the ceiling, NUL bytes in payloads and
//! argv settings, an unusable `TZ`, and source entries that cannot be looked at — each
//! refused with the documented exit code and a message naming the value, never a panic.

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

/// A config file in a fresh folder; the command runs without a database, because a
/// configuration error stops drainctl before it connects.
fn refused_config(config: &str) -> Finished {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drainctl.toml");
    std::fs::write(&path, config.replace("FAKE_WORKER", FAKE_WORKER)).unwrap();
    let result = Drainctl::new(&["status"])
        .env("DRAINCTL_CONFIG", path.to_str().unwrap())
        .env("DRAINCTL_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .run();
    result.assert_code(78);
    assert_eq!(result.stderr.lines().count(), 1, "one line: {}", result.stderr);
    assert!(result.stderr.contains(path.to_str().unwrap()), "{}", result.stderr);
    result
}

const DRAIN: &str = "[[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n";

#[test]
fn every_duration_setting_longer_than_a_hundred_years_is_refused_at_load_naming_key_and_maximum() {
    let huge = "\"100000000w\"";
    let cases = [
        (format!("[defaults]\ndefault_backoff = {huge}\n"), ":2:19:", "default_backoff"),
        (format!("[defaults]\nsuspected_backoff = {huge}\n"), ":2:21:", "suspected_backoff"),
        (format!("[defaults]\nreset_margin = {huge}\n"), ":2:16:", "reset_margin"),
        (format!("[defaults]\nkill_grace = {huge}\n"), ":2:14:", "kill_grace"),
        (format!("[defaults]\nsupervise_interval = {huge}\n"), ":2:22:", "supervise_interval"),
        (format!("[defaults]\nburst_max = {huge}\n"), ":2:13:", "burst_max"),
        (format!("[defaults]\nnotify_timeout = {huge}\n"), ":2:18:", "notify_timeout"),
        (format!("[defaults]\nretention = {{ runs = {huge} }}\n"), ":2:13:", "retention.runs"),
        (format!("[defaults]\nretention = {{ done_items = {huge} }}\n"), ":2:13:", "retention.done_items"),
        (format!("{DRAIN}item_timeout = {huge}\n"), ":4:16:", "drain \"docs\": item_timeout"),
        (format!("{DRAIN}liveness_timeout = {huge}\n"), ":4:20:", "drain \"docs\": liveness_timeout"),
        (format!("{DRAIN}max_seconds_per_pass = {huge}\n"), ":4:24:", "drain \"docs\": max_seconds_per_pass"),
        (format!("{DRAIN}every = {huge}\n"), ":4:9:", "drain \"docs\": every"),
        (
            format!("{DRAIN}retry_backoff = {{ base = {huge} }}\n"),
            ":4:26:",
            "drain \"docs\": retry_backoff.base",
        ),
        (
            format!("{DRAIN}retry_backoff = {{ max = {huge} }}\n"),
            ":4:25:",
            "drain \"docs\": retry_backoff.max",
        ),
        (
            format!("[[quota_group]]\nname = \"g\"\nswitch_cooldown = {huge}\n"),
            ":3:19:",
            "quota group \"g\": switch_cooldown",
        ),
    ];
    for (config, location, key) in cases {
        let result = refused_config(&config);
        for part in [location, key, "\"100000000w\" is too long; the largest allowed is 36500d (100 years)"] {
            assert!(result.stderr.contains(part), "{part:?} not in {}", result.stderr);
        }
    }
}

#[test]
fn a_drain_with_the_largest_durations_runs_fails_and_backs_off_without_panic() {
    let max = "\"36500d\"";
    let config = format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = {max}\ndefault_backoff = {max}\n\
         suspected_backoff = {max}\nreset_margin = {max}\nsupervise_interval = {max}\nburst_max = {max}\n\
         notify_timeout = {max}\n\
         retention = {{ runs = {max}, events = {max}, logs = {max}, done_items = {max} }}\n\
         log_dir = \"TMPDIR/logs\"\n\n\
         {DRAIN}item_timeout = {max}\nliveness_timeout = {max}\nmax_seconds_per_pass = {max}\nevery = {max}\n\
         retry_backoff = {{ base = {max}, max = {max} }}\n\
         [[drain]]\nname = \"limited\"\ncommand = [\"FAKE_WORKER\"]\n"
    );
    let fixture = Fixture::new(&config, NOW);
    fixture.enqueue(
        "docs",
        &[("ok".into(), json!("fine")), ("fails".into(), json!({ "steps": [{ "exit": 3 }] }))],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).run();
    pass.assert_code(0);
    assert_eq!(pass.json()["status"], "drained", "{}", pass.stdout);
    assert_eq!(fixture.item("docs", "ok").0, "done");
    assert_eq!(fixture.item("docs", "fails").0, "pending");
    // The retry waits 80 to 100 % of a hundred years: still a date PostgreSQL stores.
    let retry_year =
        fixture.count("SELECT extract(year FROM available_at)::bigint FROM items WHERE key = 'fails'");
    assert!((2106..=2126).contains(&retry_year), "{retry_year}");
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'running'"), 0);

    // A quota hit without a reset time: the suspected backoff is a hundred years.
    let limit = json!({ "steps": [{ "err": "Claude AI usage limit reached" }, { "exit": 1 }] });
    fixture.enqueue("limited", &[("hit".into(), limit)]);
    let limited = fixture.drainctl(&["drain", "limited", "--json"]).run();
    limited.assert_code(0);
    assert_eq!(limited.json()["status"], "rate_limited", "{}", limited.stdout);
    let until: String = fixture
        .client()
        .query_one(
            "SELECT to_char(backoff_until AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM quota_backoffs WHERE quota_group = 'limited'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(until, "2126-11-03");

    for command in [&["supervise", "--json"][..], &["prune", "--json"], &["status", "--json"]] {
        fixture.drainctl(command).run().assert_code(0);
    }
}

#[test]
fn command_line_durations_longer_than_allowed_exit_64_naming_the_flag_and_maximum() {
    let fixture = Fixture::new(DRAIN, NOW);
    let lock = fixture.drainctl(&["--lock-timeout", "100000000w", "status"]).run();
    lock.assert_code(64);
    assert!(
        lock.stderr.contains("--lock-timeout: \"100000000w\" is too long; the largest allowed is 24d"),
        "{}",
        lock.stderr
    );
    fixture.drainctl(&["--lock-timeout", "24d", "status"]).run().assert_code(0);
    let since = fixture.drainctl(&["events", "--since", "100000000w"]).run();
    since.assert_code(64);
    assert!(
        since
            .stderr
            .contains("--since: \"100000000w\" is too long; the largest allowed is 36500d (100 years)"),
        "{}",
        since.stderr
    );
    fixture.drainctl(&["events", "--since", "36500d"]).run().assert_code(0);
    let burst = fixture.drainctl(&["burst", "on", "docs", "--until", "+100000000w"]).run();
    burst.assert_code(64);
    assert!(burst.stderr.contains("--until"), "{}", burst.stderr);
}

// ---------------------------------------------------------------------------------------
// Source entries that cannot be looked at

#[test]
fn source_entries_that_cannot_be_stated_are_refused_with_the_os_error_not_dropped() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let fixture = Fixture::new(
        &format!(
            "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n\n{DRAIN}\
             source = {{ dir = \"data\", glob = \"*/*.jsonl\" }}\n"
        ),
        NOW,
    );
    let data = fixture.path("data");
    for folder in ["alice", "loop", "locked"] {
        std::fs::create_dir_all(data.join(folder)).unwrap();
    }
    std::fs::write(data.join("alice/1.jsonl"), "one\n").unwrap();
    // A link to itself: stat fails with ELOOP.
    symlink("self.jsonl", data.join("loop/self.jsonl")).unwrap();
    // A folder that can be listed but not searched: its files cannot be stat'ed.
    std::fs::write(data.join("locked/secret.jsonl"), "two\n").unwrap();
    std::fs::set_permissions(data.join("locked"), std::fs::Permissions::from_mode(0o600)).unwrap();

    let scan = fixture.drainctl(&["scan", "docs", "--json"]).without_permission_override().run();
    scan.assert_code(0);
    let report = scan.json();
    assert_eq!(report["new"], 1, "{report:#}");
    assert_eq!(report["refused"], 2, "{report:#}");
    let refused: Vec<(&str, &str)> = report["refused_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|refusal| (refusal["path"].as_str().unwrap(), refusal["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(refused[0].0, "locked/secret.jsonl", "{refused:?}");
    assert!(refused[0].1.starts_with("cannot stat: Permission denied (os error 13)"), "{refused:?}");
    assert_eq!(refused[1].0, "loop/self.jsonl", "{refused:?}");
    assert!(refused[1].1.contains("(os error 40)"), "{refused:?}");

    let human = fixture.drainctl(&["scan", "docs"]).without_permission_override().run();
    human.assert_code(0);
    assert!(human.stdout.contains(", 2 refused;"), "{}", human.stdout);
    assert!(
        human.stdout.contains("refused locked/secret.jsonl: cannot stat: Permission denied (os error 13)"),
        "{}",
        human.stdout
    );

    // supervise scans first and reports the same refusals, in its table and its JSON.
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    let pass = fixture.drainctl(&["supervise"]).without_permission_override().run();
    pass.assert_code(0);
    assert!(pass.stdout.contains("scan docs: 0 new, 0 changed, 1 unchanged"), "{}", pass.stdout);
    assert!(
        pass.stdout.contains("refused locked/secret.jsonl: cannot stat: Permission denied"),
        "{}",
        pass.stdout
    );
    let pass = fixture.drainctl(&["supervise", "--json"]).without_permission_override().run();
    pass.assert_code(0);
    let scans = &pass.json()["scans"];
    assert_eq!(scans[0]["refused"], 2, "{scans:#}");
    assert_eq!(scans[0]["refused_paths"][0]["path"], "locked/secret.jsonl", "{scans:#}");

    // Let the temporary folder be removed by a user without the override too.
    std::fs::set_permissions(data.join("locked"), std::fs::Permissions::from_mode(0o700)).unwrap();
}

// ---------------------------------------------------------------------------------------
// NUL characters and the time zone

#[test]
fn enqueue_reading_a_terminal_says_so_and_how_to_end_the_input() {
    let fixture = Fixture::new(DRAIN, NOW);
    let typed = fixture
        .drainctl(&["enqueue", "docs"])
        .run_with_terminal_stdin(b"{\"key\": \"a\", \"payload\": {}}\n\x04");
    typed.assert_code(0);
    assert!(
        typed.stderr.starts_with("drainctl: reading JSON lines from the terminal, one {\"key\": …, \"payload\": …} a line; end with Ctrl-D"),
        "{}",
        typed.stderr
    );
    assert_eq!(typed.stdout, "docs: 1 added, 0 duplicates\n");
    // From a pipe or a file nothing is said.
    let piped = fixture.drainctl(&["enqueue", "docs"]).stdin("{\"key\": \"b\", \"payload\": {}}\n").run();
    piped.assert_code(0);
    assert_eq!(piped.stderr, "");
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 2);
}

#[test]
fn quota_test_reading_a_terminal_says_so_and_how_to_end_the_input() {
    // Before: it waited in silence.
    let typed = Drainctl::new(&["quota", "test", "--profile", "claude"])
        .run_with_terminal_stdin(b"Claude AI usage limit reached|1796569559\n\x04");
    typed.assert_code(0);
    assert!(
        typed.stderr.starts_with(
            "drainctl: reading the worker's output from the terminal; paste it, then end with Ctrl-D"
        ),
        "{}",
        typed.stderr
    );
    assert!(typed.stdout.starts_with("quota hit"), "{}", typed.stdout);
    let piped = Drainctl::new(&["quota", "test", "--profile", "claude"]).stdin("fine\n").run();
    assert_eq!(piped.stderr, "");
}

#[test]
fn an_enqueued_payload_with_a_nul_character_exits_65_naming_its_line_and_enqueues_nothing() {
    let fixture = Fixture::new(DRAIN, NOW);
    let lines = "{\"key\": \"a\", \"payload\": {\"text\": \"fine\"}}\n\
                 {\"key\": \"b\", \"payload\": {\"text\": [\"ok\", \"nul \\u0000 here\"]}}\n";
    let result = fixture.drainctl(&["enqueue", "docs"]).stdin(lines).run();
    result.assert_code(65);
    assert!(
        result.stderr.contains("stdin:2: payload has a NUL character (\\u0000) at $.text[1]"),
        "{}",
        result.stderr
    );
    assert!(result.stderr.contains("nothing was enqueued"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0, "the batch is all or nothing");
    let key = fixture
        .drainctl(&["enqueue", "docs"])
        .stdin("{\"key\": \"c\", \"payload\": {\"k\\u0000\": 1}}\n")
        .run();
    key.assert_code(65);
    assert!(
        key.stderr.contains("stdin:1: payload has a NUL character (\\u0000) at $.k\\0"),
        "{}",
        key.stderr
    );
    let single = fixture.drainctl(&["enqueue", "docs", "--key", "d", "--payload", "\"\\u0000\""]).run();
    single.assert_code(65);
    assert!(single.stderr.contains("--payload: payload has a NUL character"), "{}", single.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0);
}

#[test]
fn nul_characters_in_a_drains_command_or_env_or_the_notifier_are_refused_at_load() {
    let cases = [
        (
            format!("{DRAIN}env = {{ TOKEN = \"a\\u0000b\" }}\n"),
            ":4:7:",
            "drain \"docs\": env: the value of TOKEN",
        ),
        (
            "[[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\", \"--x\\u0000\"]\n".to_string(),
            ":3:11:",
            "drain \"docs\": command: argument 2",
        ),
        (
            format!("[defaults]\nnotify_command = [\"notify\\u0000\"]\n{DRAIN}"),
            ":2:18:",
            "notify_command: argument 1",
        ),
    ];
    for (config, location, key) in cases {
        let result = refused_config(&config);
        for part in [location, key, "has a NUL character"] {
            assert!(result.stderr.contains(part), "{part:?} not in {}", result.stderr);
        }
    }
}

#[test]
fn an_unknown_tz_is_a_warning_naming_it_and_doctor_reports_it() {
    let fixture = Fixture::new(&format!("[defaults]\nlog_dir = \"TMPDIR/logs\"\n{DRAIN}"), NOW);
    let status = fixture.drainctl(&["status"]).env("TZ", "Bogus/Zone").run();
    status.assert_code(0);
    assert!(
        status.stderr.contains("TZ=\"Bogus/Zone\" is not a known time zone; using "),
        "{}",
        status.stderr
    );
    let doctor = fixture.drainctl(&["doctor"]).env("TZ", "Bogus/Zone").run();
    assert!(
        doctor.stdout.contains("warn  timezone: TZ=\"Bogus/Zone\" is not a known time zone; using "),
        "{}",
        doctor.stdout
    );
    let json = fixture.drainctl(&["doctor", "--json"]).env("TZ", "Bogus/Zone").run().json();
    let check =
        json["checks"].as_array().unwrap().iter().find(|check| check["check"] == "timezone").unwrap().clone();
    assert_eq!(check["status"], "warn", "{check}");
    // A zone it knows is fine.
    let doctor = fixture.drainctl(&["doctor"]).env("TZ", "Asia/Jerusalem").run();
    assert!(
        doctor.stdout.contains("ok    timezone: time zone Asia/Jerusalem (the machine's"),
        "{}",
        doctor.stdout
    );
}

#[test]
fn doctor_without_a_configuration_file_checks_the_machines_zone() {
    let fixture = Fixture::new(DRAIN, NOW);
    let missing = fixture.path("nowhere/drainctl.toml");
    let missing = missing.to_str().unwrap();
    let zone_check = |result: &Finished| -> String {
        let checks = result.json()["checks"].as_array().unwrap().clone();
        let check = checks.iter().find(|check| check["check"] == "timezone").unwrap().clone();
        format!("{} {}", check["status"].as_str().unwrap(), check["message"].as_str().unwrap())
    };
    let doctor = fixture.drainctl(&["--config", missing, "doctor", "--json"]).env("TZ", "Asia/Tokyo").run();
    doctor.assert_code(78);
    assert_eq!(
        zone_check(&doctor),
        "ok time zone Asia/Tokyo (the machine's, from $TZ; no configuration file was read)"
    );
    let bogus = fixture.drainctl(&["--config", missing, "doctor", "--json"]).env("TZ", "Bogus/Zone").run();
    assert!(
        zone_check(&bogus).starts_with("warn TZ=\"Bogus/Zone\" is not a known time zone"),
        "{}",
        zone_check(&bogus)
    );
    // A file that is not TOML: its zone cannot be known, and the line says why.
    fixture.write_config("[[drain]\n");
    let broken = fixture.drainctl(&["doctor", "--json"]).env("TZ", "Asia/Tokyo").run();
    assert_eq!(
        zone_check(&broken),
        "skip time zone not checked: the configuration file is not valid TOML, so its [defaults] timezone is unknown"
    );
}

#[test]
fn doctor_checks_the_zone_of_a_configuration_given_through_a_pipe_from_what_it_read() {
    let fixture = Fixture::new(
        &format!("[defaults]\ntimezone = \"Asia/Jerusalem\"\nlog_dir = \"TMPDIR/logs\"\n{DRAIN}"),
        NOW,
    );
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    // Before: the pipe was read once for the configuration, then the zone check found it
    // empty and reported the machine's zone, "no configuration file was read".
    let doctor = fixture
        .drainctl(&["--config", "/dev/stdin", "doctor"])
        .env_remove("DRAINCTL_CONFIG")
        .env("TZ", "Asia/Tokyo")
        .stdin(text)
        .run();
    assert!(
        doctor.stdout.contains("ok    config: configuration /dev/stdin is valid (1 drain(s))"),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor.stdout.contains("ok    timezone: time zone Asia/Jerusalem (from [defaults] timezone)"),
        "{}",
        doctor.stdout
    );
}

#[test]
fn a_bare_word_or_an_unknown_option_is_hinted_at_a_form_that_works() {
    let fixture = Fixture::new(&format!("[defaults]\nlog_dir = \"TMPDIR/logs\"\n{DRAIN}"), NOW);
    // Before: `events --drain run_hung`, `items show docs pending`, and clap's "use '--
    // --json'" and "use '-- -1'", each refused again when followed.
    for (args, says, hinted) in [
        (
            &["events", "run_hung"][..],
            "unexpected argument 'run_hung' found; for the events of one kind: `drainctl events --kind run_hung`; \
             see `drainctl events --help`",
            Some(&["events", "--kind", "run_hung"][..]),
        ),
        (
            &["items", "docs", "pending"][..],
            "unexpected argument 'pending' found; for its items in one state: `drainctl items docs --state \
             pending`; see `drainctl items --help`",
            Some(&["items", "docs", "--state", "pending"][..]),
        ),
        (
            &["export", "docs", "--json"][..],
            "unexpected argument '--json' found; `drainctl export` writes JSON lines without --json (--format \
             jsonl, the default); --format csv writes CSV; see `drainctl export --help`",
            Some(&["export", "docs"][..]),
        ),
        (
            &["export", "docs", "--after-id", "-1"][..],
            "invalid value '-1' for '--after-id <ID>': -1 is not in 0..9223372036854775807; see `drainctl export \
             --help`",
            None,
        ),
        (&["export", "docs", "-x"][..], "unexpected argument '-x' found; see `drainctl export --help`", None),
    ] {
        let result = fixture.drainctl(args).run();
        result.assert_code(64);
        assert_eq!(result.stderr.trim(), format!("drainctl: {says}"), "{args:?}");
        if let Some(hinted) = hinted {
            fixture.drainctl(hinted).run().assert_code(0);
        }
    }
}

#[test]
fn a_command_line_clap_refuses_is_one_line_naming_the_problem_and_the_help_to_read() {
    for (args, says) in [
        (&[][..], "`drainctl` needs a command: migrate, drain,"),
        (&["burst"][..], "`drainctl burst` needs a command: on, off, status; see `drainctl burst --help`"),
        (&["drain"][..], "not provided: <NAME>; see `drainctl drain --help`"),
        (&["burst", "on"][..], "not provided: <NAME>; see `drainctl burst on --help`"),
        (
            &["--lock-timeout", "1s", "events", "--limit", "0"][..],
            "--limit: invalid limit \"0\": use a whole number from 1",
        ),
        (&["runs", "show", "x"][..], "invalid value 'x' for '<ID>'"),
        // Without clap's tip to pass it after `--`, refused again there.
        (&["drain", "docs", "--foo"][..], "unexpected argument '--foo' found; see `drainctl drain --help`"),
        (&["drain", "docs", "--foo", "--json"][..], "unexpected argument '--foo' found; see `drainctl drain --help`"),
        // A name that starts with `-`, before other options: `-- -x --key a` would fail
        // again (`--key` a value too), so the tip says to give it last.
        (
            &["enqueue", "-x", "--key", "a", "--payload", "1"][..],
            "to pass '-x' as a value, give it last, after every option and `--` (… -- -x)",
        ),
        // No tip that fails again when followed (before: "use '-- --key'", then
        // "unexpected argument 's1'"; `runs show -- -3`, "invalid digit").
        (&["items", "show", "docs", "--key", "s1"][..], "unexpected argument '--key' found; see `drainctl items show --help`"),
        (&["burst", "on", "docs", "--for", "6h"][..], "unexpected argument '--for' found; see `drainctl burst on --help`"),
        (&["drain", "--all"][..], "unexpected argument '--all' found; see `drainctl drain --help`"),
        // A negative run id or migration version is named with the range (before:
        // "unexpected argument '-3' found").
        (&["runs", "show", "-3"][..], "invalid value '-3' for '<ID>': -3 is not in 1..9223372036854775807; see `drainctl runs show --help`"),
        (
            &["migrate", "--repair-checksum", "-1"][..],
            "invalid value '-1' for '--repair-checksum <VERSION>': -1 is not in 1..=2147483647; see `drainctl migrate --help`",
        ),
        // clap names `-k` of `-k1`: the tip passes the whole word.
        (
            &["items", "show", "docs", "-k1"][..],
            "unexpected argument '-k' found; to pass '-k1' as a value, put `--` before it (… -- -k1)",
        ),
        // A verb these commands do not take, a command taken for a drain.
        (&["runs", "list"][..], "`drainctl runs` lists them as it is: leave out `list`"),
        (&["burst", "list"][..], "`drainctl burst status` lists the bursts"),
        (&["items", "retry", "docs", "ok1"][..], "`retry` is a command of its own: see `drainctl retry --help`"),
        // An exit status outside 0..=255 (before: `-1` an unexpected argument, 300 taken).
        (&["quota", "test", "--exit-code", "-1"][..], "--exit-code: invalid exit code \"-1\": a process exits with 0 to 255"),
        (&["quota", "test", "--exit-code", "300"][..], "--exit-code: invalid exit code \"300\""),
        (&["nosuch"][..], "unrecognized subcommand 'nosuch'; see `drainctl --help`"),
        // Only a subcommand a letter or two away is suggested (before: `scan` for `cancel`).
        (&["cancel", "docs", "k1"][..], "drainctl: unrecognized subcommand 'cancel'; see `drainctl --help`"),
        (&["stauts"][..], "unrecognized subcommand 'stauts'; tip: a similar subcommand exists: 'status'; see"),
        (&["itmes"][..], "unrecognized subcommand 'itmes'; tip: a similar subcommand exists: 'items'; see"),
        // A bare word where another form was meant is told that form.
        (
            &["items", "--state", "done", "docs", "a.pdf"][..],
            "unexpected argument 'a.pdf' found; for one item: `drainctl items show docs a.pdf`; see `drainctl items --help`",
        ),
        (&["items", "docs", "show", "a.pdf"][..], "`show` goes right after `drainctl items`, before its other arguments"),
        (&["runs", "12"][..], "for one run: `drainctl runs show 12`"),
        (&["runs", "docs"][..], "for one drain's runs: `drainctl runs --drain docs`"),
        (&["events", "docs"][..], "for one drain's events: `drainctl events --drain docs`"),
        (&["passes", "5"][..], "to show 5 of them: `drainctl passes --limit 5`"),
        (&["burst", "docs"][..], "`drainctl burst on docs` starts a burst, `drainctl burst off docs` ends it"),
        (&["burst", "on", "docs", "sat", "18:00"][..], "unexpected argument 'sat' found; a deadline goes after --until"),
        // A name beside --all is a conflict, not an "unexpected argument '[NAME]'".
        (&["pause", "docs", "--all"][..], "the argument '[NAME]' cannot be used with '--all'"),
        (&["drain", "docs", "--log-file", ""][..], "a value is required for '--log-file <PATH>'"),
        // A time back from now written with a sign is read by clap as an option.
        (&["events", "--since", "-1d"][..], "drainctl: --since: invalid duration \"-1d\": a time back from now has no sign: use \"1d\""),
        (&["export", "docs", "--since", "-6h"][..], "--since: invalid duration \"-6h\": a time back from now has no sign"),
        (&["--lock-timeout", "-1s", "status"][..], "--lock-timeout: invalid duration \"-1s\": a lock wait has no sign: use \"1s\""),
        (&["status", "--lock-timeout=-5s"][..], "--lock-timeout: invalid duration \"-5s\": a lock wait has no sign: use \"5s\""),
        // A command missing what it needs, or given what does not go together, is told
        // the form meant.
        (&["items", "show"][..], "the items of a drain named `show` are listed with `drainctl items -- show`"),
        (&["pause"][..], "not provided: <NAME>; or `drainctl pause --all` for every drain"),
        (
            &["resume", "docs", "--clear-backoff"][..],
            "--clear-backoff goes with --group: `drainctl resume --group GROUP --clear-backoff`",
        ),
        // An escape sequence in the value is shown escaped (before: removed, so that the
        // line read "invalid value 'pending'").
        (&["items", "docs", "--state", "pen\u{1b}[2Jding"][..], "invalid value 'pen\\u{1b}[2Jding'"),
        (&["stat\u{1b}[0mus"][..], "unrecognized subcommand 'stat\\u{1b}[0mus'"),
    ] {
        let result = Drainctl::new(args).run();
        result.assert_code(64);
        assert_eq!(result.stderr.lines().count(), 1, "{args:?}: {}", result.stderr);
        assert!(
            result.stderr.starts_with("drainctl: ") && result.stderr.contains(says),
            "{args:?}: {}",
            result.stderr
        );
        assert_eq!(result.stdout, "", "{args:?}");
    }
    let help = Drainctl::new(&["burst", "--help"]).run();
    help.assert_code(0);
    assert!(help.stdout.contains("Usage: drainctl burst"), "help is still the whole page: {}", help.stdout);
}

#[test]
fn a_path_that_is_not_utf8_is_refused_where_it_is_recorded_and_written_where_it_is_not() {
    use std::os::unix::ffi::OsStrExt;
    let fixture = Fixture::new(DRAIN, NOW);
    let not_utf8 = |name: &[u8]| {
        std::ffi::OsStr::from_bytes(&[fixture.path("").as_os_str().as_bytes(), name].concat()).to_owned()
    };
    // A run records its log file's path as text: one it could not record is refused.
    let log = fixture.drainctl(&["drain", "docs", "--log-file"]).arg_os(not_utf8(b"l\xff.log")).run();
    log.assert_code(64);
    assert!(log.stderr.contains("--log-file \""), "{}", log.stderr);
    assert!(
        log.stderr.contains(".log\" is not valid UTF-8: give it in UTF-8; see `drainctl drain --help`"),
        "{}",
        log.stderr
    );
    // The metrics textfile and the page are written where asked (this panicked); the
    // summary shows the name with U+FFFD for the byte that is not UTF-8.
    for (args, name) in
        [(&["metrics", "--textfile"][..], &b"m\xff.prom"[..]), (&["report", "--html"][..], b"r\xff.html")]
    {
        let path = not_utf8(name);
        let written = fixture.drainctl(args).arg_os(&path).run();
        written.assert_code(0);
        assert!(std::path::Path::new(&path).is_file(), "{args:?}");
        assert!(
            written.stdout.starts_with("wrote ") && written.stdout.contains('\u{fffd}'),
            "{}",
            written.stdout
        );
    }
}

#[test]
fn an_error_that_stderr_cannot_take_still_exits_with_its_code() {
    // A log file on a full disk, as /dev/full is: the line is lost, the code is not.
    let fixture = Fixture::new(DRAIN, NOW);
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    assert_eq!(fixture.drainctl(&["drain", "nosuch"]).code_with_stderr_to(full()), Some(64));
    assert_eq!(fixture.drainctl(&["drain"]).code_with_stderr_to(full()), Some(64));
    let bad = fixture.drainctl(&["enqueue", "docs", "--key", "k", "--payload", "{bad"]);
    assert_eq!(bad.code_with_stderr_to(full()), Some(65));
    let away = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", "postgres://a:b@127.0.0.1:1/x");
    assert_eq!(away.code_with_stderr_to(full()), Some(69));
    // Help that stdout cannot take is said, as any summary is; a closed pipe is not.
    // Before: silence, as if it had been shown.
    let help = std::process::Command::new(DRAINCTL).arg("--help").stdout(full()).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let said = String::from_utf8_lossy(&help.stderr);
    assert!(said.contains("could not write the output to stdout: No space left on device"), "{said}");
    // A completion script cut short is the command's whole product lost (before: exit 0).
    let script =
        std::process::Command::new(DRAINCTL).args(["completions", "bash"]).stdout(full()).output().unwrap();
    assert_eq!(script.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&script.stderr).contains("what was written is incomplete"));
}

#[test]
fn a_key_or_payload_beginning_with_a_hyphen_is_a_value_not_an_option() {
    use std::os::unix::ffi::OsStrExt;
    // A file named `-draft.txt` is a key like any other, and `-1` a JSON payload. Before:
    // "unexpected argument '-1' found; tip: use '-- -1'", a tip that failed too.
    let fixture = Fixture::new(DRAIN, NOW);
    fixture.drainctl(&["enqueue", "docs", "--key", "-draft.txt", "--payload", "-1"]).run().assert_code(0);
    let shown = fixture.drainctl(&["items", "show", "docs", "--json", "--", "-draft.txt"]).run();
    shown.assert_code(0);
    assert_eq!(shown.json()["payload"], json!(-1), "{}", shown.stdout);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    // The done item is named, not taken for an option (retry leaves a done item done).
    let retried = fixture.drainctl(&["retry", "docs", "--key", "-draft.txt"]).run();
    assert!(retried.stdout.contains("-draft.txt") || retried.stderr.contains("-draft.txt"), "{retried:?}");
    assert!(!retried.stderr.contains("unexpected argument"), "{}", retried.stderr);
    // An option where the value should be is a value left out (an empty variable), not
    // the key `--replace`: 64, and nothing enqueued.
    for args in [
        &["enqueue", "docs", "--key", "--replace", "--payload", "1"][..],
        &["enqueue", "docs", "--key", "--payload", "{}"],
        &["retry", "docs", "--key", "--dead"],
    ] {
        let refused = fixture.drainctl(args).run();
        refused.assert_code(64);
        assert!(
            refused.stderr.contains("is an option of this command, not a value: the value is missing"),
            "{args:?}: {}",
            refused.stderr
        );
    }
    // A key that is not UTF-8 is refused as such. Before: "\"--payload\" is an option of
    // this command, not a value", a quoting mistake nobody made.
    let not_utf8 = std::ffi::OsStr::from_bytes(b"k\xff");
    let refused = fixture
        .drainctl(&["enqueue", "docs", "--key"])
        .arg_os(not_utf8)
        .arg_os("--payload")
        .arg_os("1")
        .run();
    // Bad input data, as the same bytes on stdin are (docs/exit-codes.md): 65, not 64.
    refused.assert_code(65);
    assert!(refused.stderr.contains("is not valid UTF-8"), "{}", refused.stderr);
    assert!(!refused.stderr.contains("option of this command"), "{}", refused.stderr);
    let payload = fixture
        .drainctl(&["enqueue", "docs", "--key", "k"])
        .arg_os("--payload")
        .arg_os(std::ffi::OsStr::from_bytes(b"\"\xff\""));
    payload.run().assert_code(65);
    // Any other argument that is not UTF-8 is a usage error, after a key given with `=`
    // too.
    fixture.drainctl(&["enqueue"]).arg_os(not_utf8).run().assert_code(64);
    fixture.drainctl(&["enqueue", "--key=k", "--payload={}"]).arg_os(not_utf8).run().assert_code(64);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 1);
    // Given with `=`, such a key is a key; another command's option is no option here.
    fixture.drainctl(&["enqueue", "docs", "--key=--replace", "--payload", "1"]).run().assert_code(0);
    fixture.drainctl(&["enqueue", "docs", "--key", "--no-budget", "--payload", "1"]).run().assert_code(0);
    fixture.drainctl(&["retry", "docs", "--key=--replace"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 3);
}

/// The commands a line tells the operator to run, as words: each `` `drainctl …` `` span.
fn told_commands(text: &str) -> Vec<Vec<String>> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.starts_with("drainctl "))
        .map(|span| span.split_whitespace().skip(1).map(str::to_string).collect())
        .collect()
}

/// Run each command told (`PAYLOAD` as `{}`): the words and what came of them.
fn follow(fixture: &Fixture, told: Vec<Vec<String>>) -> Vec<(Vec<String>, Finished)> {
    told.into_iter()
        .map(|command| {
            let args: Vec<&str> =
                command.iter().map(|word| if word == "PAYLOAD" { "{}" } else { word.as_str() }).collect();
            let followed = fixture.drainctl(&args).run();
            (command, followed)
        })
        .collect()
}

#[test]
fn the_commands_told_for_a_drain_whose_name_starts_with_a_dash_work_when_followed() {
    // Before: `drainctl resume -x`, `drainctl enqueue -x --replace …`, each exit 64.
    let fixture = Fixture::new(
        "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"-x\"\ncommand = [\"FAKE_WORKER\"]\n",
        NOW,
    );
    let payload = json!({"steps": [{"out": "ok"}]}).to_string();
    fixture.drainctl(&["enqueue", "--key", "k", "--payload", &payload, "--", "-x"]).run().assert_code(0);
    fixture.drainctl(&["drain", "--", "-x"]).run().assert_code(0);
    let retry = fixture.drainctl(&["retry", "--key", "k", "--", "-x"]).run();
    retry.assert_code(0);
    let paused = fixture.drainctl(&["pause", "--", "-x"]).run();
    paused.assert_code(0);
    let burst = fixture.drainctl(&["burst", "on", "--until", "+1h", "--", "-x"]).run();
    burst.assert_code(0);
    let mut told: Vec<Vec<String>> = Vec::new();
    for text in [&retry.stdout, &paused.stdout, &burst.stdout] {
        let commands = told_commands(text);
        assert!(!commands.is_empty(), "no command told: {text}");
        told.extend(commands);
    }
    for (args, followed) in follow(&fixture, told) {
        assert_ne!(followed.code, 64, "{args:?}: {}", followed.stderr);
    }
    assert_eq!(fixture.item("-x", "k").0, "pending", "the enqueue --replace told ran");
}

#[test]
fn the_commands_told_for_a_quota_group_whose_name_starts_with_a_dash_work_when_followed() {
    // Before: `drainctl resume --group -g --clear-backoff`, exit 64.
    let fixture = Fixture::new(
        "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"d\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"-g\"\nquota_profile = \"claude\"\nmax_wait = \"0s\"\n",
        NOW,
    );
    let limit = json!({"steps": [{"err": "Claude AI usage limit reached|1796760000"}, {"exit": 1}]});
    fixture.enqueue("d", &[("k".into(), limit)]);
    fixture.drainctl(&["drain", "d"]).run().assert_code(0);
    let resumed = fixture.drainctl(&["resume", "--group=-g"]).run();
    resumed.assert_code(0);
    let told = told_commands(&resumed.stdout);
    assert!(told.iter().any(|command| command.contains(&"--group=-g".to_string())), "{}", resumed.stdout);
    for (args, followed) in follow(&fixture, told) {
        assert_eq!(followed.code, 0, "{args:?}: {}", followed.stderr);
    }
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_cleared'"), 1);
}

#[test]
fn supervise_starts_a_drain_whose_name_starts_with_a_dash() {
    // Before: it ran `drainctl drain -x --trigger supervisor`, which exits 64: the drain's
    // items never ran and every pass exited 69.
    let fixture = Fixture::new(
        "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"-x\"\ncommand = [\"FAKE_WORKER\"]\n",
        NOW,
    );
    let payload = json!({"steps": [{"out": "ok"}]}).to_string();
    fixture.drainctl(&["enqueue", "--key", "k", "--payload", &payload, "--", "-x"]).run().assert_code(0);
    let pass = fixture.drainctl(&["supervise"]).run();
    pass.assert_code(0);
    wait_until("the item to be done", std::time::Duration::from_secs(20), || {
        fixture.item("-x", "k").0 == "done"
    });
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'supervise_error'"), 0);
}
