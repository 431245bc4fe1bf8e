//! gemini-cli answering with nothing, or with less than an answer: on an empty or
//! malformed HTTP 200 (a stream without a finish reason, a blocked or empty answer) it
//! exits 0 and reports the error beside what it printed — `[ERROR] Model stream ended
//! without a finish reason.` on stderr in text mode, an `"error"` object (or, with an
//! empty `response`, errors counted in its `stats`) in `--output-format json`, a `result`
//! with `"status": "error"` in `stream-json`. A stream cut before its end prints the text
//! it got (twice, once per try) beside the same error. Such a run is a failed attempt,
//! never a success (docs/rate-limits.md, "How the output is read").

use serde_json::Value;

/// The error of a gemini-cli run that exited 0 without a whole answer, as the client
/// states it; `None` for a run whose answer it does not call incomplete.
pub(super) fn gemini_failed_answer(stdout: &[u8], stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    if text.is_empty() {
        return error_line(stderr, |_| true);
    }
    if let Some(answer) = json_answer(text) {
        return json_failed_answer(&answer);
    }
    if let Some(failed) = stream_failed_answer(text) {
        return Some(failed);
    }
    // Text beside the client's own word that the model's stream broke off: a part of an
    // answer. Other `[ERROR] [Tag] …` lines (its IDE or memory helpers) are not about it.
    error_line(stderr, |error| error.starts_with("Model stream ended") || error.starts_with("Invalid stream"))
}

/// gemini-cli's JSON output cut short: with its stdout a pipe it exits 0 once it has
/// written 64 KiB of a longer `--output-format json` or `stream-json` answer, the rest
/// (and a stream's `result` event) never written. What it wrote is part of an answer,
/// never a message of the client's: the error for such a run, before anything in the
/// model's text is read as a limit.
pub(super) fn gemini_cut_answer(stdout: &[u8]) -> Option<String> {
    /// How much the client writes before it exits: a pipe's buffer.
    const CUT_AT: usize = 64 * 1024;
    if stdout.len() < CUT_AT {
        return None;
    }
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    let event = |line: &str| -> Option<String> {
        let event = serde_json::from_str::<Value>(line).ok()?;
        Some(event.get("type")?.as_str()?.to_string())
    };
    let json_cut = || {
        format!(
            "gemini's JSON output ends after {} bytes without its end: the client exited 0 having written \
             part of its answer",
            stdout.len()
        )
    };
    if lines.first().and_then(|line| event(line)).as_deref() == Some("init") {
        // stream-json: whole once its result event is in (whatever a wrapper adds after).
        return (!lines.iter().any(|line| event(line).as_deref() == Some("result"))).then(json_cut);
    }
    if is_json_output(text) {
        // json: whole when its first value is (a wrapper may print a line after it).
        return first_json_value(text).is_none().then(json_cut);
    }
    // Anything else (text, JSON lines) of exactly what it writes before it exits: its last
    // word cut in two — unless it is whole JSON values to its end.
    let whole_values =
        serde_json::Deserializer::from_str(text).into_iter::<Value>().all(|value| value.is_ok());
    if stdout.len() == CUT_AT && !whole_values {
        return Some(format!(
            "gemini's answer stops at exactly {CUT_AT} bytes: the client exited 0 having written part of it"
        ));
    }
    // Or more, in whole pages of the pipe (69,632 or 131,072 bytes seen), its last line
    // without its line break: a whole text answer ends with one.
    (stdout.len() % PIPE_PAGE == 0 && !stdout.ends_with(b"\n") && !whole_values).then(|| {
        format!(
            "gemini's answer stops after {} bytes, a whole number of pipe pages, mid-line: the client exited 0 \
             having written part of it",
            stdout.len()
        )
    })
}

/// What a pipe takes at a time: a cut answer is as many of these as the client got out.
const PIPE_PAGE: usize = 4096;

/// The first JSON value of `text`, whatever follows it (a line a wrapper printed).
pub(crate) fn first_json_value(text: &str) -> Option<Value> {
    serde_json::Deserializer::from_str(text).into_iter::<Value>().next()?.ok()
}

