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
fn a_pass_that_cannot_load_its_configuration_says_so_on_the_stderr_cron_mails_too() {
    let fixture = Fixture::new(&config("FAKE_WORKER", ""), NOW);
    let log = fixture.path("supervise.log");
    let broken = format!("{}max_atempts = 3\n", config("FAKE_WORKER", ""));
    fixture.write_config(&broken);
    let pass = fixture.drainctl(&["supervise", "--log-file", log.to_str().unwrap()]).run();
    pass.assert_code(78);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("unknown field `max_atempts`"), "in the log: {logged}");
    assert!(
        pass.stderr.starts_with("drainctl: ") && pass.stderr.contains("unknown field `max_atempts`"),
        "{}",
        pass.stderr
    );
    assert_eq!(pass.stderr.lines().count(), 1, "{}", pass.stderr);
    // Once the pass reached its database, its failures are its events: cron stays quiet.
    let missing_source = format!("{}source = {{ dir = \"no-such-folder\" }}\n", config("FAKE_WORKER", ""));
    fixture.write_config(&missing_source);
    let pass = fixture.drainctl(&["supervise", "--log-file", log.to_str().unwrap()]).run();
    pass.assert_code(78);
    assert_eq!(pass.stderr, "", "recorded as an event instead");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'supervise_error'"), 1);
    // A pass's own failure after it connected, recorded as its event: not told twice.
    fixture.write_config(&config("/nonexistent/worker", ""));
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    let drain_log = fixture.path("drain.log");
    let pass = fixture.drainctl(&["drain", "docs", "--log-file", drain_log.to_str().unwrap()]).run();
    pass.assert_code(78);
    assert_eq!(pass.stderr, "", "recorded as an event instead");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'worker_not_started'"), 1);
}

#[test]
fn a_log_file_or_folder_link_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give files away
    }
    let fixture = Fixture::new(&config("FAKE_WORKER", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({"steps": [{"out": "ok"}]}))]);
    // A file another user planted, writable by all: before, drainctl appended to it, and
    // its owner read the lines and forged others.
    let planted = fixture.path("planted.log");
    std::fs::write(&planted, "").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), None).unwrap();
    let refused = fixture.drainctl(&["supervise", "--log-file", planted.to_str().unwrap()]).run();
    refused.assert_code(78);
    let wanted = format!("log file {} belongs to nobody (uid 65534), not to root", planted.display());
    assert!(refused.stderr.contains(&wanted), "{}", refused.stderr);
    assert_eq!(std::fs::read_to_string(&planted).unwrap(), "");
    // A folder link another user planted: before, the log was created where it points.
    let target = fixture.path("elsewhere");
    std::fs::create_dir(&target).unwrap();
    let link = fixture.path("logs");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
    let refused_through = |command: &str, log: std::path::PathBuf| {
        let mut args = vec![command];
        if command == "drain" {
            args.push("docs");
        }
        args.push("--log-file");
        let refused = fixture.drainctl(&args).arg_os(&log).run();
        refused.assert_code(78);
        let said = "a symbolic link that belongs to nobody (uid 65534)";
        assert!(refused.stderr.contains(said), "{}", refused.stderr);
    };
    refused_through("drain", link.join("drain.log"));
    assert!(!target.join("drain.log").exists());
    // A file there named like a drain log is not renamed after this pass's pid through the
    // link before the refusal (found in review: root's file was).
    let victim = target.join("20260101T000000Z-1.log");
    std::fs::write(&victim, "precious\n").unwrap();
    refused_through("drain", link.join("20260101T000000Z-1.log"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1, "nothing renamed or made there");
    // Higher up the path too, and before any folder is created through it.
    refused_through("supervise", link.join("sub/drain.log"));
    assert!(!target.join("sub").exists());
    // And through a link of root's that leads to one of that user's.
    let roots = fixture.path("roots-link");
    std::os::unix::fs::symlink(&link, &roots).unwrap();
    refused_through("supervise", roots.join("sub/drain.log"));
    assert!(!target.join("sub").exists());
    // A folder of another user's, or one every user may write (not sticky): its owner
    // could remove the log or swap a file of theirs in (before: written there).
    for (owner, mode) in [(65534, 0o733), (0, 0o777)] {
        let folder = fixture.path(&format!("shared-{owner}-{mode:o}"));
        std::fs::create_dir(&folder).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&folder, Some(owner), None).unwrap();
        let log = folder.join("supervise.log");
        let refused = fixture.drainctl(&["supervise", "--log-file"]).arg_os(&log).run();
        refused.assert_code(78);
        assert!(
            refused.stderr.contains(&format!("log file {} is in {}", log.display(), folder.display()))
                && refused.stderr.contains("its lines could be removed or forged"),
            "{}",
            refused.stderr
        );
        assert!(!log.exists());
        // A folder of root's made below it is root's own: taken (a swap of it is caught at
        // the next pass), as a drain's log_dir below such a folder is.
        let below = folder.join("mine").join("supervise.log");
        fixture.drainctl(&["supervise", "--dry-run", "--log-file"]).arg_os(&below).run().assert_code(0);
        assert!(below.exists());
    }
    assert_eq!(fixture.item("docs", "a").0, "pending");
}

