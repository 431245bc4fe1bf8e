//! Notifications: run `[defaults] notify_command` for the events an operator must hear of.
//!
//! Every event whose kind is listed in `notify_on` is kept in the invocation's outbox as it
//! is recorded (see [`outbox`] and `crate::db::events`); [`notify_recorded`], called after
//! commits and at the end of every command, runs the notifier for each one that committed,
//! directly (argv, never a shell) in its own process group, with the event as one
//! JSON object on stdin (`kind`, `at`, `drain`, `quota_group`, `run_id`, `item_id`,
//! `message`, `data`). The notifier gets `notify_timeout`; then its whole process group is
//! killed. A notifier that cannot be started, exits non-zero, dies by a signal or times out
//! is logged and recorded as a `notify_failed` event — never returned as an error: a
//! broken pager must not break the pass that noticed the problem. A `notify_failed` event
//! is never itself notified.
//!
//! A notification is due from the moment its event commits (`notifications_due`), claimed
//! when its notifier starts and removed once it ran, so that [`notify_left_behind`] (each
//! `supervise` pass) sends what a process that died left unsent (docs/configuration.md,
//! "Notifications").

use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::config::Config;
use crate::db::events::{record_event_or_log, Event, Outbox, RecordedEvent};
use crate::model::EventKind;
use crate::worker::{run_worker, OutputDrain, StopReason, WorkerExit, WorkerObserver, WorkerSpec};

/// How much of the end of the notifier's stderr goes into a `notify_failed` event.
const STDERR_TAIL_BYTES: usize = 4096;

/// The outbox of an invocation: it keeps the events of the kinds in `notify_on` as they are
/// recorded (nothing without a `notify_command`). Made once the configuration is known.
pub fn outbox(config: &Config) -> Outbox {
    match config.defaults.notify_command {
        Some(_) => Outbox::keeping(&config.defaults.notify_on),
        None => Outbox::unwatched(),
    }
}

/// Run the notifier for every event of a `notify_on` kind recorded since the last call
/// whose transaction has committed. Never fails: a notifier that fails becomes a
/// `notify_failed` event, and not being able to tell which events committed is logged
/// and recorded the same way.
pub fn notify_recorded(config: &Config, client: &mut Client, outbox: &Outbox, clock: &Clock) {
    notify_recorded_beating(config, client, outbox, clock, &mut |_| {});
}

/// [`notify_recorded`], calling `beat` before each notifier: a drain pass records a
/// checkpoint, so that its wait for the notifier never reads as a hung run.
pub fn notify_recorded_beating(
    config: &Config,
    client: &mut Client,
    outbox: &Outbox,
    clock: &Clock,
    beat: &mut dyn FnMut(&mut Client),
) {
    match outbox.take_committed(client) {
        Ok(recorded) => {
            if !recorded.is_empty() {
                crate::worker::signals::ensure_termination_handlers();
            }
            for recorded in recorded {
                // Told to stop, the process sends nothing more: what is left stays due,
                // and the next supervise pass sends it.
                if crate::worker::signals::termination_signal().is_some() {
                    return;
                }
                beat(client);
                notify_due(config, client, outbox, &recorded, clock);
            }
        }
        Err(error) => {
            let message = format!("could not read the events to notify: {}", error.display_scrubbed());
            log::error!("{message}");
            record_event_or_log(client, outbox, &Event::new(EventKind::NotifyFailed, message), clock.now());
        }
    }
}

