//! What drainctl keeps from the programs it starts and the files and terminals it writes:
//! the database credentials stay out of workers and notifiers, the metrics textfile is
//! written without following anyone's links, and text from workers and items is escaped
//! before it reaches a terminal or a log line.

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

fn config(defaults: &str, drain: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n{defaults}\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nmax_attempts = 1\n{drain}"
    )
}

/// The stored result of item `key` as text.
fn result_of(fixture: &Fixture, key: &str) -> String {
    let row = fixture.client().query_one("SELECT result FROM items WHERE key = $1", &[&key]).unwrap();
    String::from_utf8_lossy(&row.get::<_, Vec<u8>>(0)).into_owned()
}

// ---------------------------------------------------------------------------------------
// the database credentials

/// `drain docs` with the database URL in all three variables drainctl or libpq read, and
/// without the test harness's own copies of the cluster's URL, which are none of drainctl's
/// business.
fn drain_with_credentials_in_the_environment(fixture: &Fixture) -> Finished {
    let password = fixture.db.password();
    let mut command = fixture.drainctl(&["drain", "docs", "--json"]);
    for (name, value) in std::env::vars() {
        if value.contains(&password) {
            command = command.env_remove(&name);
        }
    }
    command.env("DATABASE_URL", &fixture.db.url).env("PGPASSWORD", &password).run()
}