#[test]
fn no_file_drainctl_writes_goes_through_another_users_link() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give files away
    }
    // Another user's link to a folder of root's: before, the page, the textfile and the
    // export were written through it (an existing file there replaced), and doctor
    // created log_dir through it and called it writable.
    let victim = tempfile::tempdir().unwrap();
    std::fs::write(victim.path().join("index.html"), "root's own\n").unwrap();
    let planted = |fixture: &Fixture| {
        let link = fixture.path("planted");
        std::os::unix::fs::symlink(victim.path(), &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
        link
    };
    let fixture = Fixture::new(&config("FAKE_WORKER", "").replace("TMPDIR/logs", "TMPDIR/planted/logs"), NOW);
    let link = planted(&fixture);
    fixture.enqueue("docs", &[("a".into(), json!({"steps": [{"out": "ok"}]}))]);
    let said =
        "a symbolic link that belongs to nobody (uid 65534), not to root, who runs drainctl, and drainctl \
                never writes through another user's links";
    let refused = |args: &[&str], code: i32, what: &str| {
        let result = fixture.drainctl(args).run();
        result.assert_code(code);
        let wanted = format!("{what} {} resolves through {}, {said}", args[args.len() - 1], link.display());
        assert!(result.stderr.contains(&wanted), "{args:?}: {}", result.stderr);
    };
    let page = link.join("index.html");
    refused(&["report", "--html", page.to_str().unwrap()], 78, "report page");
    let textfile = link.join("drainctl.prom");
    refused(&["metrics", "--textfile", textfile.to_str().unwrap()], 78, "metrics textfile");
    let export = link.join("out.jsonl");
    refused(&["export", "docs", "-o", export.to_str().unwrap()], 64, "--output");
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    doctor.assert_code(78);
    let log_dir = doctor.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["check"] == "log_dir")
        .cloned()
        .unwrap();
    assert_eq!(log_dir["status"], "fail", "{log_dir}");
    assert!(log_dir["message"].as_str().unwrap().contains(said), "{log_dir}");
    let pass = fixture.drainctl(&["supervise"]).run();
    pass.assert_code(78);
    let recorded: Vec<String> =
        fixture.column("SELECT message FROM events WHERE kind = 'supervise_error' AND drain = 'docs'");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(recorded[0].contains("log folder") && recorded[0].contains(said), "{recorded:?}");
    assert_eq!(fixture.item("docs", "a").0, "pending", "the drain was not started");
    let mut names: Vec<String> = std::fs::read_dir(victim.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["index.html"], "nothing was created through the link");
    assert_eq!(std::fs::read_to_string(victim.path().join("index.html")).unwrap(), "root's own\n");
}

