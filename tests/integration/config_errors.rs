//! Bad configuration: exit 78, one line naming the file, line, column and the value.

use crate::support::*;

fn check(config: &str, expected: &[&str]) {
    let fixture = Fixture::new(config, "2026-11-27T10:00:00Z");
    let result = fixture.drainctl(&["resume", "a"]).run();
    result.assert_code(78);
    assert_eq!(result.stderr.lines().count(), 1, "one line: {}", result.stderr);
    let path = fixture.config_path.display().to_string();
    assert!(result.stderr.contains(&path), "{path} not in {}", result.stderr);
    for part in expected {
        assert!(result.stderr.contains(part), "{part:?} not in {}", result.stderr);
    }
}

#[test]
fn a_configuration_file_this_user_may_not_read_is_told_how_to_give_access() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new("[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n", "2026-11-27T10:00:00Z");
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let result = fixture.drainctl(&["status"]).without_permission_override().run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("Permission denied (os error 13); run drainctl as the user the file belongs to, or give this user read access to it"),
        "{}",
        result.stderr
    );
    // Readable itself, behind a folder this user may not enter: the folder is named.
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let folder = fixture.config_path.parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&folder).unwrap().permissions();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o600)).unwrap();
    let result = fixture.drainctl(&["status"]).without_permission_override().run();
    // Reached through a link from a folder the user may enter: the closed one is named.
    let open = tempfile::tempdir().unwrap();
    let link = open.path().join("drainctl.toml");
    std::os::unix::fs::symlink(&fixture.config_path, &link).unwrap();
    let linked =
        fixture.drainctl(&["--config", link.to_str().unwrap(), "status"]).without_permission_override().run();
    std::fs::set_permissions(&folder, mode).unwrap();
    assert!(
        linked.stderr.contains(&format!("the folder {} cannot be entered by this user", folder.display())),
        "{}",
        linked.stderr
    );
    result.assert_code(78);
    assert!(
        result.stderr.contains(&format!("the folder {} cannot be entered by this user", folder.display()))
            && !result.stderr.contains("chmod 640"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_configuration_path_that_is_no_file_is_refused_for_what_it_is() {
    let fixture = Fixture::new("[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n", "2026-11-27T10:00:00Z");
    // A device (before: "writable by every user (mode 0666) … chmod go-w /dev/null").
    let result = fixture.drainctl(&["--config", "/dev/null", "migrate"]).run();
    result.assert_code(78);
    assert_eq!(
        result.stderr,
        "drainctl: configuration file /dev/null is a device, not a file: name a regular file, or name none \
         (migrate and quota test run without one)\n"
    );
    // A folder (before: "Is a directory (os error 21)", nothing more).
    let folder = fixture.config_path.parent().unwrap().display().to_string();
    let result = fixture.drainctl(&["--config", &folder, "status"]).run();
    result.assert_code(78);
    assert_eq!(
        result.stderr,
        format!(
            "drainctl: configuration file {folder} is a folder, not a file: name the file in it (--config \
             {folder}/drainctl.toml)\n"
        )
    );
    // supervise says the same of both (before: "is not a regular file (a pipe is read
    // once)" for the folder and the device alike).
    for (path, says) in
        [(folder.as_str(), "is a folder, not a file"), ("/dev/null", "is a device, not a file")]
    {
        let result = fixture.drainctl(&["--config", path, "supervise"]).run();
        result.assert_code(78);
        assert!(result.stderr.contains(says) && !result.stderr.contains("a pipe"), "{}", result.stderr);
    }
    // Missing: what to do (before: "No such file or directory (os error 2)", nothing more).
    let missing = format!("{folder}/nope.toml");
    let result = fixture.drainctl(&["--config", &missing, "status"]).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("No such file or directory (os error 2); create it (see docs/configuration.md), or name the right file with --config or $DRAINCTL_CONFIG"),
        "{}",
        result.stderr
    );
    // Named by $DRAINCTL_CONFIG (the fixture's way), its refusal says so.
    std::fs::write(&fixture.config_path, b"[[drain]]\nname = \"a\"\ncommand = [\"caf\xe9\"]\n").unwrap();
    let result = fixture.drainctl(&["status"]).run();
    result.assert_code(78);
    // Not UTF-8: where the byte stands (before: "stream did not contain valid UTF-8").
    assert_eq!(
        result.stderr,
        format!(
            "drainctl: {}:3:16: the configuration file is not UTF-8 text (a byte 0xe9 there); save it as UTF-8; \
             the path is $DRAINCTL_CONFIG's\n",
            fixture.config_path.display()
        )
    );
}

#[test]
fn malformed_toml() {
    check("[[drain]\nname = \"a\"\n", &["drainctl.toml:1:"]);
}

#[test]
fn unknown_key() {
    check("[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nitem_timout = \"5m\"\n", &[":4:1:", "item_timout"]);
}

#[test]
fn duplicate_drain_name() {
    check(
        "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n[[drain]]\nname = \"a\"\ncommand = [\"y\"]\n",
        &[":5:8:", "duplicate drain name \"a\""],
    );
}

#[test]
fn invalid_drain_name() {
    check("[[drain]]\nname = \"Halacha!\"\ncommand = [\"x\"]\n", &[":2:8:", "\"Halacha!\""]);
}

#[test]
fn unknown_time_zone() {
    check(
        "[defaults]\ntimezone = \"Asia/Jerusalm\"\n[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n",
        &[":2:12:", "\"Asia/Jerusalm\""],
    );
}

#[test]
fn bad_duration() {
    check(
        "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nliveness_timeout = \"15 mins\"\n",
        &[":4:20:", "\"15 mins\""],
    );
}

#[test]
fn bad_window() {
    // At the value itself (before: the inline table's brace, column 10).
    check(
        "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nwindow = { days = \"sun-xyz\", from = \"22:00\", to = \"06:00\" }\n",
        &[":4:19:", "sun-xyz"],
    );
}

#[test]
fn duplicate_account_of_a_quota_group() {
    check(
        "[[quota_group]]\nname = \"g\"\naccounts = [\n  { name = \"chair\" },\n  { name = \"chair\" },\n]\n\
         [[drain]]\nname = \"a\"\ncommand = [\"x\"]\nquota_group = \"g\"\n",
        &[":5:12:", "quota group \"g\": duplicate account name \"chair\""],
    );
}

#[test]
fn unknown_key_in_an_account() {
    check(
        "[[quota_group]]\nname = \"g\"\naccounts = [{ name = \"chair\", environment = {} }]\n",
        &[":3:", "environment"],
    );
}

#[test]
fn unknown_drain_on_the_command_line_lists_known_ones() {
    let fixture = Fixture::new("[[drain]]\nname = \"halacha\"\ncommand = [\"x\"]\n", "2026-11-27T10:00:00Z");
    let result = fixture.drainctl(&["resume", "halach"]).run();
    result.assert_code(64);
    assert!(result.stderr.contains("unknown drain \"halach\"; known: halacha"), "{}", result.stderr);
}

#[test]
fn a_missing_config_file_says_how_to_provide_one() {
    let fixture = Fixture::new("", "2026-11-27T10:00:00Z");
    let result =
        fixture.drainctl(&["resume", "a"]).env("DRAINCTL_CONFIG", "/nonexistent/drainctl.toml").run();
    result.assert_code(78);
    assert!(result.stderr.contains("/nonexistent/drainctl.toml"), "{}", result.stderr);
}

#[test]
fn usage_errors_exit_64() {
    let result = Drainctl::new(&["drain"]).run();
    result.assert_code(64);
    let result = Drainctl::new(&["no-such-command"]).run();
    result.assert_code(64);
    Drainctl::new(&["--help"]).run().assert_code(0);
}

#[test]
fn retry_without_what_to_retry_names_both_choices() {
    let result = Drainctl::new(&["retry", "okd"]).run();
    result.assert_code(64);
    assert!(result.stderr.contains("<--dead|--key <KEY>>"), "{}", result.stderr);
    let both = Drainctl::new(&["retry", "okd", "--dead", "--key", "a"]).run();
    both.assert_code(64);
    assert!(both.stderr.contains("cannot be used with"), "{}", both.stderr);
}

#[test]
fn a_table_written_wrong_is_named_with_how_to_write_it_and_no_internal_type_names() {
    let drain = "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n";
    check(
        "[drain]\nname = \"a\"\ncommand = [\"x\"]\n",
        &[":1:1:", "write [[drain]] with two pairs of brackets"],
    );
    check(
        &format!("[[defaults]]\ntimezone = \"UTC\"\n{drain}"),
        &[":1:1:", "write [defaults] with one pair"],
    );
    check("[[drain]]\nname = \"a\"\n", &[":1:1:", "drain \"a\": missing field `command`"]);
    check(&format!("{drain}window = 5\n"), &["drain \"a\": window:", "expected one table such as { days = "]);
    check(&format!("{drain}max_cost_per_pass = \"5\"\n"), &["max_cost_per_pass:", "expected a number"]);
    check(
        &format!("[defaults]\nretention = 5\n{drain}"),
        &["retention:", "expected a table such as { runs = "],
    );
    check(
        "[[drain]]\nname = \"a\"\ncommand = \"x\"\n",
        &["drain \"a\": command:", "expected an array ([...])"],
    );
}

#[test]
fn a_table_setting_given_as_an_array_is_refused_not_read_by_position() {
    let drain = "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n";
    check(
        &format!("[defaults]\nretention = [\"1d\", \"2d\", \"3d\", \"4d\"]\n{drain}"),
        &[":2:13:", "retention: invalid type: sequence, expected a table such as { runs = "],
    );
    check(
        &format!("{drain}retry_backoff = [\"1m\", \"6h\"]\n"),
        &[":4:17:", "drain \"a\": retry_backoff: invalid type: sequence"],
    );
    check(
        &format!("{drain}source = [\"/data/inbox\", \"*/*.jsonl\", 10, 64, \"5s\"]\n"),
        &[":4:10:", "drain \"a\": source: invalid type: sequence", "{ dir = "],
    );
    check(
        "drain = [[\"a\", [\"x\"]]]\n",
        &[":1:10:", "expected a [[drain]] table with a name and a command"],
    );
    check(
        &format!("[[quota_group]]\nname = \"g\"\naccounts = [[\"x\"]]\n{drain}"),
        &[":3:13:", "accounts: invalid type: sequence, expected an account table"],
    );
}

#[test]
fn a_database_url_written_as_a_string_is_refused_without_its_password() {
    let config = "database = \"postgres://drainctl:TopSecret9@db.example:5432/drainctl\"\n\
                  [[drain]]\nname = \"a\"\ncommand = [\"x\"]\n";
    check(
        config,
        &[":1:12:", "expected a [database] table with a url", "postgres://drainctl:***@db.example"],
    );
    let fixture = Fixture::new(config, "2026-11-27T10:00:00Z");
    for args in [&["resume", "a"][..], &["doctor"], &["doctor", "--json"]] {
        let result = fixture.drainctl(args).run();
        assert_ne!(result.code, 0, "{args:?}");
        assert!(
            !format!("{}{}", result.stdout, result.stderr).contains("TopSecret9"),
            "{args:?}: {}",
            result.stderr
        );
    }
}

#[test]
fn a_number_too_large_for_64_bits_is_named_with_the_limit() {
    let drain = "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n";
    check(
        &format!("{drain}priority = 99999999999999999999\n"),
        &[
            ":4:12:",
            "priority: 99999999999999999999 is too large: a whole number here is at most 9223372036854775807",
        ],
    );
    check(
        &format!("{drain}max_attempts = -99999999999999999999 # none\n"),
        &["max_attempts: -99999999999999999999 is too small: a whole number here is at least -9223372036854775808"],
    );
    check(
        &format!("{drain}source = {{ dir = \"/data\", max_files_per_scan = 0x1ffffffffffffffff }}\n"),
        &["source.max_files_per_scan: 0x1ffffffffffffffff is too large"],
    );
    check(
        &format!("{drain}max_cost_per_pass = 1e999\n"),
        &["max_cost_per_pass: 1e999 is too large for a number"],
    );
}

#[test]
fn dotted_keys_inside_a_table_are_the_tables_they_spell() {
    // TOML's `env.A = "x"` is `env = { A = "x" }`. Before: refused with "invalid type:
    // string \"A\", expected a borrowed string", naming nothing.
    let config = "[defaults]\nretention.runs = \"10d\"\n[[drain]]\nname = \"a\"\ncommand = [\"FAKE_WORKER\"]\n\
                  env.GREETING = \"hello\"\nwindow.days = \"mon-sun\"\nwindow.from = \"00:00\"\nwindow.to = \"24:00\"\n";
    let fixture = Fixture::new(config, "2026-11-27T10:00:00Z");
    fixture.enqueue("a", &[("k".into(), serde_json::json!({ "steps": [{ "env": "GREETING" }] }))]);
    fixture.drainctl(&["drain", "a"]).run().assert_code(0);
    let shown = fixture.drainctl(&["items", "show", "a", "k", "--json"]).run().json();
    assert_eq!(shown["result"].as_str().map(str::trim), Some("GREETING=hello"), "{shown}");
}

#[test]
fn a_bad_value_in_a_dotted_sub_table_is_named_at_its_own_line() {
    // `window.from` on line 6, below the table's first key: before, the error pointed at
    // line 4 (where `window.days` begins the table).
    check(
        "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nwindow.days = \"mon-fri\"\nwindow.to = \"17:00\"\nwindow.from = \"25:00\"\n",
        &[":6:15:", "window: invalid window from time \"25:00\""],
    );
}

#[test]
fn a_key_given_twice_is_named() {
    // toml 0.9 says only "duplicate key": the key is named from the text.
    check(
        "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nmax_attempts = 5\nmax_attempts = 6\n",
        &[":5:1:", "duplicate key `max_attempts`"],
    );
}

#[test]
fn a_whole_number_between_2_63_and_2_64_is_named_with_the_limit() {
    check(
        "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\npriority = 9223372036854775808\n",
        &["priority: 9223372036854775808 is too large: a whole number here is at most 9223372036854775807"],
    );
}

#[test]
fn supervise_refuses_a_descriptor_configuration_whatever_it_reads_before_anything_is_written() {
    let fixture = Fixture::new(
        "[defaults]\nlog_dir = \"TMPDIR/logs\"\n[[drain]]\nname = \"q\"\ncommand = [\"FAKE_WORKER\"]\n",
        "2026-11-27T10:00:00Z",
    );
    let link = fixture.path("config-link");
    std::os::unix::fs::symlink("/dev/stdin", &link).unwrap();
    // A regular file redirected to stdin (before: the pass ran, its drains failed to find
    // themselves in "/dev/stdin", and relative paths resolved against /dev).
    for path in ["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", link.to_str().unwrap()] {
        let file = std::fs::File::open(&fixture.config_path).unwrap();
        let result = fixture
            .drainctl(&["--config", path, "supervise"])
            .env_remove("DRAINCTL_CONFIG")
            .run_with_stdin_from(file);
        result.assert_code(78);
        assert_eq!(
            result.stderr.trim(),
            format!(
                "drainctl: supervise hands its configuration file to the drains it starts, and {path} names a \
                 descriptor handed to this process, or a file in a folder one names, which they cannot open by \
                 that path; give --config the file itself"
            )
        );
    }
    // A file in a folder handed as a descriptor: the drains cannot open it either (before:
    // the pass ran and every drain it started failed to read it).
    let folder = std::fs::File::open(fixture.config_path.parent().unwrap()).unwrap();
    let result = fixture
        .drainctl(&["--config", "/proc/self/fd/0/drainctl.toml", "supervise"])
        .env_remove("DRAINCTL_CONFIG")
        .run_with_stdin_from(folder);
    result.assert_code(78);
    assert!(result.stderr.contains("or a file in a folder one names"), "{}", result.stderr);
    // Nothing written: no schema, no log folder.
    let tables = fixture
        .count("SELECT count(*) FROM information_schema.tables WHERE table_name = 'supervisor_passes'");
    assert_eq!(tables, 0, "the schema was created");
    assert!(!fixture.path("logs").exists(), "a log folder was created");
    // The file itself is supervised.
    fixture.drainctl(&["supervise"]).run().assert_code(0);
}

#[test]
fn a_broken_drainctl_toml_in_the_current_folder_is_refused_not_skipped() {
    let fixture =
        Fixture::new("[[drain]]\nname = \"q\"\ncommand = [\"FAKE_WORKER\"]\n", "2026-11-27T10:00:00Z");
    let folder = fixture.path("work");
    std::fs::create_dir(&folder).unwrap();
    let local = folder.join("drainctl.toml");
    // A folder, then a link leading nowhere (a deploy's `current` link whose release is
    // gone). Before: skipped without a word for /etc/drainctl/drainctl.toml — or, with
    // none, "no configuration file: … or create ./drainctl.toml".
    for broken in ["folder", "dangling link"] {
        match broken {
            "folder" => std::fs::create_dir(&local).unwrap(),
            _ => {
                std::fs::remove_dir(&local).unwrap();
                std::os::unix::fs::symlink(fixture.path("releases/gone/drainctl.toml"), &local).unwrap();
            }
        }
        let result = fixture.drainctl(&["status"]).env_remove("DRAINCTL_CONFIG").current_dir(&folder).run();
        result.assert_code(78);
        assert!(
            result.stderr.contains("./drainctl.toml") && !result.stderr.contains("no configuration file"),
            "{broken}: {}",
            result.stderr
        );
    }
}

#[test]
fn a_relative_path_in_a_configuration_read_from_a_descriptor_is_refused() {
    let fixture = Fixture::new(
        "[defaults]\nlog_dir = \"logs\"\n[[drain]]\nname = \"q\"\ncommand = [\"FAKE_WORKER\"]\n",
        "2026-11-27T10:00:00Z",
    );
    let status = |stdin: std::fs::File| {
        fixture
            .drainctl(&["--config", "/dev/stdin", "status"])
            .env_remove("DRAINCTL_CONFIG")
            .run_with_stdin_from(stdin)
    };
    let result = status(std::fs::File::open(&fixture.config_path).unwrap());
    result.assert_code(78);
    assert_eq!(
        result.stderr.trim(),
        "drainctl: /dev/stdin:2:11: log_dir: \"logs\" is relative, and a configuration read from a descriptor \
         (/dev/stdin) has no folder to resolve it against; write the path absolute, or give --config the file itself"
    );
    // Written absolute, it is read; the file by its path resolves it against its folder.
    fixture.write_config(
        "[defaults]\nlog_dir = \"TMPDIR/logs\"\n[[drain]]\nname = \"q\"\ncommand = [\"FAKE_WORKER\"]\n",
    );
    status(std::fs::File::open(&fixture.config_path).unwrap()).assert_code(0);
    // `-` is stdin too (before: "cannot read configuration file -: No such file or
    // directory").
    let dash = fixture
        .drainctl(&["--config", "-", "status"])
        .env_remove("DRAINCTL_CONFIG")
        .run_with_stdin_from(std::fs::File::open(&fixture.config_path).unwrap());
    dash.assert_code(0);
}

#[test]
fn a_clock_file_that_holds_no_instant_is_named() {
    let fixture = Fixture::new("[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n", "2026-11-27T10:00:00Z");
    let clock = fixture.path("clock");
    std::fs::write(&clock, "tomorrow\n").unwrap();
    let result = fixture.drainctl(&["status"]).env("DRAINCTL_NOW", &format!("@{}", clock.display())).run();
    result.assert_code(78);
    // Before: `DRAINCTL_NOW="tomorrow" is not an RFC 3339 instant`, the file not named.
    assert_eq!(
        result.stderr,
        format!(
            "drainctl: DRAINCTL_NOW=@{}: the file holds \"tomorrow\", not an RFC 3339 instant (e.g. \
             2026-11-27T10:00:00Z)\n",
            clock.display()
        )
    );
}

#[test]
fn an_empty_path_setting_is_refused_at_load_naming_its_key_and_the_fix() {
    let drain = "[[drain]]\nname = \"q\"\ncommand = [\"FAKE_WORKER\"]\n";
    // Before: loaded (status exited 0), then every supervise exited 78 ("could not write
    // metrics_textfile …/: is a directory"), or wrote logs beside the file, or ran the
    // worker in the file's folder.
    for (config, wanted) in [
        (
            format!("[defaults]\nmetrics_textfile = \"\"\n{drain}"),
            ":2:20: metrics_textfile: is empty; name the file to write, or remove the key to write none",
        ),
        (
            format!("[defaults]\nreport_html = \"\"\n{drain}"),
            ":2:15: report_html: is empty; name the file to write, or remove the key to write none",
        ),
        (
            format!("[defaults]\nlog_dir = \" \"\n{drain}"),
            ":2:11: log_dir: is empty; name the folder of the drains' logs, or remove the key for the default",
        ),
        (
            format!("{drain}workdir = \"\"\n"),
            ":4:11: drain \"q\": workdir: is empty; name the worker's working folder, or remove the key for \
             drainctl's own",
        ),
        (format!("[defaults]\nnotify_command = [\"\"]\n{drain}"), ":2:18: notify_command: must name a program"),
        // A path that can only name a folder: the same failure of every pass.
        (
            format!("[defaults]\nmetrics_textfile = \".\"\n{drain}"),
            ":2:20: metrics_textfile: \".\" names a folder, not a file; name the file to write, or remove the key to write none",
        ),
        (
            format!("[defaults]\nreport_html = \"/var/www/\"\n{drain}"),
            ":2:15: report_html: \"/var/www/\" names a folder, not a file; name the file to write, or remove the key to write none",
        ),
    ] {
        let fixture = Fixture::new(&config, "2026-11-27T10:00:00Z");
        let result = fixture.drainctl(&["status"]).run();
        result.assert_code(78);
        assert_eq!(
            result.stderr.trim(),
            format!("drainctl: {}{wanted}", fixture.config_path.display()),
            "{config}"
        );
    }
}

#[test]
fn a_drain_named_show_is_pointed_to_the_listing_that_works_for_it() {
    let fixture =
        Fixture::new("[[drain]]\nname = \"show\"\ncommand = [\"FAKE_WORKER\"]\n", "2026-11-27T10:00:00Z");
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    // Before: "`drainctl items show` lists them", which asks for a drain and a key.
    for args in [&["items", "show", "show", "k"][..], &["retry", "show", "--key", "k"]] {
        let missing = fixture.drainctl(args).run();
        missing.assert_code(65);
        assert!(
            missing.stderr.contains("has no item with key \"k\"; `drainctl items -- show` lists them"),
            "{}",
            missing.stderr
        );
    }
    fixture.drainctl(&["items", "--", "show"]).run().assert_code(0);
}