#[test]
fn doctor_warns_of_a_worker_or_notifier_another_user_may_change() {
    use std::os::unix::fs::PermissionsExt;
    // Before: `ok worker` for a script every user could rewrite, which drainctl runs as root.
    let fixture = Fixture::new(
        &config("notify_command = [\"TMPDIR/shared/notify.sh\"]\n", "")
            .replace("[\"FAKE_WORKER\"]", "[\"TMPDIR/worker.sh\"]"),
        NOW,
    );
    let worker = fixture.path("worker.sh");
    std::fs::write(&worker, "#!/bin/sh\necho ok\n").unwrap();
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o777)).unwrap();
    let shared = fixture.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let notifier = shared.join("notify.sh");
    std::fs::write(&notifier, "#!/bin/sh\ncat >/dev/null\n").unwrap();
    std::fs::set_permissions(&notifier, std::fs::Permissions::from_mode(0o755)).unwrap();
    // doctor's check `name` as (status, message).
    let check = |name: &str| -> (String, String) {
        let doctor = fixture.drainctl(&["doctor", "--json"]).run().json();
        let found = doctor["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|check| check["check"] == name).cloned())
            .unwrap_or_default();
        let text = |field: &str| found[field].as_str().unwrap_or_default().to_string();
        (text("status"), text("message"))
    };
    let warning = |name: &str| Some(check(name)).filter(|(status, _)| status == "warn").unwrap_or_default().1;
    let checks = (check("worker"), check("notify_command"));
    assert!(warning("worker").contains("may be changed by every user (mode 0777)"), "{checks:?}");
    assert!(warning("notify_command").contains("where every user may replace it"), "{checks:?}");
    // Named by a link in a folder of root's: the folder it resolves to counts too.
    let link = fixture.path("notify-link.sh");
    std::os::unix::fs::symlink(&notifier, &link).unwrap();
    let config =
        std::fs::read_to_string(&fixture.config_path).unwrap().replace("shared/notify.sh", "notify-link.sh");
    std::fs::write(&fixture.config_path, config).unwrap();
    let linked = check("notify_command");
    assert_eq!(linked.0, "warn", "{linked:?}");
    // A link on the way that sits in a folder every user may write: it may be replaced.
    let owner_only = fixture.path("owner-only");
    std::fs::create_dir(&owner_only).unwrap();
    let real = owner_only.join("notify.sh");
    std::fs::copy(&notifier, &real).unwrap();
    std::fs::remove_file(shared.join("notify.sh")).unwrap();
    std::os::unix::fs::symlink(&real, shared.join("notify.sh")).unwrap();
    let hop = check("notify_command");
    assert_eq!(hop.0, "warn", "{hop:?}");
    // Owner-only: ok again.
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let statuses = [check("worker").0, check("notify_command").0];
    assert_eq!(statuses, ["ok", "ok"], "{statuses:?}");
    // A script whose #! line names a program every user may change runs what they chose
    // (before: `ok`).
    let interpreter = fixture.path("interpreter");
    std::fs::write(&interpreter, "#!/bin/sh\nexec /bin/sh \"$@\"\n").unwrap();
    std::fs::set_permissions(&interpreter, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(&worker, format!("#!{}\necho ok\n", interpreter.display())).unwrap();
    let (status, message) = check("worker");
    assert_eq!(status, "warn", "{message}");
    assert!(message.contains(&format!("runs {} (its #! line)", interpreter.display())), "{message}");
    assert!(message.contains("may be changed by every user"), "{message}");
    // A folder above the worker's own that every user may write: they may swap the
    // worker's folder for one of theirs (before: `ok`).
    std::fs::write(&worker, "#!/bin/sh\necho ok\n").unwrap();
    let above = fixture.path("above");
    std::fs::create_dir_all(above.join("sub")).unwrap();
    std::fs::set_permissions(&above, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(&worker, above.join("sub/worker.sh")).unwrap();
    let config = std::fs::read_to_string(&fixture.config_path)
        .unwrap()
        .replace("/worker.sh\"", "/above/sub/worker.sh\"");
    std::fs::write(&fixture.config_path, config).unwrap();
    let (status, message) = check("worker");
    assert_eq!(status, "warn", "{message}");
    assert!(
        message.contains(&format!("is below {}, where every user may replace it", above.display())),
        "{message}"
    );
    std::fs::set_permissions(&above, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(check("worker").0, "ok");
}

#[test]
fn a_worker_that_prints_its_environment_stores_neither_the_database_url_nor_the_password() {
    let fixture = Fixture::new(&config("", "").replace("[\"FAKE_WORKER\"]", "[\"env\"]"), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    drain_with_credentials_in_the_environment(&fixture).assert_code(0);
    let result = result_of(&fixture, "a");
    assert!(result.contains("DRAIN_ITEM_KEY=a"), "the worker printed its environment: {result}");
    let password = fixture.db.password();
    assert!(!result.contains(&password), "the password reached the worker: {result}");
    for name in ["DATABASE_URL=", "DRAINCTL_DATABASE_URL=", "PGPASSWORD="] {
        assert!(!result.lines().any(|line| line.starts_with(name)), "{name} reached the worker: {result}");
    }
}

#[test]
fn doctor_warns_of_a_configuration_in_a_folder_its_group_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new(&config("", ""), NOW);
    let folder = fixture.path("shared-config");
    std::fs::create_dir(&folder).unwrap();
    let file = folder.join("drainctl.toml");
    std::fs::copy(&fixture.config_path, &file).unwrap();
    // The folder of a group this user is not (`nogroup`), which may write it.
    std::os::unix::fs::chown(&folder, None, Some(65534)).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o2775)).unwrap();
    let doctor = fixture.drainctl(&["--config", file.to_str().unwrap(), "doctor"]).run();
    // Before: "ok config", though a member could rename another file over it.
    assert!(
        doctor.stdout.contains(&format!(
            "warn  config: configuration file {} is in {}, where its group (gid 65534) may replace it",
            file.display(),
            folder.display()
        )),
        "{}",
        doctor.stdout
    );
}

#[test]
fn a_configuration_linked_into_another_users_checkout_is_refused_naming_where_the_link_leads() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give the file away
    }
    let fixture = Fixture::new(&config("", ""), NOW);
    // A deploy user's checkout, linked from root's folder.
    let checkout = fixture.path("checkout");
    std::fs::create_dir(&checkout).unwrap();
    let file = checkout.join("drainctl.toml");
    std::fs::copy(&fixture.config_path, &file).unwrap();
    std::os::unix::fs::chown(&checkout, Some(65534), None).unwrap();
    std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
    let link = fixture.path("linked.toml");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let result = fixture.drainctl(&["--config", link.to_str().unwrap(), "status"]).run();
    result.assert_code(78);
    // Before: "… chown root linked.toml", after which the folder was refused in turn.
    assert!(
        result.stderr.contains(&format!(
            "configuration file {} (a link to {})",
            link.display(),
            file.display()
        )) && result.stderr.contains("or copy it into a folder only root may write, and name that copy"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_worker_started_under_pm2_gets_no_node_channel_without_its_descriptor() {
    // pm2 starts drainctl with `NODE_CHANNEL_FD=3`; the descriptor is withheld from
    // workers, so the variable must be too. Before, a Node.js worker (gemini-cli, codex)
    // aborted at its start (signal 6) and every item failed.
    let fixture = Fixture::new(&config("", "").replace("[\"FAKE_WORKER\"]", "[\"env\"]"), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    fixture
        .drainctl(&["drain", "docs"])
        .env("NODE_CHANNEL_FD", "3")
        .env("NODE_CHANNEL_SERIALIZATION_MODE", "json")
        .run()
        .assert_code(0);
    let result = result_of(&fixture, "a");
    assert!(result.contains("DRAIN_ITEM_KEY=a"), "the worker printed its environment: {result}");
    assert!(!result.contains("NODE_CHANNEL_"), "{result}");
}

#[test]
fn a_worker_cannot_read_the_password_from_its_drains_own_environment() {
    let worker = r#"["sh", "-c", "tr '\\0' '\\n' < /proc/$PPID/environ; echo read=$?"]"#;
    let fixture = Fixture::new(&config("", "").replace("[\"FAKE_WORKER\"]", worker), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    // The worker runs as the drain's user, as it does in production; root reads any
    // process's environment, so as root both run as `nobody`.
    let command = if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::PermissionsExt;
        let binary = fixture.path("drainctl");
        std::fs::copy(DRAINCTL, &binary).unwrap();
        std::fs::set_permissions(fixture.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(fixture.path("state")).unwrap();
        std::fs::set_permissions(fixture.path("state"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let binary = binary.display().to_string();
        let args = ["--reuid=65534", "--regid=65534", "--clear-groups", binary.as_str(), "drain", "docs"];
        fixture.with_env(Drainctl::program("setpriv", &args))
    } else {
        fixture.drainctl(&["drain", "docs"])
    };
    let password = fixture.db.password();
    command.env("PGPASSWORD", &password).run().assert_code(0);
    let result = result_of(&fixture, "a");
    // Before: the drain's environment, DRAINCTL_DATABASE_URL and PGPASSWORD included.
    assert!(
        result.contains("read=") && !result.contains("read=0"),
        "the worker read its drain's environment: {result}"
    );
    assert!(!result.contains(&password), "the password reached the worker: {result}");
}

#[test]
fn a_drain_env_that_sets_the_database_url_hands_it_to_the_worker() {
    let fixture = Fixture::new(
        &config(
            "",
            "env = { DATABASE_URL = \"postgres://app@db.example/app\", PGPASSWORD = \"given-on-purpose\" }\n",
        )
        .replace("[\"FAKE_WORKER\"]", "[\"env\"]"),
        NOW,
    );
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    drain_with_credentials_in_the_environment(&fixture).assert_code(0);
    let result = result_of(&fixture, "a");
    assert!(result.lines().any(|line| line == "DATABASE_URL=postgres://app@db.example/app"), "{result}");
    assert!(result.lines().any(|line| line == "PGPASSWORD=given-on-purpose"), "{result}");
    assert!(!result.contains(&fixture.db.password()), "drainctl's own password leaked: {result}");
    assert!(!result.lines().any(|line| line.starts_with("DRAINCTL_DATABASE_URL=")), "{result}");
}

#[test]
fn a_notifier_gets_neither_the_database_url_nor_the_password() {
    let fixture =
        Fixture::new(&config("notify_command = [\"sh\", \"-c\", \"env > TMPDIR/notifier.env\"]\n", ""), NOW);
    fixture.enqueue("docs", &[("bad".into(), json!({ "steps": [{ "exit": 4 }] }))]);
    drain_with_credentials_in_the_environment(&fixture).assert_code(0);
    let seen = std::fs::read_to_string(fixture.path("notifier.env")).expect("the notifier ran");
    assert!(seen.contains("PATH="), "the notifier printed its environment: {seen}");
    assert!(!seen.contains(&fixture.db.password()), "the password reached the notifier: {seen}");
    for name in ["DATABASE_URL=", "DRAINCTL_DATABASE_URL=", "PGPASSWORD="] {
        assert!(!seen.lines().any(|line| line.starts_with(name)), "{name} reached the notifier: {seen}");
    }
}

#[test]
fn a_worker_printing_the_database_url_or_its_password_leaves_neither_in_errors_events_or_notifications() {
    let fixture =
        Fixture::new(&config("notify_command = [\"sh\", \"-c\", \"cat >> TMPDIR/notified\"]\n", ""), NOW);
    let (url, password) = (fixture.db.url.clone(), fixture.db.password());
    let other = "postgres://app:Other-Pass-99@db.internal/app";
    let steps = |text: String| json!({ "steps": [{ "err": text }, { "exit": 1 }] });
    fixture.enqueue(
        "docs",
        &[
            ("url".into(), steps(format!("could not connect to {url}"))),
            ("bare".into(), steps(format!("PGPASSWORD={password}"))),
            ("other".into(), steps(format!("dsn={other} refused"))),
        ],
    );
    fixture.drainctl(&["drain", "docs"]).env("DATABASE_URL", &url).run().assert_code(0);
    let mut seen = std::fs::read_to_string(fixture.path("notified")).expect("the notifier ran");
    for key in ["url", "bare", "other"] {
        // All but the payload, which the test itself wrote the password into.
        let mut shown = fixture.drainctl(&["items", "show", "docs", key, "--json"]).run().json();
        shown.as_object_mut().unwrap().remove("payload").expect("a payload is shown");
        seen += &shown.to_string();
    }
    seen += &fixture.drainctl(&["events", "--json"]).run().stdout;
    for row in fixture.client().query("SELECT convert_from(stderr_tail, 'UTF8') FROM items", &[]).unwrap() {
        seen += &row.get::<_, String>(0);
    }
    assert!(seen.contains("could not connect to postgres://"), "{seen}");
    assert!(seen.contains("PGPASSWORD=***"), "{seen}");
    assert!(seen.contains("dsn=postgres://app:***@db.internal/app refused"), "{seen}");
    assert!(!seen.contains(&password), "the password was kept or sent: {seen}");
    assert!(!seen.contains("Other-Pass-99"), "another URL's password was kept or sent: {seen}");
}

#[test]
fn a_password_the_kept_tail_cuts_in_half_is_masked_all_the_same() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let password = fixture.db.password();
    let after = format!(" again {password} and more\n");
    // The tail begins five characters into the first password: what is kept of it is no
    // longer the whole password, but the most of it; the second, whole, is masked, which
    // shortens the text the tail is cut from.
    let tail = password.len() - 5 + after.len();
    fixture.write_config(&config("", &format!("stderr_tail_bytes = {tail}\n")));
    let text = format!("{} the password is {password}{}", "x".repeat(50), after.trim_end());
    fixture.enqueue("docs", &[("cut".into(), json!({ "steps": [{ "err": text }, { "exit": 1 }] }))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let shown = fixture.drainctl(&["items", "show", "docs", "cut", "--json"]).run().json();
    let mut seen = shown["last_error"].to_string() + &shown["stderr_tail"].to_string();
    seen += &fixture.drainctl(&["events", "--json"]).run().stdout;
    let row = fixture.client().query_one("SELECT stderr_tail FROM items WHERE key = 'cut'", &[]).unwrap();
    let stored = String::from_utf8_lossy(&row.get::<_, Vec<u8>>(0)).into_owned();
    assert!(
        stored.ends_with(" again *** and more\n"),
        "the tail is still the end of stderr, masked: {stored:?}"
    );
    assert!(stored.len() <= tail, "no more than stderr_tail_bytes is kept: {stored:?}");
    seen += &stored;
    let fragment = &password[5..];
    assert!(!seen.contains(fragment), "the cut password was kept: {seen}");
}

#[test]
fn a_password_a_terminal_or_json_escape_splits_is_masked_where_it_is_read_whole() {
    let fixture = Fixture::new(
        &config("", "")
            .replace("max_attempts = 1\n", "max_attempts = 1\nquota_profile = \"http\"\nmax_wait = \"0s\"\n"),
        NOW,
    );
    let password = fixture.db.password();
    let (head, tail) = password.split_at(6);
    // As a terminal shows it, and as a JSON message decodes it, the password is whole.
    let colour = format!("Error: password {head}\u{1b}[0m{tail}");
    let json_escaped = format!(
        "{{\"type\":\"error\",\"message\":\"key {head}\\u{:04x}{}\"}}",
        tail.chars().next().unwrap() as u32,
        &tail[1..]
    );
    let limit = format!("Error: 429 Too Many Requests for key {head}\u{1b}[0m{tail}");
    fixture.enqueue(
        "docs",
        &[
            ("colour".into(), json!({ "steps": [{ "err": colour }, { "exit": 1 }] })),
            ("json".into(), json!({ "steps": [{ "out": json_escaped }, { "exit": 1 }] })),
        ],
    );
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    fixture
        .enqueue("docs", &[("limit".into(), json!({ "steps": [{ "err": limit.clone() }, { "exit": 1 }] }))]);
    let pass = fixture.drainctl(&["drain", "docs"]).run();
    let mut seen = pass.stdout + &pass.stderr;
    for key in ["colour", "json"] {
        let shown = fixture.drainctl(&["items", "show", "docs", key, "--json"]).run().json();
        assert!(shown["last_error"].as_str().unwrap_or_default().contains("***"), "{shown}");
        seen += &shown["last_error"].to_string();
        seen += &shown["stderr_tail"].to_string();
    }
    seen += &fixture.drainctl(&["items", "docs"]).run().stdout;
    seen += &fixture.drainctl(&["status", "--json"]).run().stdout;
    seen += &fixture.drainctl(&["status"]).run().stdout;
    // All but the payloads, which the test itself wrote the password into.
    for line in fixture.drainctl(&["export", "docs"]).run().stdout.lines() {
        let mut item: serde_json::Value = serde_json::from_str(line).unwrap();
        item.as_object_mut().unwrap().remove("payload");
        seen += &item.to_string();
    }
    seen += &fixture.drainctl(&["report", "--html", "-o", "-"]).run().stdout;
    seen += &fixture
        .drainctl(&["quota", "test", "--profile", "http", "--exit-code", "1"])
        .stdin(limit + "\n")
        .run()
        .stdout;
    for row in fixture
        .client()
        .query("SELECT convert_from(stderr_tail, 'UTF8') FROM items WHERE stderr_tail IS NOT NULL", &[])
        .unwrap()
    {
        seen += &row.get::<_, String>(0);
    }
    assert!(seen.contains("Too Many Requests for key ***"), "the limit is still read: {seen}");
    // Before: the password whole in the item's error, the backoff's reason, status, export,
    // the page and quota test's matched line.
    assert!(!seen.contains(tail), "the password was shown: {seen}");
}

#[test]
fn quota_test_masks_the_password_in_the_lines_it_quotes() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let (url, password) = (fixture.db.url.clone(), fixture.db.password());
    for (text, wanted) in [
        (format!("Error: server error 500 {url}\n"), "server error"),
        (format!("usage limit reached for {password}, resets 8pm\n"), "quota hit"),
    ] {
        let result = fixture.drainctl(&["quota", "test", "--exit-code", "1"]).stdin(text).run();
        result.assert_code(0);
        assert!(result.stdout.starts_with(wanted), "{}", result.stdout);
        assert!(result.stdout.contains("***"), "{}", result.stdout);
        assert!(!result.stdout.contains(&password), "the password was printed: {}", result.stdout);
    }
}

#[test]
fn a_command_line_or_configuration_that_fails_to_load_never_quotes_the_password() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let password = fixture.db.password();
    let masked = |result: &Finished, code: i32| {
        result.assert_code(code);
        for text in [&result.stdout, &result.stderr] {
            assert!(!text.contains(&password), "the password was printed: {text}");
        }
        // (A worker's env of the wrong type is not quoted at all.)
        let hidden = ["***", "not shown, as it may be a secret"];
        assert!(hidden.iter().any(|hidden| result.stderr.contains(hidden)), "{}", result.stderr);
    };
    // A value the command line refuses is quoted back: before, before any URL was read.
    for args in [
        &["events", "--kind", &password][..],
        &["--lock-timeout", &password, "status"],
        &["runs", "show", &password],
        &["quota", "test", "--tz", &password],
    ] {
        masked(&fixture.drainctl(args).stdin(String::new()).run(), 64);
    }
    // A configuration of the wrong type quotes its value: the password the worker's env was
    // meant to have, or a command where the file's own URL is.
    fixture.write_config(&format!(
        "[[drain]]\nname = \"docs\"\ncommand = [\"true\"]\nenv = \"PGPASSWORD={password}\"\n"
    ));
    masked(&fixture.drainctl(&["status"]).run(), 78);
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    assert!(!doctor.stdout.contains(&password) && !doctor.stderr.contains(&password), "{}", doctor.stdout);
    let url = fixture.db.url.clone();
    fixture.write_config(&format!(
        "[database]\nurl = \"{url}\"\n[[drain]]\nname = \"docs\"\ncommand = \"{password}\"\n"
    ));
    masked(&fixture.drainctl(&["status"]).env_remove("DRAINCTL_DATABASE_URL").run(), 78);
    // doctor does not say the file sets no URL: it did not load, so it was not read.
    let doctor = fixture.drainctl(&["doctor", "--json"]).env_remove("DRAINCTL_DATABASE_URL").run();
    let checks = doctor.json()["checks"].clone();
    let database =
        checks.as_array().unwrap().iter().find(|check| check["check"] == "database").unwrap().clone();
    assert_eq!(database["status"], "skip", "{database}");
    // However the file writes its url: an inline table, a quoted key.
    for database in
        [format!("database = {{ url = \"{url}\" }}\n"), format!("\"database\".\"url\" = '{url}'\n")]
    {
        fixture.write_config(&format!(
            "{database}[[drain]]\nname = \"docs\"\ncommand = [\"true\"]\nenv = \"PGPASSWORD={password}\"\n"
        ));
        masked(&fixture.drainctl(&["status"]).env_remove("DRAINCTL_DATABASE_URL").run(), 78);
    }
    // A piece of it a message quotes (a duration's unit), or a word of a deadline.
    fixture.write_config(&config("", ""));
    let piece = format!("1{password}");
    masked(&fixture.drainctl(&["--lock-timeout", &piece, "status"]).run(), 64);
    masked(&fixture.drainctl(&["burst", "on", "docs", "--until", &format!("sat {password}")]).run(), 64);
    // doctor's report quotes what it was given: a PATH, a workdir.
    fixture.write_config(&format!(
        "[[drain]]\nname = \"docs\"\ncommand = [\"true\"]\nworkdir = \"/nonexistent/{password}\"\n"
    ));
    let doctor = fixture.drainctl(&["doctor", "--cron-path", &format!("/opt/{password}")]).run();
    for text in [&doctor.stdout, &doctor.stderr] {
        assert!(!text.contains(&password), "doctor printed the password: {text}");
    }
    // A run's note names the workdir it could not use.
    fixture.enqueue("docs", &[("a".into(), serde_json::json!(1))]);
    let pass = fixture.drainctl(&["drain", "docs"]).run();
    assert!(!pass.stdout.contains(&password) && !pass.stderr.contains(&password), "{pass:?}");
    let notes: Vec<Option<String>> = fixture.column("SELECT note FROM runs");
    assert!(notes.iter().flatten().all(|note| !note.contains(&password)), "{notes:?}");
}

#[test]
fn debug_logging_leaves_out_the_drivers_lines_quoting_payloads_and_results() {
    let fixture = Fixture::new(&config("", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "result-marker-7f3a" }] }))]);
    let result = fixture.drainctl(&["-vv", "drain", "docs"]).run();
    result.assert_code(0);
    assert!(result.stderr.contains("drainctl: info: drain docs: item a done"), "{}", result.stderr);
    for driver in ["preparing query", "with parameters"] {
        assert!(!result.stderr.contains(driver), "the driver's statement lines: {}", result.stderr);
    }
    // As decimal bytes, which is how the driver quotes a bytea parameter.
    let as_bytes = format!("{:?}", b"result-marker-7f3a".to_vec()).replace(' ', "");
    assert!(!result.stderr.replace(' ', "").contains(&as_bytes[1..as_bytes.len() - 1]), "{}", result.stderr);
}