#[test]
fn log_lines_a_full_disk_refused_are_recorded_as_lost() {
    let fixture = Fixture::new(&config("FAKE_WORKER", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({"steps": [{"out": "ok"}]}))]);
    let log = fixture.path("logs/pass.log");
    // The log file may hold 100 bytes, as a disk that fills up: the pass's first lines
    // fit, the rest do not.
    let pass = fixture
        .drainctl(&["-v", "drain", "docs", "--log-file", log.to_str().unwrap()])
        .run_with_file_size_limit(100);
    pass.assert_code(0);
    assert_eq!(fixture.item("docs", "a").0, "done", "the work is done all the same");
    // Before, nothing said the log had lost lines.
    let recorded: Vec<String> = fixture.column(
        "SELECT message FROM events WHERE kind = 'log_write_failed' AND drain = 'docs' AND run_id = 1",
    );
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    // It names the file and the host, whose disk to free (before: neither).
    assert!(
        recorded[0].starts_with(&format!("could not write every log line to {} on host ", log.display()))
            && recorded[0].contains(": File too large"),
        "{recorded:?}"
    );
    let data: Vec<serde_json::Value> =
        fixture.column("SELECT data FROM events WHERE kind = 'log_write_failed'");
    assert_eq!(data[0]["log"], json!(log.display().to_string()), "{data:?}");
    assert!(data[0]["host"].as_str().is_some_and(|host| !host.is_empty()), "{data:?}");
    // A pass whose log takes every line records nothing.
    fixture.enqueue("docs", &[("b".into(), json!({"steps": [{"out": "ok"}]}))]);
    let roomy = fixture.path("logs/roomy.log");
    fixture.drainctl(&["-v", "drain", "docs", "--log-file", roomy.to_str().unwrap()]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'log_write_failed'"), 1);
    // A quiet pass writes only its summary: a full disk that takes none of it is recorded
    // too (before: the summary was written after the pass had looked for lost lines).
    fixture.enqueue("docs", &[("c".into(), json!({"steps": [{"out": "ok"}]}))]);
    let full = fixture.path("logs/full.log");
    std::fs::write(&full, vec![b'x'; 100]).unwrap();
    std::fs::set_permissions(&full, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let quiet = fixture
        .drainctl(&["drain", "docs", "--log-file", full.to_str().unwrap()])
        .run_with_file_size_limit(100);
    quiet.assert_code(0);
    assert_eq!(fixture.item("docs", "c").0, "done");
    assert_eq!(
        fixture.count("SELECT count(*) FROM events WHERE kind = 'log_write_failed' AND run_id = 3"),
        1,
        "{}",
        quiet.stderr
    );
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
    // Creating the folder cannot help where a file holds its name: the line says so.
    assert!(
        result
            .stderr
            .contains(&format!("{} is a file, not a folder; choose another path", blocker.display())),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("create it"), "{}", result.stderr);
}

#[test]
fn a_log_file_that_is_a_link_a_fifo_or_a_folder_is_refused_and_nothing_is_written_through_it() {
    let fixture = Fixture::new(&config("FAKE_WORKER", ""), NOW);
    let victim = fixture.path("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    let link = fixture.path("link.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let fifo = fixture.path("pipe.log");
    make_fifo(&fifo, 0o600);
    let folder = fixture.path("folder.log");
    std::fs::create_dir(&folder).unwrap();
    // A second name of a file of drainctl's user (before: appended to, as a host without
    // fs.protected_hardlinks lets any user link root's files into /tmp).
    let hard_link = fixture.path("hard.log");
    std::fs::hard_link(&victim, &hard_link).unwrap();
    for (path, why) in [
        (&link, "is a symbolic link"),
        (&fifo, "is a fifo or socket"),
        (&folder, "is a directory"),
        (&hard_link, "has 2 names (hard links), and drainctl appends only to a file of one name"),
    ] {
        for command in ["supervise", "drain"] {
            let mut args = vec![command];
            if command == "drain" {
                args.push("docs");
            }
            args.extend(["--log-file", path.to_str().unwrap()]);
            let result = fixture.drainctl(&args).run();
            result.assert_code(78);
            assert!(result.stderr.contains(why) && result.stderr.lines().count() == 1, "{}", result.stderr);
        }
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n", "nothing written through the link");
}

#[test]
fn a_drain_started_by_hand_with_a_log_file_writes_there_and_its_run_records_it() {
    let fixture = Fixture::new(&config("FAKE_WORKER", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({"steps": [{"out": "ok"}]}))]);
    let log = fixture.path("by-hand/docs.log");
    let result = fixture.drainctl(&["drain", "docs", "--log-file", log.to_str().unwrap()]).run();
    result.assert_code(0);
    assert_eq!(result.stdout, "", "the pass's output goes to the log file");
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Z docs: run 1 drained: 1 done"), "the dated summary is in the log: {text}");
    assert_eq!(
        fixture.column::<Option<String>>("SELECT log_path FROM runs"),
        [Some(log.display().to_string())]
    );
    // A name of the form supervise gives, not there yet: created under the pass's own pid.
    fixture.enqueue("docs", &[("b".into(), json!({"steps": [{"out": "ok"}]}))]);
    let named = fixture.path("by-hand/20261126T210000Z-1.log");
    fixture.drainctl(&["drain", "docs", "--log-file", named.to_str().unwrap()]).run().assert_code(0);
    let recorded = fixture.column::<Option<String>>("SELECT log_path FROM runs WHERE id = 2");
    let recorded = std::path::PathBuf::from(recorded[0].clone().unwrap());
    assert_ne!(recorded, named, "named after the drain's pid");
    assert_eq!(recorded.parent(), named.parent());
    assert!(std::fs::read_to_string(&recorded).unwrap().contains("run 2 drained: 1 done"));
    assert!(!named.exists());
    // A relative path is recorded whole: the run's log is found from anywhere.
    fixture.enqueue("docs", &[("c".into(), json!({"steps": [{"out": "ok"}]}))]);
    fixture
        .drainctl(&["drain", "docs", "--log-file", "by-hand/relative.log"])
        .current_dir(fixture.dir.path())
        .run()
        .assert_code(0);
    let recorded = fixture.column::<Option<String>>("SELECT log_path FROM runs WHERE id = 3");
    assert_eq!(recorded, [Some(fixture.path("by-hand/relative.log").display().to_string())]);
}

/// A 64 KiB tmpfs (filled to the last byte by `fill`), unmounted on drop; None where
/// mounting is not allowed (not root, or a container without the right).
struct FullFileSystem(std::path::PathBuf);

impl FullFileSystem {
    fn mount(at: std::path::PathBuf) -> Option<FullFileSystem> {
        FullFileSystem::mount_with(at, "size=64k")
    }

    /// A tmpfs of 64 KiB and 16 inodes whose inodes are all taken: no file or folder can
    /// be made there (a full tmpfs of bytes alone still takes empty ones).
    fn mount_without_inodes(at: std::path::PathBuf) -> Option<FullFileSystem> {
        let full = FullFileSystem::mount_with(at, "size=64k,nr_inodes=16")?;
        for n in 0.. {
            if std::fs::File::create(full.0.join(format!("inode-{n}"))).is_err() {
                break;
            }
        }
        Some(full)
    }

    fn mount_with(at: std::path::PathBuf, options: &str) -> Option<FullFileSystem> {
        std::fs::create_dir_all(&at).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root and the right to mount)");
            return None;
        }
        Some(FullFileSystem(at))
    }

    fn fill(&self) {
        let mut filler = std::fs::File::create(self.0.join("filler")).unwrap();
        while std::io::Write::write_all(&mut filler, &[0u8; 4096]).is_ok() {}
    }
}

