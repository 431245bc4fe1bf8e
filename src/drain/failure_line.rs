//! The line of a failed run's output that says what went wrong, for the item's error
//! (docs/worker-contract.md, "How an outcome is classified"): the last stderr line that
//! is not noise, else the last stdout line that is not (`claude -p` prints its errors on
//! stdout). Noise is what a client prints after its message: a bare number (codex's
//! `tokens used` count, with that label), `[object Object]`, a stack frame, a brace, a
//! field of a dumped object holding no words (`status: 429`, `reason: undefined,`).

use std::sync::LazyLock;

use regex::Regex;

use crate::quota::patterns::compile;

/// The error text is cut to this many characters.
pub(super) const MAX_CHARS: usize = 300;

/// `at f (file:///…:12:5)`, `at process.processTicksAndRejections (node:internal/…)`,
/// and such a frame followed by the brace of the error's dumped fields (`… :82:21) {`).
static STACK_FRAME: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^at\s+\S.*(?:\)|:[0-9]+:[0-9]+)(?:\s*\{)?$"));

/// What a client prints about itself before its work, never its error: codex `exec`'s
/// note that it reads stdin.
const BANNERS: [&str; 1] = ["Reading additional input from stdin..."];

/// A field of a dumped object whose value holds no words: `status: 429`, `cause: {`,
/// `reason: 'API_KEY_INVALID',`, `"code": 429`, `details: [ [Object], [Object] ]`.
static DUMPED_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?x)^
          (?: ["']?[@A-Za-z_$][\w$@.-]*["']? ) \s*:\s*
          (?: undefined | null | true | false | -?[0-9][0-9.,_]* | [\[{] | \{\} | \[(?:Object|Array)\]
            | \[ (?: \s* \[(?:Object|Array)\] \s* ,? )* \s* \]
            | '[^\s']*' | "[^\s"]*" )
          \s*,?$"#,
    )
});

/// A word or two of letters: the label of the number printed on the line after it
/// (codex's `tokens used`).
static NUMBER_LABEL: LazyLock<Regex> = LazyLock::new(|| compile(r"^[A-Za-z]+(?: [A-Za-z]+){0,2}:?$"));

/// The line of a failed run's output that says what went wrong, trimmed and cut to
/// [`MAX_CHARS`]; `None` when neither stream has one. A line matching the drain's
/// `checkpoint` pattern is the worker's progress, not its error: taken only when no
/// other line says anything (`killed by signal 9: ::checkpoint:: allocating`).
pub(super) fn failure_line(stdout: &[u8], stderr: &[u8], checkpoint: &Regex) -> Option<String> {
    // Read as shown (escapes removed, a JSON message decoded), a password split by an
    // escape in the output as it was masked is whole again: masked here too.
    let line = telling_line(stderr, Some(checkpoint))
        .or_else(|| telling_line(stdout, Some(checkpoint)))
        .or_else(|| telling_line(stderr, None))
        .or_else(|| telling_line(stdout, None))?;
    Some(crate::error::scrub(&line).chars().take(MAX_CHARS).collect())
}

/// The last line of `bytes` that is not noise (nor, given `checkpoint`, a checkpoint).
fn telling_line(bytes: &[u8], checkpoint: Option<&Regex>) -> Option<String> {
    // The error is stored as text: a NUL the worker printed must not fail its record.
    let text = String::from_utf8_lossy(bytes);
    let text = crate::db::storable_text(&text);
    // A progress bar's frames (`\r`, cursor moves) are lines of their own: the last one
    // is what the screen showed.
    let text = crate::quota::screen_text(&text);
    let mut after_number = false;
    for line in text.split(['\n', '\r']).rev().map(str::trim).filter(|line| !line.is_empty()) {
        let is_number = !line.chars().any(char::is_alphabetic);
        let is_checkpoint = checkpoint.is_some_and(|pattern| pattern.is_match(line));
        if is_number || is_noise(line) || is_checkpoint || (after_number && NUMBER_LABEL.is_match(line)) {
            after_number = is_number && line.chars().any(|c| c.is_ascii_digit());
            continue;
        }
        // A client's JSON event line (codex `exec --json`'s `turn.failed`, `claude -p`'s
        // `is_error` result) says it by its message, a dumped error's field by its text;
        // `readable_message` keeps no NUL a decoded `\u0000` would be, which the attempt's
        // record (text) refuses.
        let message = crate::quota::json_message(line, "");
        return Some(crate::quota::readable_message(message.as_deref().unwrap_or(line)));
    }
    None
}

/// Whether `line` is noise: nothing a client says of what went wrong.
pub(crate) fn is_noise(line: &str) -> bool {
    line.contains("[object Object]")
        || BANNERS.contains(&line)
        || STACK_FRAME.is_match(line)
        || DUMPED_FIELD.is_match(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Regex {
        compile(crate::config::defaults::DEFAULT_CHECKPOINT_PATTERN)
    }

    #[test]
    fn a_checkpoint_line_is_the_error_only_when_nothing_else_is() {
        // docs/worker-contract.md's summarise.sh: its checkpoint on stderr, claude's
        // error on stdout.
        let error = b"Error: Input must be provided either through stdin or as a prompt argument when using --print\n";
        let checkpoint_line = b"::checkpoint:: summarising /data/doc-1.txt\n";
        assert_eq!(
            failure_line(error, checkpoint_line, &checkpoint()).as_deref(),
            Some("Error: Input must be provided either through stdin or as a prompt argument when using --print")
        );
        assert_eq!(
            failure_line(b"", checkpoint_line, &checkpoint()).as_deref(),
            Some("::checkpoint:: summarising /data/doc-1.txt")
        );
    }

    fn fixture(name: &str) -> (Vec<u8>, Vec<u8>) {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-clients").join(name);
        (std::fs::read(dir.join("stdout")).unwrap(), std::fs::read(dir.join("stderr")).unwrap())
    }

    fn line_of(name: &str) -> String {
        let (stdout, stderr) = fixture(name);
        failure_line(&stdout, &stderr, &checkpoint()).unwrap_or_else(|| panic!("{name}: no line"))
    }

    #[test]
    fn a_progress_bars_frames_before_the_error_are_not_the_error() {
        let frames: String =
            (0..101).map(|percent| format!("Downloading model shard {percent}%\r")).collect();
        let stderr = format!("{frames}Error: disk full while writing /data/out\n");
        assert_eq!(
            failure_line(b"", stderr.as_bytes(), &checkpoint()).as_deref(),
            Some("Error: disk full while writing /data/out")
        );
        let spinner = b"line1\n\x1b[2K\x1b[1Gspinner done\n\x1b[31mfailed: no such model\x1b[0m\n";
        assert_eq!(failure_line(b"", spinner, &checkpoint()).as_deref(), Some("failed: no such model"));
        assert_eq!(
            failure_line(b"", b"line1\n\x1b[2K\x1b[1Gspinner done", &checkpoint()).as_deref(),
            Some("spinner done")
        );
        // Colours that erase to the line's end after them, and a move to a column, stay
        // inside the line (gcc's `ESC[m ESC[K`).
        let gcc = b"\x1b[01m\x1b[Kmain.c:3:5:\x1b[m\x1b[K \x1b[01;31m\x1b[Kerror: \x1b[m\x1b[K'\x1b[01m\x1b[Kfoo\x1b[m\x1b[K' undeclared (first use in this function)\n";
        assert_eq!(
            failure_line(b"", gcc, &checkpoint()).as_deref(),
            Some("main.c:3:5: error: 'foo' undeclared (first use in this function)")
        );
        assert_eq!(
            failure_line(b"", b"Status:\x1b[40GFAILED to connect\n", &checkpoint()).as_deref(),
            Some("Status:FAILED to connect")
        );
    }

    #[test]
    fn claude_text_prints_its_error_on_stdout() {
        assert_eq!(line_of("claude-text-credit"), "Credit balance is too low");
        assert!(
            line_of("claude-text-server-500").starts_with("API Error: 500"),
            "{}",
            line_of("claude-text-server-500")
        );
        assert_eq!(
            failure_line(b"Invalid API key \xc2\xb7 Fix external API key\n", b"", &checkpoint()).as_deref(),
            Some("Invalid API key · Fix external API key")
        );
    }

    #[test]
    fn gemini_errors_are_read_above_its_object_dump() {
        let line = line_of("gemini-text-credit");
        assert!(line.contains("Quota exceeded for metric"), "{line}");
        // A dumped field shows its text (before: `message: '…',`).
        let line = line_of("gemini-stream-json-server-503");
        assert_eq!(line, "The model is overloaded. Please try again later.");
        let line = line_of("gemini-json-credit");
        assert!(line.starts_with("You exceeded your current quota"), "{line}");
        // An API error body inside it, by its code, status and message (before: the
        // body, its quotes escaped).
        assert_eq!(
            line_of("gemini-json-auth-invalid"),
            "400 INVALID_ARGUMENT: API key not valid. Please pass a valid API key."
        );
        assert_eq!(line_of("gemini-json-server-500"), "500 INTERNAL: Internal error encountered.");
        // An invalid key, as gemini-cli 0.61.0 dumps it.
        let stderr = "Error when talking to Gemini API Full report available at: /tmp/gemini-client-error.json ApiError: API key not valid.\n    at classifyGoogleError (file:///x/chunk-JDPZ4CE3.js:307307:12)\n    at async main (file:///x/gemini-3HFX2LNT.js:17627:5) {\n  cause: {\n    code: 400,\n    message: 'API key not valid. Please pass a valid API key.',\n    details: [ [Object], [Object] ]\n  },\n  reason: 'API_KEY_INVALID',\n  status: 400\n}\nAn unexpected critical error occurred:[object Object]\n";
        assert_eq!(
            failure_line(b"", stderr.as_bytes(), &checkpoint()).as_deref(),
            Some("API key not valid. Please pass a valid API key.")
        );
    }

    #[test]
    fn a_nul_a_dumped_fields_escape_holds_is_not_stored() {
        // gemini-cli's pretty-printed error: its `message` field is the line; decoded, its
        // `\u0000` would be a NUL that fails the record of the attempt.
        let stderr =
            "{\n  \"error\": {\n    \"message\": \"bad \\u0000 thing\",\n    \"code\": 400\n  }\n}\n";
        assert_eq!(
            failure_line(b"", stderr.as_bytes(), &checkpoint()).as_deref(),
            Some("bad \u{fffd} thing")
        );
    }

    #[test]
    fn codex_token_count_is_not_the_error() {
        let stderr = "ERROR: Your input exceeds the context window of this model. Please adjust your input and try again.\ntokens used\n0\n";
        assert_eq!(
            failure_line(b"", stderr.as_bytes(), &checkpoint()).as_deref(),
            Some("ERROR: Your input exceeds the context window of this model. Please adjust your input and try again.")
        );
        let line = line_of("codex-text-credit");
        assert_eq!(line, "ERROR: Quota exceeded. Check your plan and billing details.");
    }

    #[test]
    fn codex_json_errors_are_read_from_its_events_not_its_stdin_note() {
        // `codex exec --json` with a stream cut mid-answer: its note on stderr, the error
        // as an event on stdout. Before: "Reading additional input from stdin...".
        let stdout = concat!(
            r#"{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}"#,
            "\n",
            r#"{"type":"turn.started"}"#,
            "\n",
            r#"{"type":"error","message":"Reconnecting... 1/5"}"#,
            "\n",
            r#"{"type":"turn.failed","error":{"message":"stream disconnected before completion: Transport error: network error: error decoding response body"}}"#,
            "\n"
        );
        assert_eq!(
            failure_line(stdout.as_bytes(), b"Reading additional input from stdin...\n", &checkpoint()).as_deref(),
            Some("stream disconnected before completion: Transport error: network error: error decoding response body")
        );
    }

    #[test]
    fn a_node_frame_before_a_dumped_cause_is_noise() {
        // gemini-cli with its stream cut: the frame line ends with the brace of the
        // cause's fields. Before: that frame was the error.
        let stderr = "Error when talking to Gemini API TypeError: terminated\n    at Fetch.onAborted (node:internal/deps/undici/undici:11350:53)\n  [cause]: SocketError: other side closed\n      at process.processTicksAndRejections (node:internal/process/task_queues:82:21) {\n    code: 'UND_ERR_SOCKET',\n    socket: {\n      timeout: undefined,\n      bytesRead: 419\n    }\n  }\n}\nAn unexpected critical error occurred:[object Object]\n";
        assert_eq!(
            failure_line(b"", stderr.as_bytes(), &checkpoint()).as_deref(),
            Some("[cause]: SocketError: other side closed")
        );
    }

    #[test]
    fn a_nul_a_json_message_escapes_is_not_stored() {
        let stdout = br#"{"type":"error","message":"bad\u0000thing"}"#;
        assert_eq!(failure_line(stdout, b"", &checkpoint()).as_deref(), Some("bad\u{fffd}thing"));
    }

    #[test]
    fn claude_json_errors_are_its_result_not_the_whole_line() {
        let stdout = br#"{"type":"result","subtype":"success","is_error":true,"duration_ms":388,"num_turns":1,"result":"API Error: Connection to the API was lost (ECONNRESET). This is usually temporary - try again.","session_id":"6b7c8d9e","total_cost_usd":0}"#;
        assert_eq!(
            failure_line(stdout, b"", &checkpoint()).as_deref(),
            Some("API Error: Connection to the API was lost (ECONNRESET). This is usually temporary - try again.")
        );
    }

    #[test]
    fn a_plain_last_line_is_kept_and_cut() {
        assert_eq!(
            failure_line(b"partial result\n", b"fatal: cannot open x\n", &checkpoint()).as_deref(),
            Some("fatal: cannot open x")
        );
        assert_eq!(
            failure_line(b"", b"Error: ECONNREFUSED\n", &checkpoint()).as_deref(),
            Some("Error: ECONNREFUSED")
        );
        assert_eq!(failure_line(b"", b"", &checkpoint()).as_deref(), None);
        assert_eq!(failure_line(b"42\n", b"}\n", &checkpoint()).as_deref(), None);
        let long = "x".repeat(1000);
        assert_eq!(
            failure_line(b"", long.as_bytes(), &checkpoint()).map(|line| line.chars().count()),
            Some(MAX_CHARS)
        );
    }
}