// ---------------------------------------------------------------------------------------
// the configuration file

#[test]
fn a_configuration_file_another_user_could_change_is_refused_before_anything_runs() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new(&config("", ""), NOW);
    fixture.enqueue(
        "docs",
        &[("a".into(), json!({ "steps": [{ "touch": fixture.path("ran").to_str().unwrap() }] }))],
    );
    let shown = fixture.config_path.display().to_string();
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    for args in [&["drain", "docs"][..], &["supervise"], &["doctor"]] {
        let result = fixture.drainctl(args).run();
        result.assert_code(78);
        let wanted = format!(
            "configuration file {shown} is writable by every user (mode 0666), who could change the programs \
             drainctl runs; make it writable by its owner only: chmod go-w {shown}"
        );
        assert!(result.stderr.contains(&wanted), "{args:?}: {}", result.stderr);
    }
    assert!(!fixture.path("ran").exists(), "the worker ran");
    // Its group may write it: run, and doctor warns.
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o664)).unwrap();
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    let checks = doctor.json()["checks"].clone();
    let warning = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["check"] == "config" && check["status"] == "warn");
    let message = warning.map(|check| check["message"].as_str().unwrap().to_string()).unwrap_or_default();
    assert!(message.contains("its group may write it (mode 0664)"), "{checks}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give the file away
    }
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&fixture.config_path, Some(65534), None).unwrap();
    let result = fixture.drainctl(&["drain", "docs"]).run();
    result.assert_code(78);
    let wanted = format!(
        "configuration file {shown} belongs to nobody (uid 65534), not to root, who runs drainctl, \
         and its owner could change the programs drainctl runs; run drainctl as its owner, or chown root {shown}"
    );
    assert!(result.stderr.contains(&wanted), "{}", result.stderr);
    assert!(!fixture.path("ran").exists(), "the worker ran");
    std::os::unix::fs::chown(&fixture.config_path, Some(0), None).unwrap();
    // A named pipe planted in the file's place is judged as a file is (before: read, and
    // its commands run); the caller's own stdin is read as it comes, but not by supervise.
    let fifo = fixture.path("planted.fifo");
    make_fifo(&fifo, 0o666);
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    // Refused without a writer: before, the pass waited in its open for one, for as long
    // as its planter chose, deaf to SIGTERM.
    let result = fixture.drainctl(&["--config", fifo.to_str().unwrap(), "drain", "docs"]).run();
    result.assert_code(78);
    assert!(result.stderr.contains("is writable by every user (mode 0666)"), "{}", result.stderr);
    // A pipe of its own is read as it comes, its writer waiting already or coming later.
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o600)).unwrap();
    for writer_first in [true, false] {
        let writer = {
            let (fifo, text) = (fifo.clone(), text.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                pipe.write_all(text.as_bytes()).unwrap();
            })
        };
        if writer_first {
            // Let the writer block in its open (before: the second opening waited for ever).
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let result = fixture.drainctl(&["--config", fifo.to_str().unwrap(), "status"]).run();
        result.assert_code(0);
        writer.join().unwrap();
    }
    let result = fixture.drainctl(&["--config", "/dev/stdin", "status"]).stdin(text.clone()).run();
    result.assert_code(0);
    let result = fixture.drainctl(&["--config", "/dev/stdin", "supervise"]).stdin(text).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("supervise hands its configuration file to the drains it starts"),
        "{}",
        result.stderr
    );
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    assert!(fixture.path("ran").exists(), "a file of root's runs");
}