/// `text` as one JSON object: the whole of it, or gemini-cli's `--output-format json`
/// answer ([`is_json_output`]) with whatever a wrapper printed after it.
pub(super) fn json_answer(text: &str) -> Option<serde_json::Map<String, Value>> {
    let value = serde_json::from_str::<Value>(text)
        .ok()
        .or_else(|| is_json_output(text).then(|| first_json_value(text)).flatten())?;
    match value {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// Whether `text` opens as gemini-cli's `--output-format json` answer does: an object
/// printed with an indent, its first key `session_id` or `response` — not a model's
/// one-line JSON.
pub(crate) fn is_json_output(text: &str) -> bool {
    static JSON_OUTPUT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        super::patterns::compile(r#"^\{\r?\n[ \t]+"(?:session_id|response)"\s*:"#)
    });
    JSON_OUTPUT.is_match(text)
}

/// The last `[ERROR] …` line of gemini-cli's stderr, when it `is_about_the_answer` (an
/// earlier one was followed by what the client did next).
fn error_line(stderr: &[u8], is_about_the_answer: impl Fn(&str) -> bool) -> Option<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .filter_map(|line| line.trim().strip_prefix("[ERROR]").map(str::trim))
        .find(|error| !error.is_empty())
        .filter(|error| is_about_the_answer(error))
        .map(|error| crate::db::storable_text(error).into_owned())
}

/// `--output-format json`: an `error` (the client sets it only when the model's stream
/// was invalid, answer or not), or an empty `response` with errors in `stats`.
fn json_failed_answer(answer: &serde_json::Map<String, Value>) -> Option<String> {
    let response = answer.get("response")?.as_str()?;
    if let Some(error) = answer.get("error").filter(|error| !error.is_null()) {
        let message = error.get("message").and_then(Value::as_str).map(str::trim).unwrap_or_default();
        return Some(match (message.is_empty(), response.trim().is_empty()) {
            (true, true) => format!("gemini answered nothing: {error}"),
            (true, false) => format!("gemini's answer is incomplete: {error}"),
            (false, _) => message.into(),
        });
    }
    if !response.trim().is_empty() {
        return None;
    }
    let mut types: Vec<&str> = Vec::new();
    let mut errors = 0;
    for model in answer.get("stats")?.get("models")?.as_object()?.values() {
        let Some(api) = model.get("api") else { continue };
        errors += api.get("totalErrors").and_then(Value::as_u64).unwrap_or(0);
        if let Some(by_type) = api.get("errorsByType").and_then(Value::as_object) {
            types.extend(by_type.keys().map(String::as_str));
        }
    }
    (errors > 0).then(|| match types.is_empty() {
        true => format!("gemini answered nothing ({errors} errors reported)"),
        false => format!("gemini answered nothing ({errors} errors reported: {})", types.join(", ")),
    })
}