/// Send the notifications other processes left due — they died before or while sending
/// them (SIGKILL, the OOM killer, pm2's kill timeout, a crash): once per `supervise` pass,
/// after its own, at most [`LEFT_BEHIND_PER_PASS`]. One claimed longer ago than
/// `notify_timeout` and a minute is taken as left behind by a process that died while
/// sending it, and sent again: a notification may come twice, never not at all.
pub fn notify_left_behind(config: &Config, client: &mut Client, outbox: &Outbox, clock: &Clock) {
    if config.defaults.notify_command.is_none() {
        return;
    }
    let abandoned_after = config.defaults.notify_timeout.saturating_add(Duration::from_secs(60));
    // One at a time, each claimed at the moment its notifier starts: a claim is never
    // older than the notifier that runs for it, so no other pass takes it for abandoned.
    // Told to stop, the pass sends nothing more of what others left: the next pass does.
    for sent in 0..LEFT_BEHIND_PER_PASS {
        if crate::worker::signals::termination_signal().is_some() {
            return;
        }
        let now = clock.now();
        let claimed_before = crate::clock::earlier(now, abandoned_after);
        match crate::db::events::claim_left_behind(client, claimed_before, now) {
            Ok(Some(recorded)) => {
                if sent == 0 {
                    log::info!("sending the notifications another drainctl left unsent");
                }
                let delivery = notify(config, client, outbox, &recorded.event, recorded.at, clock);
                finish(client, outbox, &recorded, delivery, clock.now());
                if delivery == Delivery::Interrupted {
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                let message =
                    format!("could not read the notifications left unsent: {}", error.display_scrubbed());
                log::error!("{message}");
                record_event_or_log(
                    client,
                    outbox,
                    &Event::new(EventKind::NotifyFailed, message),
                    clock.now(),
                );
                return;
            }
        }
    }
}

/// Most notifications left behind that one `supervise` pass sends; the next pass sends
/// the rest.
const LEFT_BEHIND_PER_PASS: usize = 100;

/// Claim a recorded event's notification, send it, and mark it sent. One another process
/// claimed first (the next `supervise` pass, sending what it took for left behind) is not
/// sent again; one that cannot be claimed now stays due for that pass.
fn notify_due(
    config: &Config,
    client: &mut Client,
    outbox: &Outbox,
    recorded: &RecordedEvent,
    clock: &Clock,
) {
    #[cfg(feature = "testing")]
    die_if_faulted("die_before_notifying");
    if recorded.is_due_row {
        match crate::db::events::claim_notification(client, recorded.id, clock.now()) {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                log::warn!(
                    "could not claim the notification of event {} ({}); the next supervise pass sends it: {}",
                    recorded.id,
                    recorded.event.kind,
                    error.display_scrubbed()
                );
                return;
            }
        }
    }
    #[cfg(feature = "testing")]
    die_if_faulted("die_while_notifying");
    let delivery = notify(config, client, outbox, &recorded.event, recorded.at, clock);
    finish(client, outbox, recorded, delivery, clock.now());
}

/// The test hooks `DRAINCTL_FAULT=die_before_notifying` and `die_while_notifying`
/// (`testing` feature only): the process dies as SIGKILLed right before it claims a
/// notification, or after it claimed it, before the notifier ran.
#[cfg(feature = "testing")]
fn die_if_faulted(fault: &str) {
    if std::env::var(crate::drain::FAULT_ENV).is_ok_and(|set| set == fault) {
        // SAFETY: raise has no preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}

/// A claimed notification was sent (or its failure recorded): no longer due. One whose
/// notifier was stopped by drainctl's own termination goes back to due, unclaimed, for
/// the next `supervise` pass. When that cannot be written it is logged and recorded, and
/// it may be sent once more.
fn finish(
    client: &mut Client,
    outbox: &Outbox,
    recorded: &RecordedEvent,
    delivery: Delivery,
    now: DateTime<Utc>,
) {
    if !recorded.is_due_row {
        return;
    }
    let written = match delivery {
        Delivery::Interrupted => crate::db::events::release_notification(client, recorded.id),
        Delivery::Done => crate::db::events::notification_sent(client, recorded.id),
    };
    if let Err(error) = written {
        let message = format!(
            "could not record what became of the notification of event {} ({}); it may be sent again: {}",
            recorded.id,
            recorded.event.kind,
            error.display_scrubbed()
        );
        log::error!("{message}");
        record_event_or_log(client, outbox, &Event::new(EventKind::NotifyFailed, message), now);
    }
}

/// The `reason` of a notifier stopped by drainctl's own termination: the one failure that
/// leaves its notification due again.
const INTERRUPTED: &str = "interrupted";

/// What became of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// The notifier ran, or failed on its own (a `notify_failed` event says how).
    Done,
    /// drainctl was told to stop while the notifier ran, and stopped it: not delivered.
    Interrupted,
}

/// Run the notifier for `event` (recorded at `at`). A failure is recorded at the time it
/// happened, not the event's: a notification left behind may be sent hours later, and
/// `events --since` must find its failure (docs/configuration.md, "Notifications").
fn notify(
    config: &Config,
    client: &mut Client,
    outbox: &Outbox,
    event: &Event,
    at: DateTime<Utc>,
    clock: &Clock,
) -> Delivery {
    let defaults = &config.defaults;
    let Some(command) = &defaults.notify_command else { return Delivery::Done };
    let program = command.first().map(String::as_str).unwrap_or_default();
    let Err(failure) = run_notifier(command, defaults.notify_timeout, &event_json(event, at)) else {
        log::debug!("notified {program} of event {}", event.kind);
        return Delivery::Done;
    };
    log::warn!("notify_command {program:?} failed for event {}: {}", event.kind, failure.message);
    let mut failed = Event::new(
        EventKind::NotifyFailed,
        format!("notify_command failed for event {}: {}", event.kind, failure.message),
    )
    .data(json!({
        "event_kind": event.kind,
        "event_message": event.message,
        "program": program,
        "reason": failure.reason,
        "exit_code": failure.exit_code,
        "stderr_tail": failure.stderr_tail,
    }));
    failed.drain = event.drain.clone();
    failed.quota_group = event.quota_group.clone();
    failed.run_id = event.run_id;
    failed.item_id = event.item_id;
    record_event_or_log(client, outbox, &failed, clock.now());
    if failure.reason == INTERRUPTED {
        Delivery::Interrupted
    } else {
        Delivery::Done
    }
}

/// The one JSON object a notifier reads on stdin.
pub fn event_json(event: &Event, at: DateTime<Utc>) -> Value {
    json!({
        "kind": event.kind,
        "at": at,
        "drain": event.drain,
        "quota_group": event.quota_group,
        "run_id": event.run_id,
        "item_id": event.item_id,
        "message": event.message,
        "data": event.data,
    })
}

/// Why a notifier failed, for the log and the `notify_failed` event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    /// `not_started`, `exit_code`, `signal`, `timed_out` or `interrupted`.
    reason: &'static str,
    message: String,
    exit_code: Option<i32>,
    stderr_tail: Option<String>,
}