#[test]
fn a_configuration_another_user_could_swap_by_a_link_or_a_folder_is_refused() {
    // Before: root's file behind a link of nobody's, or in a folder every user may write,
    // was loaded, and a running pass took up whatever the link was turned to.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give a link away
    }
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new(&config("", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    let link = fixture.path("linked.toml");
    std::os::unix::fs::symlink(&fixture.config_path, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let result = fixture.drainctl(&["--config", link.to_str().unwrap(), "drain", "docs"]).run();
    result.assert_code(78);
    let wanted = format!(
        "configuration file {} is reached through the symbolic link {}, which belongs to nobody (uid 65534)",
        link.display(),
        link.display()
    );
    assert!(result.stderr.contains(&wanted), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts"), 0, "the worker ran");
    // Root's own link is followed.
    std::os::unix::fs::lchown(&link, Some(0), Some(0)).unwrap();
    fixture.drainctl(&["--config", link.to_str().unwrap(), "status"]).run().assert_code(0);
    // Root's file in a folder every user may write (not sticky), or one nobody owns.
    let open = fixture.path("open");
    std::fs::create_dir(&open).unwrap();
    let inside = open.join("drainctl.toml");
    std::fs::copy(&fixture.config_path, &inside).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let result = fixture.drainctl(&["--config", inside.to_str().unwrap(), "status"]).run();
    result.assert_code(78);
    assert!(
        result
            .stderr
            .contains(&format!("is in {}, where every user may replace it (mode 0777)", open.display())),
        "{}",
        result.stderr
    );
    // Named from the folder it is in, as cron's `./drainctl.toml` of its home folder is.
    let result = fixture.drainctl(&["--config", "drainctl.toml", "status"]).current_dir(&open).run();
    result.assert_code(78);
    assert!(result.stderr.contains("where every user may replace it (mode 0777)"), "{}", result.stderr);
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&open, Some(65534), Some(65534)).unwrap();
    let result = fixture.drainctl(&["--config", inside.to_str().unwrap(), "status"]).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("whose owner may replace it (that folder belongs to nobody (uid 65534)"),
        "{}",
        result.stderr
    );
    // Reached through root's link (a checkout's file linked from /etc): the link is named.
    let etc_link = fixture.path("etc-drainctl.toml");
    std::os::unix::fs::symlink(&inside, &etc_link).unwrap();
    let result = fixture.drainctl(&["--config", etc_link.to_str().unwrap(), "status"]).run();
    result.assert_code(78);
    let wanted = format!(
        "leads, through the symbolic link {}, below {}, whose owner",
        etc_link.display(),
        open.display()
    );
    assert!(result.stderr.contains(&wanted), "{}", result.stderr);
    // The service user's own file in its own folder: the file's owner is what to fix.
    std::os::unix::fs::chown(&inside, Some(65534), Some(65534)).unwrap();
    let result = fixture.drainctl(&["--config", inside.to_str().unwrap(), "status"]).run();
    result.assert_code(78);
    assert!(result.stderr.contains("run drainctl as its owner"), "{}", result.stderr);
    std::os::unix::fs::chown(&inside, Some(0), Some(0)).unwrap();
    // Sticky, it is still its owner's to rename in (before: loaded).
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1755)).unwrap();
    let result = fixture.drainctl(&["--config", inside.to_str().unwrap(), "status"]).run();
    result.assert_code(78);
    assert!(result.stderr.contains("whose owner may replace it"), "{}", result.stderr);
    // A sticky folder of root's (`/tmp`) keeps root's file root's.
    std::os::unix::fs::chown(&open, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    fixture.drainctl(&["--config", inside.to_str().unwrap(), "status"]).run().assert_code(0);
}