/// `--output-format stream-json`: a `result` with `"status": "error"` (the client's word
/// that the model's stream was invalid, whatever text came before it); the error is the
/// last `error` event's message.
fn stream_failed_answer(text: &str) -> Option<String> {
    let events: Vec<Value> = text.lines().filter_map(|line| serde_json::from_str(line.trim()).ok()).collect();
    let kind = |event: &Value| event.get("type").and_then(Value::as_str).map(str::to_string);
    let result = events.iter().rev().find(|event| kind(event).as_deref() == Some("result"))?;
    if result.get("status").and_then(Value::as_str) != Some("error") {
        return None;
    }
    let message = events
        .iter()
        .rev()
        .filter(|event| kind(event).as_deref() == Some("error"))
        .find_map(|event| event.get("message").and_then(Value::as_str))
        .map(str::trim)
        .filter(|message| !message.is_empty());
    Some(message.map_or_else(|| "gemini answered nothing (its result says error)".into(), str::to_string))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NO_FINISH: &str = "Model stream ended without a finish reason.";

    /// stderr of gemini-cli 0.61.0 `-p` as captured before its `[ERROR]` line.
    const BANNER: &str = "Warning: Basic terminal detected (TERM=dumb). Visual rendering will be limited. For the best experience, use a terminal emulator with truecolor support.\n\
        Warning: 256-color support not detected. Using a terminal with at least 256-color support is recommended for a better visual experience.\n\
        Ripgrep is not available. Falling back to GrepTool.\n";

    /// gemini-cli 0.61.0 `--output-format json` (its `JsonFormatter`) for `response`,
    /// with `error` and one counted error of `error_type` when given.
    fn json_answer(response: &str, error: Option<&str>, error_type: Option<&str>) -> String {
        let errors_by_type = error_type.map_or(json!({}), |kind| json!({ kind: 1 }));
        let total_errors = u64::from(error_type.is_some());
        let mut answer = json!({
            "session_id": "34c20603-1b94-42fa-8145-6798ce6e6411",
            "response": response,
            "stats": {
                "models": { "gemini-2.5-pro": {
                    "api": { "totalRequests": 1, "totalErrors": total_errors, "totalLatencyMs": 41, "errorsByType": errors_by_type },
                    "tokens": { "input": 0, "prompt": 0, "candidates": 0, "total": 0, "cached": 0, "thoughts": 0, "tool": 0 },
                    "roles": {}
                } },
                "tools": { "totalCalls": 0, "totalSuccess": 0, "totalFail": 0, "totalDurationMs": 0,
                    "totalDecisions": { "accept": 0, "reject": 0, "modify": 0, "auto_accept": 0 }, "byName": {} },
                "files": { "totalLinesAdded": 0, "totalLinesRemoved": 0 }
            }
        });
        if let Some(message) = error {
            answer["error"] = json!({ "type": "INVALID_STREAM", "message": message });
        }
        serde_json::to_string_pretty(&answer).unwrap()
    }

    #[test]
    fn text_mode_without_an_answer_fails_with_its_error_line() {
        let stderr = format!("{BANNER}[ERROR] {NO_FINISH}\n");
        assert_eq!(gemini_failed_answer(b"", stderr.as_bytes()).as_deref(), Some(NO_FINISH));
        assert_eq!(gemini_failed_answer(b"\n", stderr.as_bytes()).as_deref(), Some(NO_FINISH));
        // No error line, nothing to report; an error of the client's helpers is not one
        // about the answer.
        assert_eq!(gemini_failed_answer(b"The item is summarised.\n", BANNER.as_bytes()), None);
        assert_eq!(gemini_failed_answer(b"", BANNER.as_bytes()), None);
        let helper = format!("{BANNER}[ERROR] [IDEClient] cannot connect\n");
        assert_eq!(gemini_failed_answer(b"The item is summarised.\n", helper.as_bytes()), None);
        // Only the last error line counts: an earlier cut, followed by another error.
        let earlier = format!("{BANNER}[ERROR] {NO_FINISH}\n[ERROR] [IDEClient] cannot connect\n");
        assert_eq!(gemini_failed_answer(b"The item is summarised.\n", earlier.as_bytes()), None);
    }

    #[test]
    fn an_answer_cut_short_beside_the_clients_own_error_fails() {
        // A stream cut before its finish: 0.61.0 tries again, prints both parts and exits
        // 0. Before: stored as the item's result, `done`.
        let stderr = format!("{BANNER}[ERROR] {NO_FINISH}\n");
        let cut = b"Partial answer, cutPartial answer, cut\n";
        assert_eq!(gemini_failed_answer(cut, stderr.as_bytes()).as_deref(), Some(NO_FINISH));
        let json =
            json_answer("Partial answer, cutPartial answer, cut", Some(NO_FINISH), Some("NO_FINISH_REASON"));
        assert_eq!(gemini_failed_answer(json.as_bytes(), b"").as_deref(), Some(NO_FINISH));
        let stream = format!(
            "{}\n{}\n{}\n{}\n",
            r#"{"type":"init","timestamp":"2026-12-02T03:42:59.788Z","session_id":"3bf93f84","model":"gemini-2.5-pro"}"#,
            r#"{"type":"message","timestamp":"2026-12-02T03:43:00.100Z","role":"assistant","content":"Partial answer, cut","delta":true}"#,
            json!({"type": "error", "timestamp": "2026-12-02T03:43:00.140Z", "severity": "error", "message": NO_FINISH}),
            r#"{"type":"result","timestamp":"2026-12-02T03:43:00.447Z","status":"error","stats":{"total_tokens":0}}"#,
        );
        assert_eq!(gemini_failed_answer(stream.as_bytes(), b"").as_deref(), Some(NO_FINISH));
    }

    #[test]
    fn json_mode_with_an_empty_response_and_errors_fails() {
        let with_error = json_answer("", Some(NO_FINISH), Some("NO_FINISH_REASON"));
        assert_eq!(gemini_failed_answer(with_error.as_bytes(), b"").as_deref(), Some(NO_FINISH));
        let counted_only = json_answer("", None, Some("NO_FINISH_REASON"));
        assert_eq!(
            gemini_failed_answer(counted_only.as_bytes(), b"").as_deref(),
            Some("gemini answered nothing (1 errors reported: NO_FINISH_REASON)")
        );
        // An answer, or an empty one nobody reported an error for, is left alone.
        let answered = json_answer("The item is summarised.", None, Some("NO_FINISH_REASON"));
        assert_eq!(gemini_failed_answer(answered.as_bytes(), b""), None);
        assert_eq!(gemini_failed_answer(json_answer("", None, None).as_bytes(), b""), None);
        assert_eq!(gemini_failed_answer(br#"{"result": ""}"#, b""), None);
    }

    #[test]
    fn stream_json_mode_with_an_error_result_and_no_answer_fails() {
        let stream = format!(
            "{}\n{}\n{}\n",
            r#"{"type":"init","timestamp":"2026-12-02T03:42:59.788Z","session_id":"3bf93f84","model":"gemini-2.5-pro"}"#,
            json!({"type": "error", "timestamp": "2026-12-02T03:43:00.140Z", "severity": "error", "message": NO_FINISH}),
            r#"{"type":"result","timestamp":"2026-12-02T03:43:00.447Z","status":"error","stats":{"total_tokens":0}}"#,
        );
        assert_eq!(gemini_failed_answer(stream.as_bytes(), b"").as_deref(), Some(NO_FINISH));
    }

    #[test]
    fn json_output_the_client_cut_short_is_no_answer_whatever_its_text_quotes() {
        let quoting = "{\\\"note\\\": \\\"quota exceeded and usage limit reached\\\"}, ".repeat(2000);
        let stream = format!(
            "{{\"type\":\"init\",\"model\":\"gemini-2.5-pro\"}}\n\
             {{\"type\":\"message\",\"role\":\"assistant\",\"content\":\"{{\\\"items\\\": [{quoting}"
        );
        let cut = &stream.as_bytes()[..65_536.min(stream.len())];
        let error = gemini_cut_answer(cut).unwrap_or_default();
        assert!(error.starts_with("gemini's JSON output ends after 65536 bytes without its end"), "{error}");
        // A whole answer of exactly that size is whole (JSON, or a stream with its result).
        let exact = "{\n  \"session_id\": \"s\",\n  \"response\": \"\"\n}".to_string();
        let exact = exact.replace("\"\"\n}", &format!("\"{}\"\n}}", "a".repeat(65_536 - exact.len())));
        assert_eq!(exact.len(), 65_536);
        assert_eq!(gemini_cut_answer(exact.as_bytes()), None);
        assert!(gemini_cut_answer(&stream.as_bytes()[..70_000])
            .unwrap_or_default()
            .starts_with("gemini's JSON output ends after 70000 bytes without its end"));
        let json = format!("{{\n  \"session_id\": \"s\",\n  \"response\": \"{{\\\"items\\\": [{quoting}");
        assert!(gemini_cut_answer(&json.as_bytes()[..65_536]).is_some());
        // Whole outputs are not, nor text, nor any output shorter than what it writes
        // before it exits (before, a short text answer starting with `{` was "cut").
        let padding = " ".repeat(70_000);
        let whole =
            format!("{{\"type\":\"init\"}}\n{{\"type\":\"result\",\"status\":\"success\"}}{padding}\n");
        assert_eq!(gemini_cut_answer(whole.as_bytes()), None);
        assert_eq!(gemini_cut_answer(format!("{{\"response\": \"fine\"}}{padding}").as_bytes()), None);
        let lines_of_json =
            format!("{{\"id\": 1, \"label\": \"spam\"}}\n{{\"id\": 2, \"label\": \"{padding}ham\"}}\n");
        assert_eq!(gemini_cut_answer(lines_of_json.as_bytes()), None);
        assert_eq!(gemini_cut_answer(b"{\"id\": 1}\n{\"id\": 2}\n"), None);
        // Whole, with a wrapper's line after it; JSON lines answers (before: all "cut").
        let json_then_line =
            format!("{{\n  \"session_id\": \"s\",\n  \"response\": \"{padding}\"\n}}\ndone\n");
        assert_eq!(gemini_cut_answer(json_then_line.as_bytes()), None);
        let stream_then_line = format!(
            "{{\"type\":\"init\"}}\n{{\"type\":\"message\",\"content\":\"{padding}\"}}\n{{\"type\":\"result\",\"status\":\"success\"}}\nwrapper: done\n"
        );
        assert_eq!(gemini_cut_answer(stream_then_line.as_bytes()), None);
        let response_lines: String = (0..700)
            .map(|i| format!("{{\"response\": \"item {i}\", \"label\": \"{}\"}}\n", "z".repeat(100)))
            .collect();
        assert_eq!(gemini_cut_answer(response_lines.as_bytes()), None);
        // JSON lines cut at exactly 64 KiB are (before: their first line whole, "done").
        assert!(gemini_cut_answer(&response_lines.as_bytes()[..65_536]).is_some());
        assert_eq!(gemini_cut_answer(format!("{{name}} is a placeholder{padding}").as_bytes()), None);
        // Text mode: cut at exactly 64 KiB.
        let prose = "The report lists what users asked for when clicked on the reports page.\n".repeat(2000);
        assert_eq!(
            gemini_cut_answer(&prose.as_bytes()[..65_536]).as_deref(),
            Some(
                "gemini's answer stops at exactly 65536 bytes: the client exited 0 having written part of it"
            )
        );
        assert_eq!(gemini_cut_answer(&prose.as_bytes()[..70_000]), None);
        // Or more, in whole pipe pages, mid-line (before: 131,072 bytes of a longer answer
        // stored as done).
        for cut in [69_632, 131_072] {
            let error = gemini_cut_answer(&prose.as_bytes()[..cut]).unwrap_or_default();
            assert!(
                error.starts_with(&format!(
                    "gemini's answer stops after {cut} bytes, a whole number of pipe pages, mid-line"
                )),
                "{error}"
            );
        }
        // A whole answer of such a size ends with its line break.
        let mut ends_whole = prose.as_bytes()[..69_631].to_vec();
        ends_whole.push(b'\n');
        assert_eq!(gemini_cut_answer(&ends_whole), None);
    }

    #[test]
    fn every_captured_success_has_its_answer() {
        for dir in crate::fixtures::folders("real-clients") {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("gemini-") || !name.contains("success") {
                continue;
            }
            let stdout = std::fs::read(dir.join("stdout")).unwrap();
            let stderr = std::fs::read(dir.join("stderr")).unwrap();
            assert_eq!(gemini_failed_answer(&stdout, &stderr), None, "{name}");
        }
    }

    #[test]
    fn only_the_gemini_profile_reads_an_exit_0_without_an_answer_as_a_failure() {
        use crate::quota::{Classifier, Outcome, Profile};
        let now = chrono::Utc::now();
        let stderr = format!("{BANNER}[ERROR] {NO_FINISH}\n");
        let classify = |profile, exit_code| {
            Classifier::new(profile, &[], &[]).classify(
                b"",
                stderr.as_bytes(),
                exit_code,
                now,
                chrono_tz::UTC,
            )
        };
        assert_eq!(classify(Profile::Gemini, Some(0)), Outcome::NoAnswer { error: NO_FINISH.into() });
        assert_eq!(classify(Profile::Claude, Some(0)), Outcome::Other);
        assert_eq!(classify(Profile::Gemini, Some(1)), Outcome::Other);
    }
}
