//! Running under cron, pm2 and systemd: what a scheduler's environment needs from
//! drainctl (its own log file, workers found on cron's PATH).

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-26T21:00:00Z";

fn config(command: &str, extra: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n{extra}\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"{command}\"]\n"
    )
}

#[test]
fn supervise_log_file_creates_its_folder_owner_only_and_appends_dated_lines() {
    let fixture = Fixture::new(&config("FAKE_WORKER", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({"steps": [{"out": "ok"}]}))]);
    let log = fixture.path("var/log/drainctl/supervise.log");
    let first = fixture.drainctl(&["supervise", "--log-file", log.to_str().unwrap()]).run();
    first.assert_code(0);
    assert_eq!(first.stdout, "", "the pass's output goes to the log file");
    let folder = log.parent().unwrap();
    assert_eq!(std::fs::metadata(folder).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("docs") && text.contains("start"), "the decisions are in the log: {text}");
    let dated =
        text.lines().filter(|line| line.starts_with("20") && line.contains("Z drainctl: info:")).count();
    assert!(dated >= 2, "dated start and summary lines: {text}");
    // A second pass appends.
    fixture.drainctl(&["supervise", "--log-file", log.to_str().unwrap()]).run().assert_code(0);
    let again = std::fs::read_to_string(&log).unwrap();
    assert!(again.starts_with(&text) && again.len() > text.len(), "appended, not replaced");
}

#[test]
fn supervise_log_file_that_cannot_be_created_fails_with_78_on_stderr() {
    let fixture = Fixture::new(&config("FAKE_WORKER", ""), NOW);
    let blocker = fixture.path("not-a-folder");
    std::fs::write(&blocker, "").unwrap();
    let log = blocker.join("supervise.log");
    let result = fixture.drainctl(&["supervise", "--log-file", log.to_str().unwrap()]).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("--log-file") && result.stderr.contains("not-a-folder"),
        "{}",
        result.stderr
    );
}

#[test]
fn doctor_cron_finds_a_worker_missing_from_crons_path_that_the_interactive_path_has() {
    // A worker found on the login PATH (like ~/.local/bin/claude) but not on /usr/bin:/bin.
    let fixture = Fixture::new(&config("my-llm-worker", ""), NOW);
    let bin = fixture.path("home/.local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let worker = bin.join("my-llm-worker");
    std::fs::write(&worker, "#!/bin/sh\ncat\n").unwrap();
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let interactive = fixture.drainctl(&["doctor", "--json"]).env("PATH", &path).run();
    let workers = |result: &Finished| -> Vec<String> {
        result.json()["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|check| check["check"] == "worker")
            .map(|check| {
                format!("{} {}", check["status"].as_str().unwrap(), check["message"].as_str().unwrap())
            })
            .collect()
    };
    assert!(workers(&interactive)[0].starts_with("ok "), "{:?}", workers(&interactive));
    let cron = fixture.drainctl(&["doctor", "--cron", "--json"]).env("PATH", &path).run();
    cron.assert_code(78);
    let found = workers(&cron);
    assert!(found[0].starts_with("fail "), "{found:?}");
    assert!(found[0].contains("under cron (PATH=/usr/bin:/bin)"), "{found:?}");
    // An absolute path in `command` works under cron too.
    fixture.write_config(&config(worker.to_str().unwrap(), ""));
    let fixed = fixture.drainctl(&["doctor", "--cron", "--json"]).env("PATH", &path).run();
    assert!(workers(&fixed)[0].starts_with("ok "), "{:?}", workers(&fixed));
}