impl Drop for FullFileSystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn doctor_says_a_metrics_textfile_on_a_full_disk_cannot_be_written() {
    let fixture =
        Fixture::new(&config("/bin/true", "metrics_textfile = \"TMPDIR/full/drainctl.prom\"\n"), NOW);
    let Some(full) = FullFileSystem::mount(fixture.path("full")) else { return };
    // A textfile of 40 KiB with about 24 KiB free: its next version cannot be written
    // beside it. Before: "ok … can be written" (the probe wrote one block).
    std::fs::write(fixture.path("full/drainctl.prom"), vec![b'#'; 40 << 10]).unwrap();
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(75);
    assert!(doctor.stdout.contains("is on a full file system"), "{}", doctor.stdout);
    std::fs::remove_file(fixture.path("full/drainctl.prom")).unwrap();
    full.fill();
    // Before: "ok … can be written" (an empty file can be made on a full disk), while
    // every supervise pass failed to write it.
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(75);
    assert!(
        doctor.stdout.contains("fail  metrics_textfile: metrics_textfile ")
            && doctor.stdout.contains("is on a full file system: No space left on device"),
        "{}",
        doctor.stdout
    );
    let pass = fixture.drainctl(&["supervise"]).run();
    pass.assert_code(75);
    assert!(pass.stderr.contains("No space left on device"), "{}", pass.stderr);
    // A log_dir there: 75, and said as a full disk, not as a folder to fix.
    fixture.write_config(&config("/bin/true", "").replace("TMPDIR/logs", "TMPDIR/full/logs"));
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(75);
    assert!(
        doctor.stdout.contains("fail  log_dir: log_dir ")
            && doctor.stdout.contains("is on a full file system"),
        "{}",
        doctor.stdout
    );
    // Nothing of the probe's is left behind, nor log_dir: doctor creates nothing.
    let left: Vec<String> = std::fs::read_dir(fixture.path("full"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["filler"]);
}

#[test]
fn a_drain_whose_log_folder_is_on_a_full_disk_starts_without_a_log_and_does_its_work() {
    let fixture = Fixture::new(&config("FAKE_WORKER", "").replace("TMPDIR/logs", "TMPDIR/full/logs"), NOW);
    let Some(_full) = FullFileSystem::mount_without_inodes(fixture.path("full")) else { return };
    fixture.enqueue("docs", &[("a".into(), json!({"steps": [{"out": "ok"}]}))]);
    // Before: `cannot create log folder …: No space left on device … check log_dir`, exit
    // 78, and the item pending on every pass.
    let pass = fixture.drainctl(&["supervise", "--json"]).run();
    pass.assert_code(0);
    let decisions = pass.json()["decisions"].as_array().cloned().unwrap_or_default();
    let start = decisions.iter().find(|d| d["action"] == "start").cloned().unwrap_or_default();
    assert!(start["pid"].is_u64() && start["log_path"].is_null(), "{decisions:?}");
    wait_until("the drain to finish", std::time::Duration::from_secs(20), || {
        fixture.item("docs", "a").0 == "done"
    });
    let message: String = fixture
        .client()
        .query_one("SELECT message FROM events WHERE kind = 'log_write_failed' AND drain = 'docs'", &[])
        .unwrap()
        .get(0);
    assert!(
        message.starts_with("drain docs started without a log file: cannot create log folder ")
            && message.contains("No space left on device")
            && message.ends_with("its lines are lost until log_dir has room"),
        "{message}"
    );
    // A --log-file whose folder cannot be made there: a full disk (75), not a path to
    // fix (before: 78, "create it or choose another path").
    let log = fixture.path("full/sub/supervise.log");
    let pass = fixture.drainctl(&["supervise", "--log-file", log.to_str().unwrap()]).run();
    pass.assert_code(75);
    assert!(
        pass.stderr.contains("cannot create the folder of --log-file")
            && pass.stderr.contains("free space on its file system")
            && !pass.stderr.contains("create it"),
        "{}",
        pass.stderr
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

    // The notifier is started with drainctl's own PATH: under cron, cron's. Before: `ok`
    // from the login PATH, and every notification under cron failed, unheard.
    let notifier = bin.join("my-notifier");
    std::fs::write(
        &notifier,
        "#!/bin/sh
cat >/dev/null
",
    )
    .unwrap();
    std::fs::set_permissions(&notifier, std::fs::Permissions::from_mode(0o755)).unwrap();
    fixture.write_config(&config(worker.to_str().unwrap(), "notify_command = [\"my-notifier\"]"));
    let notify_check = |result: &Finished| -> String {
        let checks = result.json()["checks"].as_array().unwrap().clone();
        let check = checks.iter().find(|check| check["check"] == "notify_command").unwrap();
        format!("{} {}", check["status"].as_str().unwrap(), check["message"].as_str().unwrap())
    };
    let interactive = fixture.drainctl(&["doctor", "--json"]).env("PATH", &path).run();
    assert!(notify_check(&interactive).starts_with("ok "), "{}", notify_check(&interactive));
    let cron = fixture.drainctl(&["doctor", "--cron", "--json"]).env("PATH", &path).run();
    cron.assert_code(78);
    assert_eq!(
        notify_check(&cron),
        "fail notify_command \"my-notifier\" not found on PATH under cron (PATH=/usr/bin:/bin); \
         give `notify_command` an absolute path, or add its folder to PATH in the crontab"
    );
    // A script without a #! line names the setting to fix.
    std::fs::write(&notifier, "cat >/dev/null\n").unwrap();
    fixture.write_config(&config(
        worker.to_str().unwrap(),
        &format!("notify_command = [{:?}]", notifier.display().to_string()),
    ));
    // Under cron too, with no PATH advice: the path is absolute (before: "… under cron
    // (PATH=/usr/bin:/bin); give `notify_command` an absolute path").
    let no_shebang = fixture.drainctl(&["doctor", "--cron", "--json"]).env("PATH", &path).run();
    assert!(
        notify_check(&no_shebang).ends_with("name the program that runs it in `notify_command`"),
        "{}",
        notify_check(&no_shebang)
    );
}

#[test]
fn doctor_cron_warns_of_a_database_url_a_configuration_and_a_drainctl_that_only_this_shell_has() {
    let fixture = Fixture::new(&config("/bin/cat", ""), NOW);
    let cron_env = |result: &Finished| -> Vec<String> {
        result.json()["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|check| check["check"] == "cron_env")
            .map(|check| check["message"].as_str().unwrap().to_string())
            .collect()
    };
    // The URL from the shell's environment, drainctl in a folder the crontab's PATH lacks.
    // Before: `healthy`, and every pass cron ran exited 78 (no database URL).
    let result = fixture.drainctl(&["doctor", "--cron-path", "/usr/bin:/bin", "--json"]).run();
    result.assert_code(0);
    let warnings = cron_env(&result);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0]
            .starts_with("the database URL comes from $DRAINCTL_DATABASE_URL, which cron does not pass on"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("under cron (PATH=/usr/bin:/bin), \"drainctl\" not found on PATH"),
        "{warnings:?}"
    );
    // The configuration file from $DRAINCTL_CONFIG, which cron does not have either.
    let config = fixture.config_path.display();
    assert_eq!(
        warnings[2],
        format!(
            "the configuration file {config} comes from $DRAINCTL_CONFIG, which cron does not pass on to its \
             jobs: unless the crontab sets it, every pass exits 78 (no configuration file); name it in the \
             crontab line with --config {config}"
        ),
    );
    // doctor --cron from the fixture's folder without $DRAINCTL_CONFIG, `--config` as given.
    let from_its_folder = |named: &[&str]| {
        let mut args = named.to_vec();
        args.extend(["doctor", "--cron-path", "/usr/bin:/bin", "--json"]);
        fixture.drainctl(&args).env_remove("DRAINCTL_CONFIG").current_dir(fixture.dir.path())
    };
    // Or found as ./drainctl.toml of this folder, not the home folder cron starts in.
    let here = from_its_folder(&[]).env("HOME", "/").run();
    let warnings = cron_env(&here);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[2].starts_with(&format!(
            "the configuration file {config} was found as ./drainctl.toml of this folder, and cron starts its \
             jobs in their owner's home folder (/)"
        )),
        "{warnings:?}"
    );
    // The file cron's own search finds (./drainctl.toml of its home folder): nothing to say.
    let same = fixture
        .drainctl(&["doctor", "--cron-path", "/usr/bin:/bin", "--json"])
        .env("HOME", fixture.dir.path().to_str().unwrap())
        .run();
    assert_eq!(cron_env(&same).len(), 2, "cron finds the same file: {:?}", cron_env(&same));
    let named = from_its_folder(&["--config", &config.to_string()]).run();
    assert_eq!(
        cron_env(&named).len(),
        2,
        "named by --config, as the crontab line will: {:?}",
        cron_env(&named)
    );
    // A relative --config, as a crontab line would give it, names another file in HOME.
    let relative = from_its_folder(&["--config", "drainctl.toml"]).env("HOME", "/").run();
    let warnings = cron_env(&relative);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[2].starts_with(
            "--config drainctl.toml is relative, and cron starts its jobs in their owner's home folder (/): it \
             names no file, and every pass exits 78"
        ),
        "{warnings:?}"
    );
    // The URL in the file (owner-only), drainctl's folder on the crontab's PATH: nothing to say.
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    std::fs::write(&fixture.config_path, format!("[database]\nurl = \"{}\"\n{text}", fixture.db.url))
        .unwrap();
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let folder = std::path::Path::new(env!("CARGO_BIN_EXE_drainctl")).parent().unwrap().display().to_string();
    let crontabs = format!("{folder}:/usr/bin:/bin");
    // With $DRAINCTL_DATABASE_URL still set in this shell, cron would use the file's.
    let both = fixture
        .drainctl(&["--config", &config.to_string(), "doctor", "--cron-path", &crontabs, "--json"])
        .env_remove("DRAINCTL_CONFIG")
        .run();
    let warnings = cron_env(&both);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("cron's passes use [database] url of"), "{warnings:?}");
    let result = fixture
        .drainctl(&["--config", &config.to_string(), "doctor", "--cron-path", &crontabs, "--json"])
        .env_remove("DRAINCTL_CONFIG")
        .env_remove("DRAINCTL_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .run();
    result.assert_code(0);
    assert_eq!(cron_env(&result), Vec::<String>::new());
}

