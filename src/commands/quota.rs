//! `drainctl quota test`: classify worker output read from stdin the way a drain pass
//! would, and print the verdict and the parsed reset — for checking one's own worker's
//! messages and for bug reports. Needs no database.

use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::backoff::{decide_backoff, BackoffPolicy, PreviousBackoff};
use crate::cli::QuotaTestArgs;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::output::Report;
use crate::quota::{Classifier, Outcome};

pub fn run(config_path: Option<&Path>, args: &QuotaTestArgs) -> Result<Report> {
    let config = Config::discover(config_path, true)?;
    let drain = args.drain.as_deref().map(|name| config.drain(name)).transpose()?;
    // The zone a pass reads the worker's clock times in: its account's TZ, else the
    // drain's, else the configured one (docs/rate-limits.md, "Clock times").
    let configured_zone = match drain {
        Some(drain) => {
            let drain_zone = crate::quota::worker_zone(&drain.env, config.defaults.timezone);
            let accounts = &config.quota_group(&drain.quota_group)?.accounts;
            let account = match &args.account {
                Some(name) => {
                    Some(accounts.iter().find(|account| &account.name == name).ok_or_else(|| {
                        let known: Vec<&str> = accounts.iter().map(|account| account.name.as_str()).collect();
                        Error::Usage(format!(
                            "--account {name:?}: quota group {} of drain {} has {}",
                            drain.quota_group,
                            drain.name,
                            if known.iter().all(|name| name.is_empty()) {
                                "no accounts".to_string()
                            } else {
                                format!("the accounts {}", known.join(", "))
                            }
                        ))
                    })?)
                }
                None => accounts.first(),
            };
            // The drain's and the account's env merged as the pass merges them: the account's
            // TZ wins, an unusable one too (before: the drain's was read instead, hours off
            // from the pass).
            match account {
                Some(account) => {
                    let env = crate::config::merged_env(&drain.env, &account.env);
                    crate::quota::worker_zone(&env, config.defaults.timezone)
                }
                None => drain_zone,
            }
        }
        None => config.defaults.timezone,
    };
    let zone = args.tz.unwrap_or(configured_zone);
    let now: DateTime<Utc> = match args.now {
        Some(at) => at,
        None => Clock::from_env()?.now(),
    };
    // A path it cannot read is a wrong command line (docs/exit-codes.md).
    let read = |flag: &str, path: &Option<std::path::PathBuf>| match path {
        Some(path) => std::fs::read(path)
            .map_err(|error| Error::Usage(format!("{flag} {}: cannot be read: {error}", path.display()))),
        None => Ok(Vec::new()),
    };
    let payload = read("--input", &args.input)?;
    let stderr = read("--stderr", &args.stderr)?;
    let stderr = crate::error::scrub_bytes(&stderr).unwrap_or(stderr);
    let mut output = Vec::new();
    crate::output::say_when_stdin_is_a_terminal(
        "drainctl: reading the worker's output from the terminal; paste it, then end with Ctrl-D",
    );
    std::io::stdin()
        .lock()
        .read_to_end(&mut output)
        .map_err(|error| Error::Data(format!("cannot read stdin: {error}")))?;
    // Masked as a pass masks its worker's output: what this prints is pasted into reports.
    let output = crate::error::scrub_bytes(&output).unwrap_or(output);
    // Classified as a drain pass classifies its worker's output (src/drain/item.rs).
    let classifier = match drain {
        Some(drain) => Classifier::new(
            args.profile.unwrap_or(drain.quota_profile),
            &drain.quota_patterns,
            &drain.veto_patterns,
        ),
        None => Classifier::new(args.profile.unwrap_or(crate::quota::Profile::Claude), &[], &[]),
    };
    let command = drain.map(|drain| drain.command.as_slice()).unwrap_or_default();
    let input = crate::drain::worker_input(&payload, command);
    // Read as a drain reads its worker's output (src/drain/item.rs): a gemini answer the
    // client cut short first.
    let outcome = classifier
        .cut_answer(&output, args.exit_code)
        .unwrap_or_else(|| classifier.classify_given(&input, &output, &stderr, args.exit_code, now, zone));
    // A drain stops a client announcing a wait longer than a minute (or than its
    // item_timeout) and counts a quota hit: docs/rate-limits.md, "Clients that wait for
    // the reset".
    let limit = crate::worker::client_wait_limit(drain.map(|drain| drain.item_timeout));
    // Given --stderr, stdin is the worker's stdout, read as a drain reads it (a text
    // answer is the result), and so it is for a run that exited 0 (a client that waited
    // for hours was stopped, with no exit code); else it may hold both streams
    // (`cat stdout stderr`).
    let [stdout_reader, mut stderr_reader] = crate::quota::StreamWaits::of_client(&input);
    let is_stdout = args.stderr.is_some() || args.exit_code == Some(0);
    let mut output_reader =
        if is_stdout { stdout_reader } else { crate::quota::StreamWaits::of_merged_output(&input) };
    let announced = crate::quota::long_announced_wait(&output, limit, &mut output_reader)
        .or_else(|| crate::quota::long_announced_wait(&stderr, limit, &mut stderr_reader));
    let outcome = match announced {
        // The drain stops such a client, whose exit status then says nothing of its
        // output (gemini-cli exits 0 on the signal): read as a run that failed.
        Some((line, wait)) => {
            let stopped = match args.exit_code {
                Some(0) => classifier.classify_given(&input, &output, &stderr, None, now, zone),
                _ => outcome,
            };
            Outcome::QuotaHit(crate::quota::client_wait_hit(stopped, &line, wait, now, zone))
        }
        None => outcome,
    };
    // With --drain, what its group does with an account refused access: another account
    // to switch to, or none (the group parked).
    let can_switch = match drain {
        Some(drain) => Some(config.quota_group(&drain.quota_group)?.accounts.len() > 1),
        None => None,
    };
    let policy = crate::backoff::BackoffPolicy { zone, ..config.defaults.backoff_policy() };
    Ok(describe(&outcome, now, zone, policy, can_switch))
}