#[test]
fn a_source_dir_or_workdir_reached_through_another_users_link_is_refused() {
    // Before: scanned and run in, so root's files went to the workers (and their vendor).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give a link away
    }
    let fixture = Fixture::new(&config("", ""), NOW);
    let private = fixture.path("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("secret.txt"), "root's\n").unwrap();
    let inbox = fixture.path("inbox");
    std::os::unix::fs::symlink(&private, &inbox).unwrap();
    std::os::unix::fs::lchown(&inbox, Some(65534), Some(65534)).unwrap();
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    let scanned = text.replace(
        "name = \"docs\"",
        &format!(
            "name = \"docs\"\nworkdir = \"{}\"\nsource = {{ dir = \"{}\", glob = \"*.txt\" }}",
            inbox.display(),
            inbox.display()
        ),
    );
    assert_ne!(scanned, text);
    fixture.write_config(&scanned);
    let scan = fixture.drainctl(&["scan", "docs"]).run();
    scan.assert_code(78);
    assert!(
        scan.stderr.contains(&format!(
            "source dir {} is reached through the symbolic link {}, which belongs to nobody (uid 65534)",
            inbox.display(),
            inbox.display()
        )),
        "{}",
        scan.stderr
    );
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0);
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    let drain = fixture.drainctl(&["drain", "docs"]).run();
    drain.assert_code(78);
    assert!(drain.stderr.contains("is reached through the symbolic link"), "{}", drain.stderr);
    assert_eq!(
        fixture.column::<String>("SELECT state || ' ' || attempts FROM items"),
        ["pending 0"],
        "kept for a fixed configuration"
    );
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(78);
    for check in ["fail  workdir: drain docs: worker directory", "fail  source: drain docs: source dir"] {
        assert!(doctor.stdout.contains(check), "{check}: {}", doctor.stdout);
    }
}