fn run_notifier(command: &[String], timeout: Duration, event: &Value) -> Result<(), Failure> {
    let mut payload = event.to_string().into_bytes();
    payload.push(b'\n');
    let spec = WorkerSpec {
        argv: command,
        workdir: None,
        env: &[],
        env_remove: &crate::config::WITHHELD_ENV,
        payload: &payload,
        item_timeout: timeout,
        // Past the timeout there is nothing to wait for: the group is killed at once.
        kill_grace: Duration::ZERO,
        // Its stdout is read and dropped, however long (docs/configuration.md).
        result_cap_bytes: None,
        stderr_tail_bytes: STDERR_TAIL_BYTES,
        checkpoint_pattern: None,
        resume_pattern: None,
        announced_waits_given: None,
        // A descendant that left the group and holds the pipes is not waited for past the
        // timeout either: the whole call takes at most `notify_timeout`.
        output_drain: OutputDrain::WithinTimeout,
        session_of_its_own: crate::worker::wants_a_session_of_its_own(),
    };
    let mut observer =
        NotifierObserver { signalled_before: crate::worker::signals::termination_signal().is_some() };
    let report = run_worker(&spec, &mut observer).map_err(|error| Failure {
        reason: "not_started",
        message: error.describe("notify_command"),
        exit_code: None,
        stderr_tail: None,
    })?;
    let stderr_tail = Some(String::from_utf8_lossy(&report.stderr_tail).trim_end().to_string())
        .filter(|text| !text.is_empty());
    let failure = |reason, message: String, exit_code| Failure {
        reason,
        message,
        exit_code,
        stderr_tail: stderr_tail.clone(),
    };
    match (report.stop_reason, report.exit) {
        (Some(StopReason::TimedOut), _) => Err(failure(
            "timed_out",
            format!(
                "no exit within notify_timeout {}; its process group was killed",
                crate::duration::format_duration(timeout)
            ),
            None,
        )),
        (Some(StopReason::Interrupted), _) => Err(failure(
            INTERRUPTED,
            format!(
                "stopped: drainctl received {} while it ran; its process group was killed",
                crate::worker::signals::termination_signal()
                    .map_or_else(|| "a termination signal".to_string(), crate::worker::signals::signal_name)
            ),
            None,
        )),
        // Its output has no cap and no wait is read from it: nothing else stops it, and
        // its exit tells the rest.
        (_, WorkerExit::Code(0)) => Ok(()),
        (_, WorkerExit::Code(code)) => {
            let detail = stderr_tail.as_deref().and_then(|text| text.lines().last()).unwrap_or("");
            let message = if detail.is_empty() {
                format!("exit code {code}")
            } else {
                format!("exit code {code}: {}", detail.chars().take(300).collect::<String>())
            };
            Err(failure("exit_code", message, Some(code)))
        }
        // Stopped by the signal that stops drainctl: a process manager stopping the whole
        // tree (pm2's default `treekill`) reached the notifier first. Not delivered, so
        // due again, as when drainctl stops it itself.
        (_, WorkerExit::Signal(signal))
            if crate::worker::signals::stopped_with_drainctl(report.exit, std::time::Instant::now()) =>
        {
            Err(failure(
                INTERRUPTED,
                format!(
                    "stopped: killed by signal {signal} as drainctl was told to stop ({}); not delivered",
                    crate::worker::signals::termination_signal().map_or_else(
                        || "a termination signal".to_string(),
                        crate::worker::signals::signal_name
                    )
                ),
                None,
            ))
        }
        (_, WorkerExit::Signal(signal)) => Err(failure("signal", format!("killed by signal {signal}"), None)),
    }
}