/// `can_switch`: whether the drain's quota group has another account (None: no drain
/// given, so not known).
fn describe(
    outcome: &Outcome,
    now: DateTime<Utc>,
    zone: chrono_tz::Tz,
    policy: BackoffPolicy,
    can_switch: Option<bool>,
) -> Report {
    match outcome {
        Outcome::QuotaHit(hit) => {
            // An account refused access where the group can switch backs off confirmed at
            // once, as a pass has it (docs/accounts.md).
            let alone = can_switch.is_some_and(|can_switch| hit.backs_off_account_alone(can_switch));
            let previous =
                if alone { PreviousBackoff::default().confirming(now) } else { PreviousBackoff::default() };
            let decision = decide_backoff(hit.stated_reset(), now, previous, policy);
            // The moment the message named: a clock time that passed just now is that
            // moment, not tomorrow's (docs/rate-limits.md, "Clock times").
            let reset = decision.stated_reset;
            let instant = |at: DateTime<Utc>| {
                format!(
                    "{} ({}, {})",
                    at.to_rfc3339(),
                    crate::output::local_time(at, zone),
                    crate::duration::format_relative(at - now)
                )
            };
            let reset_text = reset.map_or_else(|| "none stated".to_string(), instant);
            let kind = if hit.access_refused { "quota hit: access refused" } else { "quota hit" };
            let mut human = format!(
                "{kind}\n  matched: {}\n  reset:   {reset_text}\n  backoff: until {}",
                hit.matched_line,
                instant(decision.until)
            );
            if let Some(why) = &decision.distrusted {
                human.push_str(&format!(" (reset not trusted: {why})"));
            }
            if hit.access_refused {
                human.push_str(match can_switch {
                    Some(true) => {
                        "\n  needs attention: the key, login or model was refused; this account backs off and \
                         the group's next account goes on"
                    }
                    Some(false) => {
                        "\n  needs attention: the key, login or model was refused; the quota group is parked \
                         until `drainctl resume --group`"
                    }
                    None => {
                        "\n  needs attention: the key, login or model was refused; the quota group is parked \
                         (with several accounts, this account backs off and the next one goes on)"
                    }
                });
            } else if hit.needs_attention {
                human.push_str("\n  needs attention: time will not fix this");
            }
            Report::new(
                human,
                json!({
                    "outcome": "quota_hit",
                    "matched_line": hit.matched_line,
                    "reset": reset,
                    "needs_attention": hit.needs_attention,
                    "access_refused": hit.access_refused,
                    "backoff_until": decision.until,
                    "backoff_rule": decision.rule,
                    "distrusted": decision.distrusted,
                }),
            )
        }
        Outcome::ServerError { matched_line } => Report::new(
            format!("server error (retried with backoff, not a quota hit)\n  matched: {matched_line}"),
            json!({ "outcome": "server_error", "matched_line": matched_line }),
        ),
        Outcome::NoAnswer { error } => Report::new(
            format!("no answer: a failure, retried with backoff (not a quota hit)\n  error:   {error}"),
            json!({ "outcome": "no_answer", "error": error }),
        ),
        Outcome::Other => {
            Report::new("no quota hit and no server error recognised", json!({ "outcome": "other" }))
        }
    }
}