#[test]
fn a_link_planted_at_a_drains_log_folder_is_refused_and_nothing_written_through_it() {
    let fixture = Fixture::new(&config("", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    let victim = fixture.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::create_dir_all(fixture.path("logs")).unwrap();
    let planted = fixture.path("logs/docs");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let result = fixture.drainctl(&["supervise"]).run();
    result.assert_code(78);
    let wanted = format!(
        "log folder {} is a symbolic link; drainctl writes a drain's logs only into a folder of its own",
        planted.display()
    );
    assert!(result.stderr.contains(&wanted), "{}", result.stderr);
    assert!(names_in(&victim).is_empty(), "written through the link: {:?}", names_in(&victim));
    assert_eq!(fixture.item("docs", "a").0, "pending", "the drain was not started");
    let recorded: i64 = fixture
        .client()
        .query_one(
            "SELECT count(*) FROM events WHERE kind = 'supervise_error' AND message LIKE '%symbolic link%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(recorded, 1, "the refusal is recorded");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fixture.path("logs"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    // doctor says both: others may write log_dir, and the drain's folder there is a link
    // every start would refuse.
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    doctor.assert_code(78);
    let checks = doctor.json()["checks"].clone();
    let log_dir: Vec<(String, String)> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["check"] == "log_dir")
        .map(|check| {
            (check["status"].as_str().unwrap().to_string(), check["message"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(log_dir.len(), 2, "{checks}");
    assert_eq!(log_dir[0].0, "warn", "{checks}");
    assert_eq!(log_dir[1].0, "fail", "{checks}");
    assert!(
        log_dir[1].1.contains(&format!("log folder {} is a symbolic link", planted.display())),
        "{checks}"
    );
}

// ---------------------------------------------------------------------------------------
// the metrics textfile

/// The names in a folder, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_symlink_planted_at_the_metrics_textfile_is_refused_and_its_victim_unchanged() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new(&config("", ""), NOW);
    let victim = fixture.path("victim");
    std::fs::write(&victim, "root only\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let textfiles = fixture.path("textfile");
    std::fs::create_dir(&textfiles).unwrap();
    let target = textfiles.join("drainctl.prom");
    std::os::unix::fs::symlink(&victim, &target).unwrap();
    let result = fixture.drainctl(&["metrics", "--textfile", target.to_str().unwrap()]).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains(&format!("metrics textfile {} is a symbolic link", target.display())),
        "{}",
        result.stderr
    );
    assert_eq!(result.stderr.lines().count(), 1, "one line: {}", result.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root only\n");
    assert_eq!(std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_link(&target).unwrap(), victim, "the link itself is left alone");
    assert_eq!(names_in(&textfiles), ["drainctl.prom"], "no temporary file is left behind");
}

#[test]
fn a_metrics_textfile_that_is_not_a_regular_file_is_refused_with_78() {
    let fixture = Fixture::new(&config("", ""), NOW);
    // A fifo stands for a device node such as /dev/full: made here, so no system file is
    // ever at stake.
    let fifo = fixture.path("metrics.fifo");
    make_fifo(&fifo, 0o600);
    let result = fixture.drainctl(&["metrics", "--textfile", fifo.to_str().unwrap()]).run();
    result.assert_code(78);
    assert!(
        result
            .stderr
            .contains(&format!("metrics textfile {} exists and is not a regular file", fifo.display())),
        "{}",
        result.stderr
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the fifo is still there");
    assert!(!names_in(fixture.dir.path()).iter().any(|name| name.contains(".tmp")), "no temporary file left");
}

#[test]
fn a_metrics_textfile_that_is_a_directory_exits_78_saying_to_name_a_file_in_it() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let folder = fixture.path("textfile");
    std::fs::create_dir(&folder).unwrap();
    let result = fixture.drainctl(&["metrics", "--textfile", folder.to_str().unwrap()]).run();
    result.assert_code(78);
    let wanted = format!(
        "metrics textfile {} is a directory; set --textfile or metrics_textfile to a file in it, e.g. {}",
        folder.display(),
        folder.join("drainctl.prom").display()
    );
    assert!(result.stderr.contains(&wanted), "{}", result.stderr);
    assert!(names_in(&folder).is_empty(), "nothing is left in it: {:?}", names_in(&folder));
    assert!(!names_in(fixture.dir.path()).iter().any(|name| name.contains(".tmp")), "no temporary file left");
}

#[test]
fn a_metrics_textfile_in_a_missing_folder_exits_78_naming_the_folder() {
    let fixture = Fixture::new(&config("metrics_textfile = \"TMPDIR/missing/drainctl.prom\"\n", ""), NOW);
    let folder = fixture.path("missing");
    for args in [&["metrics", "--textfile"][..], &["metrics", "--textfile", "missing/other.prom"][..]] {
        let result = fixture.drainctl(args).current_dir(fixture.dir.path()).run();
        result.assert_code(78);
        assert!(result.stderr.contains("does not exist; create it"), "{}", result.stderr);
        assert!(result.stderr.contains("missing"), "the folder is named: {}", result.stderr);
        assert_eq!(result.stderr.lines().count(), 1, "one line: {}", result.stderr);
    }
    assert!(!folder.exists());
    // A folder that is a file is the same mistake.
    std::fs::write(&folder, "").unwrap();
    let result = fixture.drainctl(&["metrics", "--textfile"]).run();
    result.assert_code(78);
    assert!(result.stderr.contains(&format!("{} is not a directory", folder.display())), "{}", result.stderr);
}

#[test]
fn supervise_with_metrics_textfile_in_a_missing_folder_exits_78_and_records_why() {
    let fixture = Fixture::new(&config("metrics_textfile = \"TMPDIR/missing/drainctl.prom\"\n", ""), NOW);
    let result = fixture.drainctl(&["supervise"]).run();
    result.assert_code(78);
    let folder = fixture.path("missing");
    assert!(
        result.stderr.contains(&format!("its folder {} does not exist; create it", folder.display())),
        "{}",
        result.stderr
    );
    let messages: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'supervise_error'");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].starts_with("could not write metrics_textfile"), "{messages:?}");
}

// ---------------------------------------------------------------------------------------
// what a terminal shows

/// Characters that must never reach a terminal raw: controls other than the line break,
/// and the bidirectional overrides, embeddings, isolates and marks.
fn raw_unsafe_characters(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

/// A dead item whose key holds U+202E and a carriage return and whose worker wrote
/// `real\rFAKE` on stderr; returns the fixture, the raw key and the drain pass.
fn dead_item_with_hostile_text() -> (Fixture, String, Finished) {
    let fixture = Fixture::new(&config("", ""), NOW);
    fixture.enqueue(
        "docs",
        &[("invoice\u{202e}fdp.exe".into(), json!({ "steps": [{ "err": "real\rFAKE" }, { "exit": 3 }] }))],
    );
    // enqueue refuses control characters in keys, but keys made by other means (a source
    // scan of odd file names, an older version) may hold them.
    fixture.client().execute("UPDATE items SET key = key || E'\\rFAKE'", &[]).unwrap();
    let key = "invoice\u{202e}fdp.exe\rFAKE".to_string();
    let pass = fixture.drainctl(&["drain", "docs", "-v"]).run();
    (fixture, key, pass)
}

#[test]
fn worker_stderr_with_a_carriage_return_is_escaped_in_the_drain_log() {
    let (fixture, key, pass) = dead_item_with_hostile_text();
    pass.assert_code(0);
    assert_eq!(fixture.item("docs", &key).0, "dead");
    assert!(
        pass.stderr
            .contains("item invoice\\u{202e}fdp.exe\\rFAKE attempt 1 failed (failure): exit code 3: FAKE"),
        "{}",
        pass.stderr
    );
    assert_eq!(raw_unsafe_characters(&pass.stderr), [], "{:?}", pass.stderr);
    // The error is the line the terminal showed (docs/worker-contract.md); the stderr
    // tail keeps what the worker wrote, byte for byte.
    let (_, _, last_error) = fixture.item("docs", &key);
    assert_eq!(last_error.as_deref(), Some("exit code 3: FAKE"));
    let tail: Vec<Vec<u8>> = fixture.column("SELECT stderr_tail FROM items");
    assert_eq!(tail, [b"real\rFAKE\n".to_vec()]);
}

#[test]
fn an_item_key_with_a_bidi_override_and_a_carriage_return_is_escaped_in_tables_and_exact_in_json() {
    let (fixture, key, pass) = dead_item_with_hostile_text();
    pass.assert_code(0);
    let shown = "invoice\\u{202e}fdp.exe\\rFAKE";

    let items = fixture.drainctl(&["items", "docs"]).run();
    items.assert_code(0);
    assert!(items.stdout.contains(shown), "{}", items.stdout);
    assert!(items.stdout.contains("exit code 3: FAKE"), "{}", items.stdout);
    assert_eq!(raw_unsafe_characters(&items.stdout), [], "{:?}", items.stdout);

    let events = fixture.drainctl(&["events"]).run();
    events.assert_code(0);
    assert!(events.stdout.contains(&format!("item {shown} dead")), "{}", events.stdout);
    assert_eq!(raw_unsafe_characters(&events.stdout), [], "{:?}", events.stdout);

    let show = fixture.drainctl(&["items", "show", "docs", &key]).run();
    show.assert_code(0);
    assert!(show.stdout.contains(shown), "{}", show.stdout);
    assert!(show.stdout.contains("  real\\rFAKE"), "the stderr tail is escaped: {}", show.stdout);
    assert_eq!(raw_unsafe_characters(&show.stdout), [], "{:?}", show.stdout);

    let listed = fixture.drainctl(&["items", "docs", "--json"]).run();
    listed.assert_code(0);
    assert_eq!(listed.json()["items"][0]["key"], key.as_str(), "JSON keeps the key exact");
    let shown_json = fixture.drainctl(&["items", "show", "docs", &key, "--json"]).run();
    shown_json.assert_code(0);
    let json = shown_json.json();
    assert_eq!(json["key"], key.as_str());
    assert_eq!(json["stderr_tail"], "real\rFAKE\n");
    let events_json = fixture.drainctl(&["events", "--json"]).run();
    // Escaped as JSON (before: the U+202E raw, serde_json escaping only C0 controls).
    assert!(events_json.stdout.contains("invoice\\u202efdp.exe\\rFAKE"), "{}", events_json.stdout);
    for json in [&listed, &shown_json, &events_json] {
        assert_eq!(raw_unsafe_characters(&json.stdout), [], "{:?}", json.stdout);
    }
}

#[test]
fn a_worker_of_a_pass_run_in_a_terminal_has_no_controlling_terminal() {
    // Before: it shared the pass's terminal from a background group; one that read it
    // (`sudo` asking for a password) was stopped by SIGTTIN until its timeout.
    let fixture = Fixture::new(
        "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"sh\", \"-c\", \"cat > /dev/null; if (: < /dev/tty) 2> /dev/null; then echo terminal; else echo none; fi\"]\n",
        NOW,
    );
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    fixture.drainctl(&["drain", "docs"]).run_in_a_terminal_session().assert_code(0);
    assert_eq!(result_of(&fixture, "a"), "none\n");
}

// ---------------------------------------------------------------------------------------
// descriptors

#[test]
fn descriptors_drainctl_inherited_reach_neither_its_drains_nor_their_workers() {
    let check = r#"a=clean; [ -e /proc/$$/fd/200 ] && a=worker-has-it; [ -e /proc/$PPID/fd/200 ] && a="$a drain-has-it"; [ -x /proc/$PPID/fd ] || a="$a drain-hidden"; echo $a"#;
    let fixture = Fixture::new(
        &format!(
            "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n\n\
             [[drain]]\nname = \"docs\"\ncommand = [\"sh\", \"-c\", {}]\n",
            serde_json::to_string(check).unwrap()
        ),
        NOW,
    );
    fixture.enqueue("docs", &[("by-hand".into(), json!(1))]);
    // A drain run by hand from a shell that left descriptor 200 open.
    fixture.drainctl(&["drain", "docs"]).with_inherited_descriptor(200).run().assert_code(0);
    // The drain holds what its shell gave it; its worker gets none of it. (Its descriptors
    // are hidden from its worker unless the tests run as root: see
    // `a_worker_cannot_read_the_password_from_its_drains_own_environment`.)
    let expected = if unsafe { libc::geteuid() } == 0 { "clean drain-has-it" } else { "clean drain-hidden" };
    assert_eq!(result_of(&fixture, "by-hand").trim(), expected);
    // A drain that supervise started, supervise run by pm2 with its IPC socket open.
    fixture.enqueue("docs", &[("supervised".into(), json!(2))]);
    fixture.drainctl(&["supervise"]).with_inherited_descriptor(200).run().assert_code(0);
    wait_until("the item done", std::time::Duration::from_secs(30), || {
        fixture.item("docs", "supervised").0 == "done"
    });
    assert_eq!(result_of(&fixture, "supervised").trim(), "clean");
}

// ---------------------------------------------------------------------------------------
// signals

#[test]
fn a_run_row_written_by_hand_gets_no_process_of_this_host_signalled() {
    let fixture = Fixture::new(&config("", ""), NOW);
    // A real pass records this host's boot and PID namespace.
    fixture.enqueue("docs", &[("a".into(), json!("done"))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let host_id: String = fixture.client().query_one("SELECT host_id FROM runs", &[]).unwrap().get(0);
    let host: String = fixture.client().query_one("SELECT host FROM runs", &[]).unwrap().get(0);
    // Someone else's process, leading its own group.
    let mut victim = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sleep").arg("300").process_group(0).spawn().unwrap()
    };
    let pid = victim.id() as i32;
    // Rows a database writer could insert: a crashed run whose "worker" is the victim's
    // group (without an identity, or without the group's start time), and a hung run whose
    // "drain" is the victim (without its start time).
    let forged = [
        (Option::<&str>::None, 3_999_999, Option::<i32>::Some(pid), "2026-11-27T09:59:00Z"),
        (Some(host_id.as_str()), 3_999_998, Some(pid), "2026-11-27T09:59:00Z"),
        (Some(host_id.as_str()), pid, None, "2026-11-27T09:00:00Z"),
    ];
    for (id, run_pid, worker_pid, checkpoint) in forged {
        fixture
            .client()
            .execute(
                "INSERT INTO runs (drain, trigger, host, host_id, pid, started_at, last_checkpoint_at, status, worker_pid)
                 VALUES ('docs', 'manual', $1, $2, $3, $4::text::timestamptz, $4::text::timestamptz, 'running', $5)",
                &[&host, &id, &run_pid, &checkpoint, &worker_pid],
            )
            .unwrap();
    }
    let result = fixture.drainctl(&["supervise", "--json"]).run();
    result.assert_code(0);
    let alive = pid_alive(pid);
    let _ = victim.kill();
    let _ = victim.wait();
    // Before: the victim's group was sent SIGTERM (and SIGKILL) as the "worker" left by a
    // crashed run.
    assert!(alive, "supervise signalled a process no run of this host recorded: {}", result.stdout);
    let ended: Vec<String> = fixture.column("SELECT status FROM runs WHERE id > 1 ORDER BY id");
    assert_eq!(ended, ["crashed", "crashed", "hung"], "{}", result.stdout);
}

/// Field 22 of `/proc/PID/stat`: the process's start time, as anyone can read it.
fn start_time_of(pid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    after_name.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// `sh -c 'sleep 300 & echo $!'` with `setsid` (or in its own group): the shell exits at
/// once, its sleep lives on in a group (and session) whose leader is gone — a daemon's
/// shape. Returns (the gone leader's pid, the sleep's pid).
fn orphaned_sleep(new_session: bool) -> (u32, u32) {
    use std::os::unix::process::CommandExt;
    let mut command = if new_session {
        let mut command = std::process::Command::new("setsid");
        command.args(["sh", "-c", "echo $$; sleep 300 >/dev/null 2>&1 & echo $!"]);
        command
    } else {
        let mut command = std::process::Command::new("sh");
        command.args(["-c", "echo $$; sleep 300 >/dev/null 2>&1 & echo $!"]).process_group(0);
        command
    };
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let mut pids = text.lines().map(|line| line.trim().parse::<u32>().unwrap());
    (pids.next().unwrap(), pids.next().unwrap())
}

#[test]
fn a_run_row_written_by_hand_with_the_right_start_times_gets_nothing_signalled_either() {
    let fixture = Fixture::new(&config("", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!("done"))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let row = fixture.client().query_one("SELECT host, host_id FROM runs", &[]).unwrap();
    let (host, host_id): (String, String) = (row.get(0), row.get(1));
    // A live process whose start time anyone can read, and two daemons whose group and
    // session leaders are gone (no start time left to check).
    let mut victim = std::process::Command::new("sleep").arg("300").spawn().unwrap();
    let (group_leader, in_group) = orphaned_sleep(false);
    let (session_leader, in_session) = orphaned_sleep(true);
    let insert = |pid: u32, start: i64, worker: Option<(u32, i64)>, checkpoint: &str| {
        fixture
            .client()
            .execute(
                "INSERT INTO runs (drain, trigger, host, host_id, pid, process_start_time, started_at,
                                   last_checkpoint_at, status, worker_pid, worker_start_time)
                 VALUES ('docs', 'manual', $1, $2, $3, $4, $5::text::timestamptz, $5::text::timestamptz,
                         'running', $6, $7)",
                &[
                    &host,
                    &host_id,
                    &(pid as i32),
                    &start,
                    &checkpoint,
                    &worker.map(|(pid, _)| pid as i32),
                    &worker.map(|(_, start)| start),
                ],
            )
            .unwrap();
    };
    // Hung: "its drain" is the live victim, with its true start time.
    insert(victim.id(), start_time_of(victim.id()), None, "2026-11-27T09:00:00Z");
    // Crashed: "its worker group" is the daemon's, whose leader is gone.
    insert(3_999_997, 1, Some((group_leader, 1)), "2026-11-27T09:59:00Z");
    // Crashed: "its drain" led the daemon's session.
    insert(session_leader, 1, None, "2026-11-27T09:59:00Z");
    let result = fixture.drainctl(&["supervise", "--json"]).run();
    result.assert_code(0);
    let alive = [pid_alive(victim.id() as i32), pid_alive(in_group as i32), pid_alive(in_session as i32)];
    let _ = victim.kill();
    let _ = victim.wait();
    for pid in [in_group, in_session] {
        signal(pid, libc::SIGKILL);
    }
    // Before: all three killed.
    assert_eq!(alive, [true, true, true], "{}", result.stdout);
    let ended: Vec<String> = fixture.column("SELECT status FROM runs WHERE id > 1 ORDER BY id");
    assert_eq!(ended, ["hung", "crashed", "crashed"], "{}", result.stdout);
}

#[test]
fn a_workdir_out_of_this_users_reach_is_named_as_such_not_as_missing_nor_as_the_program() {
    use std::os::unix::fs::PermissionsExt;
    let is_root = unsafe { libc::geteuid() } == 0;
    let fixture = Fixture::new(&config("", ""), NOW);
    // `locked` may not be entered: as root, by `nobody`, whom drainctl runs as here; else
    // by anyone. `locked/inside` is a folder there, behind it.
    let locked = fixture.path("locked");
    std::fs::create_dir_all(locked.join("inside")).unwrap();
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    let run = |workdir: &std::path::Path, args: &[&str]| {
        fixture.write_config(&format!("{text}workdir = \"{}\"\n", workdir.display()));
        if is_root {
            let binary = fixture.path("drainctl");
            if !binary.exists() {
                std::fs::copy(DRAINCTL, &binary).unwrap();
            }
            std::fs::set_permissions(fixture.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::create_dir_all(fixture.path("logs")).unwrap();
            std::fs::set_permissions(fixture.path("logs"), std::fs::Permissions::from_mode(0o777)).unwrap();
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
            setpriv_nobody(&fixture, &binary.display().to_string(), args)
        } else {
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
            let result = fixture.drainctl(args).run();
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
            result
        }
    };
    for workdir in [locked.clone(), locked.join("inside")] {
        // Before: "worker command … is not executable; fix `command`" for the first, and
        // "does not exist or is not a directory" (doctor: "create it") for the second.
        let drain = run(&workdir, &["drain", "docs"]);
        drain.assert_code(78);
        assert!(
            drain.stderr.contains(&format!(
                "worker directory \"{}\" cannot be entered by this user (permission denied); fix `workdir`",
                workdir.display()
            )),
            "{}",
            drain.stderr
        );
        let doctor = run(&workdir, &["doctor"]);
        assert!(
            doctor.stdout.contains(&format!("workdir {} cannot be entered by this user", workdir.display())),
            "{}",
            doctor.stdout
        );
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn another_users_textfile_in_a_sticky_folder_is_refused_by_doctor_as_by_the_write() {
    use std::os::unix::fs::PermissionsExt;
    if !can_run_as_nobody() {
        return;
    }
    let fixture = Fixture::new(&config("metrics_textfile = \"TMPDIR/shared/drainctl.prom\"\n", ""), NOW);
    // Root's file left in a sticky folder (`chmod 1777`); drainctl now runs as `nobody`.
    let shared = fixture.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(shared.join("drainctl.prom"), "# root's\n").unwrap();
    std::fs::create_dir_all(fixture.path("logs")).unwrap();
    std::fs::set_permissions(fixture.path("logs"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let as_nobody = |args: &[&str]| run_as_nobody(&fixture, args);
    let refusal = format!(
        "metrics textfile {}/drainctl.prom belongs to root (uid 0), in a sticky folder ({}) where only its owner may \
         replace it",
        shared.display(),
        shared.display()
    );
    // Before: doctor said "ok … can be written", and every write failed with
    // "Operation not permitted; check that its folder exists and is writable".
    let doctor = as_nobody(&["doctor"]);
    doctor.assert_code(78);
    assert!(doctor.stdout.contains(&refusal), "{}", doctor.stdout);
    let write = as_nobody(&["metrics", "--textfile"]);
    write.assert_code(78);
    assert!(write.stderr.contains(&refusal), "{}", write.stderr);
}

#[test]
fn doctor_says_a_log_dir_behind_a_folder_this_user_may_not_enter_is_out_of_reach() {
    use std::os::unix::fs::PermissionsExt;
    if !can_run_as_nobody() {
        return;
    }
    let fixture = Fixture::new(&config("", ""), NOW);
    // log_dir exists, inside a folder `nobody` may not enter.
    std::fs::create_dir_all(fixture.path("private/logs")).unwrap();
    std::fs::set_permissions(fixture.path("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    fixture.write_config(&config("", "").replace("TMPDIR/logs", "TMPDIR/private/logs"));
    let doctor = run_as_nobody(&fixture, &["doctor"]);
    doctor.assert_code(78);
    // Before: "cannot be created: Permission denied …; create it", of a folder that exists.
    assert!(
        doctor.stdout.contains(&format!(
            "log_dir {} cannot be reached by this user (permission denied: a folder above it may not be entered)",
            fixture.path("private/logs").display()
        )),
        "{}",
        doctor.stdout
    );
}

#[test]
fn doctor_warns_of_a_log_dir_inside_a_folder_another_user_owns() {
    if !can_run_as_nobody() {
        return;
    }
    // log_dir is root's own, mode 0700, but in a folder `nobody` owns: nobody may swap it
    // for a folder of theirs, with logs of their choosing. Before: `ok log_dir … is
    // writable`.
    let fixture = Fixture::new(&config("", ""), NOW);
    std::fs::create_dir_all(fixture.path("shared/logs")).unwrap();
    std::os::unix::fs::chown(fixture.path("shared"), Some(65534), Some(65534)).unwrap();
    fixture.write_config(&config("", "").replace("TMPDIR/logs", "TMPDIR/shared/logs"));
    let doctor = fixture.drainctl(&["doctor"]).run();
    let shown = fixture.path("shared");
    assert!(
        doctor.stdout.contains(&format!(
            "warn  log_dir: log_dir {} is in {}, whose owner may replace it (that folder belongs to nobody (uid \
             65534), not to root, who runs drainctl): move it, or chown the folder; another user could swap the \
             drains' logs",
            fixture.path("shared/logs").display(),
            shown.display()
        )),
        "{}",
        doctor.stdout
    );
    std::os::unix::fs::chown(fixture.path("shared"), Some(0), Some(0)).unwrap();
    let doctor = fixture.drainctl(&["doctor"]).run();
    assert!(doctor.stdout.contains("ok    log_dir:"), "{}", doctor.stdout);
}

/// Whether drainctl can be run as `nobody` here (as root); says the test is skipped if not.
fn can_run_as_nobody() -> bool {
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root {
        eprintln!("SKIPPED: needs root, to run drainctl as another user");
    }
    is_root
}

/// `drainctl ARGS` run as `nobody` (a copy of the binary it may run), with the fixture's
/// folder and configuration readable by it.
fn run_as_nobody(fixture: &Fixture, args: &[&str]) -> Finished {
    use std::os::unix::fs::PermissionsExt;
    let binary = fixture.path("drainctl");
    if !binary.exists() {
        std::fs::copy(DRAINCTL, &binary).unwrap();
    }
    std::fs::set_permissions(fixture.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let binary = binary.display().to_string();
    setpriv_nobody(fixture, &binary, args)
}

/// The copy `binary` of drainctl run as `nobody` with ARGS. A copy just written may be
/// held open for writing a moment by a child another test thread forked meanwhile (it
/// closes at that child's exec): its exec then fails with ETXTBSY, and is tried again.
fn setpriv_nobody(fixture: &Fixture, binary: &str, args: &[&str]) -> Finished {
    let mut all = vec!["--reuid=65534", "--regid=65534", "--clear-groups", binary];
    all.extend_from_slice(args);
    for _ in 0..20 {
        let ran = fixture.with_env(Drainctl::program("setpriv", &all)).run();
        if !(ran.code == 126 && ran.stderr.contains("Text file busy")) {
            return ran;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    fixture.with_env(Drainctl::program("setpriv", &all)).run()
}

#[test]
fn enqueue_reads_no_file_through_another_users_link_and_says_it_waits_on_a_named_pipe() {
    // Before: root's 0600 file read through nobody's link into a payload, and a pipe of
    // theirs held the command in its open with nothing said.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give a link away
    }
    let fixture = Fixture::new(&config("", ""), NOW);
    let private = fixture.path("private.jsonl");
    std::fs::write(&private, "{\"key\": \"k\", \"payload\": {\"api_key\": \"secret\"}}\n").unwrap();
    let link = fixture.path("batch.jsonl");
    std::os::unix::fs::symlink(&private, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let result = fixture.drainctl(&["enqueue", "docs", "--file", link.to_str().unwrap()]).run();
    result.assert_code(64);
    assert!(
        result.stderr.contains(&format!(
            "--file {} is reached through the symbolic link {}, which belongs to nobody (uid 65534), not to \
             root, who runs drainctl; drainctl does not read through another user's links",
            link.display(),
            link.display()
        )),
        "{}",
        result.stderr
    );
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0);
    // A named pipe: said, then read once its writer comes.
    let pipe = fixture.path("items.fifo");
    make_fifo(&pipe, 0o600);
    let enqueue = fixture.drainctl(&["enqueue", "docs", "--file", pipe.to_str().unwrap()]).spawn();
    std::fs::write(&pipe, "{\"key\": \"p\", \"payload\": {}}\n").unwrap();
    let result = finished(enqueue.wait_with_output().unwrap());
    result.assert_code(0);
    assert!(
        result.stderr.contains("is a named pipe: reading it once a writer opens it"),
        "{}",
        result.stderr
    );
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key = 'p'"), 1);
}
