//! The shipped crontab line, run as cron runs it: `/bin/sh -c` with only the variables
//! the crontab sets (cron's minimal environment), on a machine where its log folder does
//! not exist yet.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// The variable lines and the job's command of `crontab.example`.
fn crontab_example() -> (Vec<(String, String)>, String) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("crontab.example")).unwrap();
    let mut variables = Vec::new();
    let mut job = None;
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        if line.starts_with(|c: char| c.is_ascii_digit() || c == '*') {
            let command: Vec<&str> = line.split_whitespace().skip(5).collect();
            assert!(job.replace(command.join(" ")).is_none(), "one job line: {text}");
        } else if let Some((key, value)) = line.split_once('=') {
            variables.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    (variables, job.expect("a job line in crontab.example"))
}

#[test]
fn the_doctor_line_in_crontab_example_checks_on_the_path_the_crontab_sets() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("crontab.example")).unwrap();
    let doctor = text
        .lines()
        .find_map(|line| line.strip_prefix('#').map(str::trim).filter(|line| line.contains("doctor")))
        .filter(|line| line.starts_with("drainctl "))
        .expect("a `drainctl ... doctor` command line in crontab.example's comments");
    let words: Vec<&str> = doctor.split_whitespace().collect();
    let cron_path = words.iter().position(|word| *word == "--cron-path").map(|at| words[at + 1]);
    let (variables, _) = crontab_example();
    let path = variables.iter().find(|(key, _)| key == "PATH").map(|(_, value)| value.as_str());
    assert!(path.is_some() && cron_path == path, "{doctor:?} checks on the crontab's PATH {path:?}");
    let config = variables.iter().find(|(key, _)| key == "DRAINCTL_CONFIG").map(|(_, value)| value.as_str());
    assert!(config.is_some_and(|config| doctor.contains(config)), "{doctor:?} reads {config:?}");
}

#[test]
fn the_shipped_crontab_line_works_first_time_under_crons_minimal_environment() {
    let fixture = Fixture::new("", "2026-11-26T21:00:00Z");
    // The URL lives in the configuration file (0600), not in cron's environment.
    let config = format!(
        "[database]\nurl = \"{}\"\n\n[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/drains\"\n\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n",
        fixture.db.url
    );
    fixture.write_config(&config);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "ok" }] }))]);

    let (variables, job) = crontab_example();
    assert!(job.starts_with("drainctl supervise --log-file /var/log/drainctl/supervise.log"), "{job}");
    // This build's binary where the machine's would be, and the log under the fixture:
    // its folder does not exist.
    let log = fixture.path("var/log/drainctl/supervise.log");
    let job = job
        .replacen("drainctl", DRAINCTL, 1)
        .replace("/var/log/drainctl/supervise.log", log.to_str().unwrap());
    let mut cron = std::process::Command::new("/bin/sh");
    cron.env_clear()
        .env("HOME", fixture.dir.path())
        .env("LOGNAME", "drainctl")
        .env("PATH", "/usr/bin:/bin")
        .env("SHELL", "/bin/sh");
    for (key, value) in &variables {
        let value =
            if key == "DRAINCTL_CONFIG" { fixture.config_path.display().to_string() } else { value.clone() };
        cron.env(key, value);
    }
    let output = cron.arg("-c").arg(&job).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty() && output.stderr.is_empty(), "nothing for cron to mail: {output:?}");

    assert_eq!(std::fs::metadata(log.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("docs") && text.contains("start"), "the decisions: {text}");
    assert_eq!(fixture.count("SELECT count(*) FROM supervisor_passes WHERE status = 'done'"), 1);
    wait_until("the started drain to do its item", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE state = 'done'") == 1
    });
}