#[test]
fn doctor_cron_path_looks_workers_up_on_the_path_the_crontab_sets() {
    // The crontab sets PATH=<folder>:/usr/bin:/bin, as crontab.example sets /usr/local/bin.
    let fixture = Fixture::new(&config("my-llm-worker", ""), NOW);
    let bin = fixture.path("usr-local-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let worker = bin.join("my-llm-worker");
    std::fs::write(&worker, "#!/bin/sh\ncat\n").unwrap();
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let worker_check = |result: &Finished| -> String {
        let checks = result.json()["checks"].as_array().unwrap().clone();
        let check = checks.iter().find(|check| check["check"] == "worker").unwrap();
        format!("{} {}", check["status"].as_str().unwrap(), check["message"].as_str().unwrap())
    };
    // Without it, cron's own PATH: the message says how to tell doctor the crontab's.
    let plain = fixture.drainctl(&["doctor", "--cron", "--json"]).run();
    plain.assert_code(78);
    let failed = worker_check(&plain);
    assert!(failed.starts_with("fail ") && failed.contains("under cron (PATH=/usr/bin:/bin)"), "{failed}");
    assert!(failed.contains("`drainctl doctor --cron-path`"), "{failed}");
    // With the crontab's PATH (implying --cron), the worker is found.
    let crontab_path = format!("{}:/usr/bin:/bin", bin.display());
    let found = fixture.drainctl(&["doctor", "--cron-path", &crontab_path, "--json"]).run();
    assert_eq!(worker_check(&found), format!("ok drain docs: worker {}", worker.display()));
    // A crontab PATH that lacks it: the message names the PATH and where it came from.
    let missing = fixture.drainctl(&["doctor", "--cron-path", "/usr/bin:/bin", "--json"]).run();
    missing.assert_code(78);
    let failed = worker_check(&missing);
    assert!(failed.contains("under cron (PATH=/usr/bin:/bin, from --cron-path)"), "{failed}");
    // A relative entry is a folder of the crontab owner's home, where cron starts a job,
    // not of the folder doctor runs in.
    let home = fixture.path("home");
    std::fs::create_dir_all(home.join("bin")).unwrap();
    std::fs::copy(&worker, home.join("bin/my-llm-worker")).unwrap();
    let relative = fixture
        .drainctl(&["doctor", "--cron-path", "bin:/usr/bin:/bin", "--json"])
        .env("HOME", home.to_str().unwrap())
        .current_dir(&bin)
        .run();
    assert_eq!(
        worker_check(&relative),
        format!("ok drain docs: worker {}", home.join("bin/my-llm-worker").display())
    );
    let checks = relative.json()["checks"].as_array().unwrap().clone();
    let warned = checks.iter().find(|check| check["check"] == "cron_path").expect("a cron_path check");
    assert_eq!(warned["status"], "warn");
    let message = warned["message"].as_str().unwrap();
    assert!(
        message.contains(r#"relative entries "bin""#) && message.contains("absolute folders"),
        "{message}"
    );
}

/// The value of one series in exposition text, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.parse().unwrap())
}

#[test]
fn a_drain_pass_that_cannot_write_the_textfile_keeps_its_items_and_records_why() {
    let fixture = Fixture::new(&config("FAKE_WORKER", "metrics_textfile = \"TMPDIR/drainctl.prom\"\n"), NOW);
    // A folder where the file should be: the write is refused, the work is not.
    std::fs::create_dir(fixture.path("drainctl.prom")).unwrap();
    fixture.enqueue("docs", &[("a".into(), json!({"steps": [{"out": "ok"}]}))]);
    let pass = fixture.drainctl(&["drain", "docs"]).run();
    pass.assert_code(0);
    assert!(pass.stderr.contains("could not write metrics_textfile"), "{}", pass.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 1);
    let events = fixture.drainctl(&["events", "--kind", "metrics_write_failed", "--json"]).run().json();
    let events = events["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["drain"], "docs");
    assert!(events[0]["message"].as_str().unwrap().contains("drainctl.prom"), "{events:?}");
}

#[test]
fn every_drain_pass_rewrites_the_textfile_and_counters_survive_pruning() {
    let fixture = Fixture::new(
        &config(
            "FAKE_WORKER",
            "metrics_textfile = \"TMPDIR/drainctl.prom\"\n[defaults.retention]\ndone_items = \"1d\"\n",
        )
        .replace("command = [", "quota_group = \"chair\"\ncommand = ["),
        NOW,
    );
    let textfile = fixture.path("drainctl.prom");
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), json!({"steps": [{"out": "ok"}]})),
            ("b".into(), json!({"steps": [{"out": "ok"}]})),
            (
                "limit".into(),
                json!({"steps": [{"err": "Claude usage limit reached. Your limit will reset at 5pm (UTC)."}, {"exit": 1}]}),
            ),
        ],
    );
    fixture.drainctl(&["drain", "docs"]).run();
    // Written by the drain pass itself, with no supervise in between.
    let text = std::fs::read_to_string(&textfile).expect("the drain pass wrote the textfile");
    assert_eq!(sample(&text, "drainctl_items{drain=\"docs\",state=\"done\"}"), Some(2.0), "{text}");
    assert_eq!(sample(&text, "drainctl_items_finished_total{drain=\"docs\",outcome=\"done\"}"), Some(2.0));
    assert_eq!(sample(&text, "drainctl_worker_starts_total{drain=\"docs\"}"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "drainctl_quota_hits_total{group=\"chair\"}"), Some(1.0), "{text}");
    assert!(text.contains("# TYPE drainctl_items_finished_total counter"), "{text}");
    // Pruning the done items lowers the gauge, never the counter.
    fixture.set_now("2026-12-05T21:00:00Z");
    fixture.drainctl(&["prune"]).run().assert_code(0);
    let after = fixture.drainctl(&["metrics"]).run();
    after.assert_code(0);
    assert_eq!(
        sample(&after.stdout, "drainctl_items{drain=\"docs\",state=\"done\"}"),
        Some(0.0),
        "{}",
        after.stdout
    );
    assert_eq!(
        sample(&after.stdout, "drainctl_items_finished_total{drain=\"docs\",outcome=\"done\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&after.stdout, "drainctl_worker_starts_total{drain=\"docs\"}"), Some(3.0));
    // Every declared family has samples.
    for line in after.stdout.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
        let family = line.split(' ').next().unwrap();
        assert!(
            after.stdout.lines().any(|l| !l.starts_with('#') && l.starts_with(family)),
            "{family} has no sample:\n{}",
            after.stdout
        );
    }
}