/// A notifier has no checkpoints. It is stopped when SIGTERM, SIGINT or SIGHUP reaches
/// drainctl while it runs (a stop does not wait for `notify_timeout`); one started after
/// the signal — the notice of the interruption itself — runs its course.
struct NotifierObserver {
    signalled_before: bool,
}

impl WorkerObserver for NotifierObserver {
    fn started(&mut self, _pid: u32) {}
    fn checkpoint(&mut self, _line: &str) {}
    fn should_stop(&mut self) -> bool {
        !self.signalled_before && crate::worker::signals::termination_signal().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        event_json(&Event::new(EventKind::RunHung, "run 3 hung").drain("docs").run(3), Utc::now())
    }

    #[test]
    fn the_event_is_one_json_object_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("got");
        let command = vec!["sh".to_string(), "-c".to_string(), format!("cat > {}", file.display())];
        run_notifier(&command, Duration::from_secs(10), &event()).unwrap();
        let got: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(got["kind"], "run_hung");
        assert_eq!(got["drain"], "docs");
        assert_eq!(got["run_id"], 3);
        assert!(got["item_id"].is_null());
        for field in ["kind", "at", "drain", "quota_group", "run_id", "item_id", "message", "data"] {
            assert!(got.get(field).is_some(), "{field} missing");
        }
    }

    #[test]
    fn failures_are_classified() {
        let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let failure =
            run_notifier(&sh("echo nope >&2; exit 3"), Duration::from_secs(10), &event()).unwrap_err();
        assert_eq!((failure.reason, failure.exit_code), ("exit_code", Some(3)));
        assert_eq!(failure.message, "exit code 3: nope");
        let started = std::time::Instant::now();
        let failure = run_notifier(&sh("sleep 30"), Duration::from_millis(300), &event()).unwrap_err();
        assert_eq!(failure.reason, "timed_out");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let missing = vec!["/nonexistent/notifier".to_string()];
        let failure = run_notifier(&missing, Duration::from_secs(1), &event()).unwrap_err();
        assert_eq!(failure.reason, "not_started");
        assert_eq!(failure.message, "notify_command \"/nonexistent/notifier\" not found (no such file)");
        // A bare name is looked for on PATH.
        let unnamed = vec!["drainctl-no-such-notifier".to_string()];
        let failure = run_notifier(&unnamed, Duration::from_secs(1), &event()).unwrap_err();
        // Named with the PATH searched: under cron it is the crontab's, not the shell's.
        let searched = std::env::var("PATH").unwrap_or_default();
        assert_eq!(
            failure.message,
            format!("notify_command \"drainctl-no-such-notifier\" not found on PATH ({searched})")
        );
    }

    #[test]
    fn a_notifier_that_leaves_a_detached_child_holding_its_pipes_takes_no_longer_than_its_timeout() {
        let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let timeout = Duration::from_secs(1);
        // Times out, and the child that left its group keeps stdout and stderr open.
        let started = std::time::Instant::now();
        let failure = run_notifier(&sh("setsid sleep 6 & sleep 30"), timeout, &event()).unwrap_err();
        assert_eq!(failure.reason, "timed_out");
        assert!(started.elapsed() < timeout + Duration::from_millis(500), "{:?}", started.elapsed());
        // Exits at once, and the child that left its group keeps the pipes open.
        let started = std::time::Instant::now();
        run_notifier(&sh("setsid sleep 6 & exit 0"), timeout, &event()).unwrap();
        assert!(started.elapsed() < timeout + Duration::from_millis(500), "{:?}", started.elapsed());
    }
}