/// The migrations before 0011, applied by hand as an older drainctl applied them.
const BEFORE_COUNTED_WITH_STATES: [(i32, &str, &str); 10] = [
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (2, "accounts", include_str!("../../migrations/0002_accounts.sql")),
    (3, "sources", include_str!("../../migrations/0003_sources.sql")),
    (4, "host_identity", include_str!("../../migrations/0004_host_identity.sql")),
    (5, "waiting", include_str!("../../migrations/0005_waiting.sql")),
    (6, "poison_and_park", include_str!("../../migrations/0006_poison_and_park.sql")),
    (7, "counters", include_str!("../../migrations/0007_counters.sql")),
    (8, "usage", include_str!("../../migrations/0008_usage.sql")),
    (9, "item_counts", include_str!("../../migrations/0009_item_counts.sql")),
    (10, "hash_progress", include_str!("../../migrations/0010_hash_progress.sql")),
];

#[test]
fn finished_items_and_worker_starts_keep_what_was_counted_before_0011_and_never_go_back() {
    let fixture = Fixture::new(&config("FAKE_WORKER", "[defaults.retention]\ndone_items = \"1d\"\n"), NOW);
    let mut client = fixture.client();
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                             checksum text NOT NULL, applied_at timestamptz NOT NULL)",
        )
        .unwrap();
    for (version, name, sql) in BEFORE_COUNTED_WITH_STATES {
        use sha2::Digest;
        let checksum: String =
            sha2::Sha256::digest(sql.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
        client.batch_execute(sql).unwrap();
        client
            .execute(
                "INSERT INTO schema_migrations VALUES ($1, $2, $3, now())",
                &[&version, &name, &checksum],
            )
            .unwrap();
    }
    // What the row triggers of 0007 had counted, its items long pruned.
    client
        .batch_execute(
            "INSERT INTO counters (metric, labels, value) VALUES
                 ('items_finished_total', '{\"drain\": \"docs\", \"outcome\": \"done\"}', 5),
                 ('items_finished_total', '{\"drain\": \"docs\", \"outcome\": \"dead\"}', 1),
                 ('worker_starts_total', '{\"drain\": \"docs\"}', 7)",
        )
        .unwrap();
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let ok = json!({"steps": [{"out": "ok"}]});
    fixture.enqueue("docs", &[("a".into(), ok.clone()), ("b".into(), ok.clone())]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let finished = "drainctl_items_finished_total{drain=\"docs\",outcome=\"done\"}";
    let dead = "drainctl_items_finished_total{drain=\"docs\",outcome=\"dead\"}";
    let starts = "drainctl_worker_starts_total{drain=\"docs\"}";
    let expect = |step: &str, want: [f64; 3]| {
        let metrics = fixture.drainctl(&["metrics"]).run();
        metrics.assert_code(0);
        let got = [finished, dead, starts].map(|series| sample(&metrics.stdout, series).unwrap_or(-1.0));
        assert_eq!(got, want, "{step}:\n{}", metrics.stdout);
    };
    expect("after two items", [7.0, 1.0, 9.0]);
    // A retried item finishes again and counts again; an update that keeps the state,
    // and a release that started no worker, count nothing.
    client
        .execute(
            "UPDATE items SET state = 'pending', available_at = '2026-11-01T00:00:00Z' WHERE key = 'a'",
            &[],
        )
        .unwrap();
    client.execute("UPDATE items SET payload = '{\"steps\": []}' WHERE key = 'b'", &[]).unwrap();
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    expect("after a retry", [8.0, 1.0, 10.0]);
    // Pruning and emptying the table lower the items, never the counters.
    fixture.set_now("2026-12-05T21:00:00Z");
    fixture.drainctl(&["prune"]).run().assert_code(0);
    client.batch_execute("TRUNCATE items CASCADE").unwrap();
    expect("after prune and truncate", [8.0, 1.0, 10.0]);
    let status = fixture.drainctl(&["status", "--json"]).run();
    status.assert_code(0);
    assert_eq!(status.json()["drains"][0]["counts"]["done"], 0, "{}", status.stdout);
}

#[test]
fn pause_all_and_resume_all_switch_every_drain_for_maintenance() {
    let fixture = Fixture::new(
        &format!("{}\n[[drain]]\nname = \"other\"\ncommand = [\"FAKE_WORKER\"]\n", config("FAKE_WORKER", "")),
        NOW,
    );
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    fixture.enqueue("other", &[("b".into(), json!(1))]);
    let paused = fixture.drainctl(&["pause", "--all", "--note", "database upgrade", "--json"]).run();
    paused.assert_code(0);
    let drains = paused.json()["drains"].as_array().unwrap().clone();
    assert_eq!(drains.len(), 2, "{drains:?}");
    assert!(drains.iter().all(|d| d["paused"] == true && d["note"] == "database upgrade"), "{drains:?}");
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run();
    plan.assert_code(0);
    let decisions = plan.json()["decisions"].as_array().unwrap().clone();
    for drain in ["docs", "other"] {
        let decision = decisions.iter().find(|d| d["drain"] == drain).unwrap();
        assert_eq!(decision["action"], "skip", "{decision}");
        assert_eq!(decision["reason"], "paused (database upgrade)", "{decision}");
    }
    let resumed = fixture.drainctl(&["resume", "--all", "--json"]).run();
    resumed.assert_code(0);
    let drains = resumed.json()["drains"].as_array().unwrap().clone();
    assert!(drains.iter().all(|d| d["was_paused"] == true && d["paused"] == false), "{drains:?}");
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run();
    let decisions = plan.json()["decisions"].as_array().unwrap().clone();
    assert!(decisions.iter().all(|d| d["action"] == "start"), "{decisions:?}");
    // A name or --all, not both, not neither.
    fixture.drainctl(&["pause"]).run().assert_code(64);
    fixture.drainctl(&["resume", "docs", "--all"]).run().assert_code(64);
    // An emptied file: before, `pause --all` printed nothing and exited 0, pausing none.
    fixture.write_config("");
    for verb in ["pause", "resume"] {
        let refused = fixture.drainctl(&[verb, "--all"]).run();
        refused.assert_code(78);
        assert!(refused.stderr.contains("--all names no drain: the configuration has no [[drain]] table"));
    }
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE paused_at IS NOT NULL"), 0);
}

#[test]
fn doctor_cron_fails_a_configuration_supervise_refuses() {
    let fixture =
        Fixture::new("[[drain]]\nname = \"a\"\ncommand = [\"FAKE_WORKER\"]\n", "2026-11-27T10:00:00Z");
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    // Before: "warn cron_env: … put it in [database] url of /dev/stdin (mode 0600)", and no
    // word that every supervise cron starts with it exits 78.
    let result = fixture.drainctl(&["--config", "/dev/stdin", "doctor", "--cron"]).stdin(text).run();
    result.assert_code(78);
    assert!(
        result.stdout.contains("fail  cron_env: supervise hands its configuration file"),
        "{}",
        result.stdout
    );
    assert!(!result.stdout.contains("of /dev/stdin (mode 0600)"), "{}", result.stdout);
}

#[test]
fn doctor_names_a_session_holding_drainctls_tables_instead_of_waiting_for_it() {
    let fixture = Fixture::new(&config("/bin/true", ""), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    // Another session holds `items` (a LOCK TABLE, a VACUUM FULL) for longer than anyone
    // waits. Before, doctor waited with no output for as long as it lasted.
    let mut holder = fixture.client();
    let mut transaction = holder.transaction().unwrap();
    transaction
        .batch_execute("SET application_name = 'hand-maintenance'; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let doctor = fixture.drainctl(&["doctor"]).run();
    transaction.rollback().unwrap();
    doctor.assert_code(75);
    assert!(
        doctor
            .stdout
            .contains("another session holds a lock on drainctl's tables that the checks waited 10s for")
            && doctor.stdout.contains("held by: backend pid")
            && doctor.stdout.contains("hand-maintenance"),
        "{}",
        doctor.stdout
    );
    // Released, it is healthy again.
    fixture.drainctl(&["doctor"]).run().assert_code(0);
}

#[test]
fn an_output_path_ending_in_a_slash_is_refused_and_the_file_of_that_name_left_alone() {
    // Before: `notes/` wrote (or replaced) the file `notes`, and said it wrote `notes/`.
    let fixture = Fixture::new(&config("FAKE_WORKER", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({"steps": [{"out": "ok"}]}))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let notes = fixture.path("notes");
    std::fs::write(&notes, "precious\n").unwrap();
    for ending in ["/", "/.", "/.."] {
        let path = format!("{}{ending}", notes.display());
        for (args, code) in [
            (vec!["export", "docs", "-o", &path], 64),
            (vec!["report", "--html", &path], 78),
            (vec!["metrics", "--textfile", &path], 78),
            (vec!["drain", "docs", "--log-file", &path], 78),
            (vec!["supervise", "--log-file", &path], 78),
        ] {
            let result = fixture.drainctl(&args).run();
            assert_eq!(result.code, code, "{args:?}: {}", result.stderr);
            assert!(result.stderr.contains("does not name a file"), "{args:?}: {}", result.stderr);
        }
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "precious\n");
    let missing = fixture.path("passlog");
    let result = fixture.drainctl(&["drain", "docs", "--log-file", &format!("{}/", missing.display())]).run();
    result.assert_code(78);
    assert!(!missing.exists(), "nothing made at {}", missing.display());
}
