//! The built-in shapes of worker messages, compiled once per process: quota-limit
//! phrases, HTTP statuses and error identifiers, and the shapes that veto or qualify them
//! — server errors, client retry countdowns, warnings before a limit, model fallbacks,
//! oversized requests, structured error objects and quota that needs attention
//! (billing, spend limits). Every profile uses every table; see docs/rate-limits.md.

use std::sync::LazyLock;

use regex::Regex;

/// A built-in pattern, compiled once into its static; one that does not compile is a bug
/// the unit tests catch.
pub(crate) fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|error| panic!("built-in pattern {pattern:?}: {error}"))
}

/// The words of every built-in quota shape.
const HIT_WORDS: &str = r"limit|quota|429|rate|exhaust|too[\s_]*many|throttl|credit|billing|payment|insufficient|capacity|usage|allowance|spend";

/// A cheap first look: a line without any of these words holds no built-in quota shape.
pub(super) static HIT_HINT: LazyLock<Regex> = LazyLock::new(|| compile(&format!("(?i){HIT_WORDS}")));

/// Output, as it arrives, that may state a limit or its reset: [`HIT_HINT`]'s words and a
/// reset's, each at a word's start (`rate_limit`, `RateLimitError`, not `generated`), and
/// an epoch after `|`. A reset whose line has such wording is reckoned from when the last
/// such output was printed, whatever the worker prints after it (docs/rate-limits.md,
/// "Reset times"); broad on purpose: a later match only makes the wait longer, as if read
/// at the worker's end.
pub(crate) static LIMIT_OR_RESET_HINT: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    let pattern = format!(r"(?i)(?:^|[^a-z])(?:{HIT_WORDS}|reset|retry|try again|wait)|\|[0-9]{{10}}");
    regex::bytes::Regex::new(&pattern).unwrap_or_else(|error| panic!("built-in pattern {pattern:?}: {error}"))
});

/// A reset stated in a line: what a client's last word must say for its printing to be
/// when the limit's reset is counted from.
static STATES_A_RESET: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    let pattern = r"(?i)try\s+again|\bresets?\b|retry[- ](?:after|in)\b|\bwait\b|\|[0-9]{10}";
    regex::bytes::Regex::new(pattern).unwrap_or_else(|error| panic!("built-in pattern {pattern:?}: {error}"))
});

/// Whether `bytes` (output as it arrived) has a line with limit or reset wording
/// ([`LIMIT_OR_RESET_HINT`]) from which a reset may be counted: not a client's last word
/// that only reports the limit again (`Attempt 2 failed with status 429. Giving up.`),
/// printed after the retry it waited for — the vendor's reset was stated with the limit,
/// before that wait (docs/rate-limits.md, "Reset times").
pub(crate) fn is_limit_or_reset_worded(bytes: &[u8]) -> bool {
    if !LIMIT_OR_RESET_HINT.is_match(bytes) {
        return false;
    }
    bytes.split(|&byte| byte == b'\n' || byte == b'\r').any(|line| {
        let is_a_bare_last_word =
            GAVE_UP.is_match(&String::from_utf8_lossy(line)) && !STATES_A_RESET.is_match(line);
        LIMIT_OR_RESET_HINT.is_match(line) && !is_a_bare_last_word
    })
}

pub(super) static IS_ERROR_TRUE: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"(?i)"is_error"\s*:\s*true\b"#));
pub(super) static IS_ERROR_FALSE: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"(?i)"is_error"\s*:\s*false\b"#));
/// Output that is itself an error object, so a server-error shape in it counts even
/// when the worker exited 0: a client's error event or an error object, on any line of
/// its stream (a pretty-printed one opens on its second).
pub(super) static ERROR_OBJECT: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          "type"\s*:\s*"error"
        | "subtype"\s*:\s*"error
        | ^\s*[\[{]?\s*["']error["']\s*:\s*[{\[]
        | "result"\s*:\s*"\s*\[?\s*api\s+error\b
        "#,
    )
});

/// A client's error in words that opens or closes the output (its first or last line):
/// `API Error: 529 Overloaded`, `HTTP/1.1 503 …`. The same line inside a text answer
/// (line 9 of 13) is the answer's content.
pub(super) static ERROR_OUTPUT_LINE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          ^\s*\[?\s*api\s+error\b
        | ^\s*http/[0-9](?:\.[0-9])?\s+[45][0-9][0-9]\b
        "#,
    )
});

/// Server-side failures: retried as transient, never a quota hit, even when the body
/// mentions rate limits.
/// Fields of a Claude Code result that name *why* the run ended, not what the server
/// answered: Claude Code 2.1.332 writes `"terminal_reason":"api_error"` and an
/// `"api_error":"usage_limit_reached"` field on every failed request, a 429 included (its
/// `api_error_status` and `result` say what happened). Blanked before [`SERVER_ERROR`] is
/// looked for.
pub(super) static RESULT_METADATA: LazyLock<Regex> =
    LazyLock::new(|| compile(r#""terminal_reason"\s*:\s*"[a-z_]*"|"api_error"\s*:"#));

pub(super) static SERVER_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          \bapi_error\b
        | \boverloaded_error\b
        | \binternal[\s_]server[\s_]error\b
        | \bapi\s*error\s*[:(]?\s*\(?\s*5[0-9][0-9]\b
        | \b(?:http/[0-9](?:\.[0-9])?|status(?:[\s_]?code)?|error[\s_]code|code)["']?\s*[:=]?\s*["']?5[0-9][0-9]\b
        | \berror\s+5[0-9][0-9]\b
        | \b5[0-9][0-9]\s*[-:]?\s*(?:internal|bad\s+gateway|service\s+unavailable|gateway\s+time-?out|overloaded|server\s+error)
        | \bbad\s+gateway\b
        | \bservice\s+(?:is\s+)?(?:temporarily\s+)?unavailable\b
        | \bgateway\s+time-?out\b
        | \bmodel_capacity_exhausted\b
        | \bno\s+capacity\s+available\b
        | \bserver_error\b
        | \bthe\s+server\s+had\s+an\s+error\b
        | \b(?:engine|server)_overloaded\b
        | \b(?:is|are|currently|server|servers|model|engine|api|service)\s+(?:currently\s+|temporarily\s+)?overloaded\b
        | "overloaded"
        | :\s*overloaded\b
        | "status"\s*:\s*"(?:internal|unavailable)"
        | \ban\s+internal\s+error\s+(?:has\s+)?occurred\b
        | \bupstream\s+connect\s+error\b
        | \bnot\s+your\s+usage\s+limit\b
        | \bcurrently\s+experiencing\s+high\s+(?:demand|load)\b
        | \bselected\s+model\s+is\s+at\s+capacity\b
        | \bserver_is_overloaded\b
        | \bconnection\s+to\s+the\s+api\s+was\s+lost\b
        | \bapi\s+error:\s+connection\s+(?:dropped|lost|closed|reset|error)\b
        | \bconnection\s+closed\s+before\s+the\s+response\s+finished\b
        | \bstream\s+disconnected\s+before\s+completion\b
        | \btypeerror:\s+terminated\b
        | \bread\s+econnreset\b
        | \bsocketerror:\s+other\s+side\s+closed\b
        | \[api\s+error:\s+terminated\]
        | \bunable\s+to\s+connect\s+to\s+api\b
        | \bconnection\s*refused\b | \beconnrefused\b
        | \btypeerror:\s+fetch\s+failed\b
        | \bconnection\s+failed:\s+error\s+sending\s+request\b
        | \breconnecting\W+waiting\s+for\s+network\b
        "#,
    )
});

/// A client's own retry loop: its countdown is not a reset and its line is not the
/// final word. Claude Code's stream-json says so with a `"subtype":"api_retry"` event.
pub(super) static COUNTDOWN: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          \bretrying\b
        | \(\s*attempt\s+[0-9]+\s*(?:/|of)\s*[0-9]+\s*\)
        | \battempt\s+[0-9]+\s*(?:/\s*[0-9]+\s*|of\s+[0-9]+\s+)?failed\b
        | \bwill\s+retry\b
        | \bretry\s+attempt\b
        | \bretry\s+[0-9]+\s*/\s*[0-9]+\b
        | \breconnecting\b\W*[0-9]+\s*/\s*[0-9]+
        | "subtype"\s*:\s*"api_retry"
        "#,
    )
});

/// A client's last word after its retries: it stopped (`Giving up.`, `not retrying`,
/// `Max attempts reached`, `after retrying 3 times`), so the line is the run's verdict,
/// not a countdown.
pub(super) static GAVE_UP: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \bgiv(?:ing|es)\s+up\b | \bgave\s+up\b
        | \bnot\s+(?:be\s+)?retr(?:ying|y|ied)\b | \bwon'?t\s+retry\b | \bno\s+(?:more\s+)?retr(?:y|ies)\b
        | \b(?:max(?:imum)?|all)\s+(?:number\s+of\s+)?(?:retry\s+|retries\s+)?(?:attempts?|retries|tries)\s+
          (?:reached|exceeded|exhausted|used|failed)\b
        | \bretries\s+(?:exhausted|exceeded)\b | \bout\s+of\s+retries\b
        | \bafter\s+retrying\b | \bafter\s+[0-9]+\s+(?:attempts|retries|tries)\b
        ",
    )
});

/// A client's notice that it tries again: what a countdown line says beyond reporting an
/// attempt that failed.
pub(super) static RETRY_ANNOUNCED: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          \bretrying\b | \bwill\s+retry\b | \bretry(?:ing)?\s+(?:in|after)\b | \bretry\s+attempt\b
        | \breconnecting\b | "subtype"\s*:\s*"api_retry"
        "#,
    )
});

/// `Attempt 3 failed with`, `Attempt 2 failed:` opening a client's report of an attempt.
pub(super) static ATTEMPT_FAILED: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)^\W*attempt\s+[0-9]+(?:\s*(?:/|of)\s*[0-9]+)?\s+failed\b\W*"));

/// `(attempt 3/3)`, `(attempt 3 of 3)`: the numbers of an attempt count.
static ATTEMPT_OF: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)\(\s*attempt\s+([0-9]+)\s*(?:/|of)\s*([0-9]+)\s*\)"));

/// Whether `text` is a client's notice of a retry it goes on with ([`COUNTDOWN`]), and not
/// its last word: a line that says it stopped ([`GAVE_UP`]) or names the last attempt
/// (`(attempt 3/3)`) is the run's verdict (docs/rate-limits.md, "How the output is read").
pub(super) fn is_countdown(text: &str) -> bool {
    COUNTDOWN.is_match(text) && !GAVE_UP.is_match(text) && !names_the_last_attempt(text)
}

/// Whether `text` names a client's last attempt: `(attempt 3/3)`, `(attempt 5 of 5)`.
pub(super) fn names_the_last_attempt(text: &str) -> bool {
    ATTEMPT_OF.captures(text).is_some_and(|numbers| {
        let number = |index: usize| numbers.get(index).and_then(|found| found.as_str().parse::<u64>().ok());
        matches!((number(1), number(2)), (Some(attempt), Some(of)) if attempt >= of)
    })
}

/// Warnings before the limit, and usage meters.
pub(super) static WARNING: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \bapproaching\b
        | \b[0-9]{1,3}(?:\.[0-9]+)?\s*%\s*(?:of\b|used\b)
        | \bused\s+(?:over\s+|about\s+|nearly\s+|almost\s+|more\s+than\s+)?[0-9]{1,3}(?:\.[0-9]+)?\s*%
        | \bheads\s+up\b
        | \b(?:almost|nearly|close\s+to)\s+(?:reaching\s+|hitting\s+)?(?:your|the|a)\b
        | \bwill\s+(?:soon\s+)?(?:be\s+)?(?:reach|hit)
        ",
    )
});

/// Model fallbacks: the work goes on with another model.
pub(super) static FALLBACK: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \bnow\s+using\b
        | \bswitch(?:ing|ed)\s+(?:you\s+)?(?:to|from)\b
        | \bautomatically\s+switch
        | \bfall(?:ing|s)?\s*back\b
        | \bfell\s+back\b
        | \bfallback\b
        | \bfor\s+the\s+remainder\s+of\s+(?:this|the)\s+session\b
        | \busing\s+[\w.\-\s]{1,30}\s+instead\b
        | \bdowngrad(?:e|ed|ing)\s+to\b
        ",
    )
});

/// A request too big for the limit fails the same way on every retry: it is the
/// item's failure, not a quota to wait for.
pub(super) static OVERSIZED_REQUEST: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \brequest\s+too\s+large\b
        | \btokens\s+must\s+be\s+reduced\b
        | \bprompt\s+is\s+too\s+long\b
        | \bmaximum\s+context\s+length\b
        ",
    )
});

/// The same, looked for on the lines that follow a hit (Gemini CLI prints the
/// fallback notice on its own line).
pub(super) static FALLBACK_FOLLOWING: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \bnow\s+using\b
        | \bswitching\s+(?:to|from)\b
        | \bswitched\s+(?:you\s+)?to\b
        | \bautomatically\s+switch
        | \bfalling\s+back\b
        | \bfallback\s+model\b
        | \bfor\s+the\s+remainder\s+of\s+(?:this|the)\s+session\b
        ",
    )
});

/// A structured run that reports its own success (codex `exec --json` ends a finished
/// turn with `turn.completed`): like `"is_error": false`.
pub(super) static TURN_COMPLETED: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"(?i)"type"\s*:\s*"turn\.completed""#));
/// gemini-cli's `stream-json` ends a run with `{"type":"result",…,"status":"success",…}`:
/// like `"is_error": false`.
pub(super) static RESULT_STATUS_SUCCESS: LazyLock<Regex> =
    LazyLock::new(|| gemini_stream_event("result", "status", "success"));

/// A line of gemini-cli's `stream-json` of `event_type` whose first field after its
/// timestamp is `field` = `value`: `{"type":"message","timestamp":"…","role":"user",…}`.
pub(super) fn gemini_stream_event(event_type: &str, field: &str, value: &str) -> Regex {
    compile(&format!(
        r#"(?i)^\s*\{{\s*"type"\s*:\s*"{event_type}"\s*,(?:\s*"timestamp"\s*:\s*"[^"]*"\s*,)?\s*"{field}"\s*:\s*"{value}""#
    ))
}

/// Anthropic's workspace spend limit, which names the day access returns: time fixes it,
/// so the stated reset is kept (docs/rate-limits.md, "Needs attention").
pub(super) static WORKSPACE_LIMIT_WITH_RETURN: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?i)\bspecified\s+(?:[\w-]+\s+){0,2}usage\s+limits?\b.*\bregain\s+access\s+on\b")
});

pub(super) static RATE_LIMIT_EVENT: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"(?i)"type"\s*:\s*"rate_limit_event""#));
pub(super) static STATUS_REJECTED: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"(?i)"status"\s*:\s*"rejected""#));

/// Quota that waiting does not fix.
pub(super) static NEEDS_ATTENTION: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          \binsufficient_quota\b
        | \bbilling[\s_]hard[\s_]limit
        | \bcredit\s+balance\s+is\s+too\s+low\b
        | \bout\s+of\s+credits\b
        | \bspecified\s+(?:[\w-]+\s+){0,2}usage\s+limits?\b
        | \bmonthly\s+(?:[\w-]+\s+){0,3}?(?:limit|cap|quota|budget)s?\b
        | \b(?:spend|spending|budget)\s+(?:limit|cap)\b
        | \blimit["']?\s*:\s*["']?0(?:[^.0-9]|$)
        | \bquota_limit_value["']?\s*:\s*["']?0["']?(?:[^.0-9]|$)
        | \bpayment\s+required\b
        | \binsufficient\s+(?:credits?|balance|funds)\b
        "#,
    )
});
pub(super) static BILLING_MENTION: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)\bbilling\b|\bexceeded\s+your\s+current\s+quota\b"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// English wording: must start the message (at most `max_prefix_words` words after
    /// the last separator, none of them prose connectives) and not run on as prose.
    Phrase { max_prefix_words: usize, requires_reset: bool },
    /// An error identifier (`rate_limit_error`): must stand as a value, a key or the
    /// start of a message, never inside a sentence or backticks.
    Token,
}

pub(super) struct QuotaPattern {
    pub(super) regex: Regex,
    pub(super) shape: Shape,
    pub(super) kind: HitKind,
    pub(super) needs_attention: bool,
}

impl QuotaPattern {
    fn phrase(pattern: &str, max_prefix_words: usize) -> QuotaPattern {
        QuotaPattern {
            regex: compile(pattern),
            shape: Shape::Phrase { max_prefix_words, requires_reset: false },
            kind: HitKind::Message,
            needs_attention: false,
        }
    }

    /// An HTTP status shape (`429 Too Many Requests`): a phrase, reported after the
    /// English message when a run prints both.
    fn status(pattern: &str, max_prefix_words: usize) -> QuotaPattern {
        QuotaPattern { kind: HitKind::Status, ..QuotaPattern::phrase(pattern, max_prefix_words) }
    }

    fn token(pattern: &str, needs_attention: bool) -> QuotaPattern {
        QuotaPattern { regex: compile(pattern), shape: Shape::Token, kind: HitKind::Token, needs_attention }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HitKind {
    /// English wording ("usage limit reached").
    Message,
    /// An HTTP status shape ("429 Too Many Requests").
    Status,
    /// An error identifier (`rate_limit_error`).
    Token,
    /// A stream-json `rate_limit_event` with `"status": "rejected"`.
    StreamEvent,
    /// A drain's own `quota_patterns` entry.
    UserPattern,
}

/// A file system's quota (`Disk quota exceeded`, EDQUOT, errno 122): the worker's host is
/// out of space, no vendor's limit.
pub(super) static FILESYSTEM_QUOTA: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?ix)\b(?:disk|file\s*system|inode)\s+quota\b|\bEDQUOT\b|\berrno\s*122\b"));

/// Limits that are not quota: context windows, turns, recursion, timeouts, sizes.
pub(super) static EXCLUDED_LIMIT_KINDS: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)\b(?:context|length|recursion|turns?|steps?|depth|size|memory|time|timeout|retry|retries|files?|output|input|characters?|payload|upload|storage|disk|stack|iterations?|max_tokens|maximum|conversation|prompt|tools?|loop|budget_tokens)\b",
    )
});

pub(super) static QUOTA_PATTERNS: LazyLock<Vec<QuotaPattern>> = LazyLock::new(|| {
    vec![
        // "Claude AI usage limit reached|1763744400", "5-hour limit reached ∙ resets
        // 12pm", "Opus weekly limit reached", "Rate limit reached for gpt-4o in ...",
        // "API rate limit exceeded for user ID 1", "Usage limit reached for all Pro models"
        QuotaPattern::phrase(
            r"(?i)\b(?:usage|rate|requests?|api|daily|weekly|monthly|hourly|session|(?:[0-9]+|five)[\s-]?(?:hours?|hr|h)|model|quota|plan|account|spend(?:ing)?|opus|sonnet|haiku)(?:\s+[0-9.]+)?\s+limits?\s+(?:has\s+been\s+|have\s+been\s+|was\s+|is\s+)?(?:reached|exceeded|hit)\b",
            3,
        ),
        // "You've hit your session limit", "You've hit your usage limit", "You exceeded
        // your current quota", "you've hit a rate limit", "You have exhausted your
        // capacity on this model", "You have reached your daily gemini-2.5-pro quota limit"
        QuotaPattern::phrase(
            r"(?i)\b(?:hit|reached|exceeded|exhausted|used\s+up|run\s+out\s+of|ran\s+out\s+of)\s+(?:your|the|a|an|its|this|our)\s+(?:[\w.'/-]+\s+){0,4}?(?:limits?|quotas?|capacity|allowance)\b",
            3,
        ),
        // "You're out of extra usage · resets Feb 4, 8pm (Europe/Budapest)"
        QuotaPattern::phrase(
            r"(?i)\bout\s+of\s+(?:extra\s+|included\s+|your\s+)?(?:usage|credits?|quota)\b",
            3,
        ),
        // "Quota exceeded for quota metric 'Gemini 2.5 Pro Requests' ..."
        QuotaPattern::phrase(
            r"(?i)\bquotas?\s+(?:limit\s+)?(?:has\s+been\s+|was\s+)?(?:exceeded|exhausted|reached|hit)\b",
            3,
        ),
        // "Resource has been exhausted (e.g. check quota)."
        QuotaPattern::phrase(r"(?i)\bresource\s+(?:has\s+been\s+)?exhausted\b", 3),
        // "Your quota will reset after 8h44m7s."
        QuotaPattern::phrase(r"(?i)\bquota\s+will\s+reset\b", 3),
        // "Your credit balance is too low to access the Anthropic API."
        QuotaPattern {
            regex: compile(r"(?i)\bcredit\s+balance\s+is\s+too\s+low\b"),
            shape: Shape::Phrase { max_prefix_words: 3, requires_reset: false },
            kind: HitKind::Message,
            needs_attention: true,
        },
        // codex: "You hit your spend cap set in your workspace. Increase your spend cap to
        // continue." (or "set by the owner of your workspace"): an owner must act.
        QuotaPattern {
            regex: compile(
                r"(?i)\b(?:hit|reached|exceeded)\s+(?:your|the|its)\s+(?:[\w-]+\s+)?(?:spend(?:ing)?|budget)\s+cap\b",
            ),
            shape: Shape::Phrase { max_prefix_words: 3, requires_reset: false },
            kind: HitKind::Message,
            needs_attention: true,
        },
        // "Insufficient credits. Add more using ...", "402 Payment Required"
        QuotaPattern {
            regex: compile(r"(?i)\binsufficient\s+(?:credits?|balance|funds)\b|\bpayment\s+required\b"),
            shape: Shape::Phrase { max_prefix_words: 3, requires_reset: false },
            kind: HitKind::Message,
            needs_attention: true,
        },
        // "429 Too Many Requests"
        QuotaPattern::status(r"(?i)\btoo\s+many\s+requests\b", 3),
        // "Request was throttled. Expected available in 37 seconds."
        QuotaPattern::phrase(
            r"(?i)\b(?:(?:requests?|calls?)\s+(?:was|were|is|are|has\s+been|have\s+been)\s+|been\s+|being\s+)?throttled\b",
            0,
        ),
        // "Error: rate limited", "You are being rate limited."
        QuotaPattern::phrase(
            r"(?i)\b(?:you(?:'re|\s+are|\s+have\s+been)\s+(?:being\s+|currently\s+|temporarily\s+)?)?rate[\s-]limited\b",
            0,
        ),
        // httpx's `Client error '429 Too Many Requests' for url '…'`, and urllib3 (under
        // requests) giving up with "too many 429 error responses".
        QuotaPattern::status(
            r"(?i)\bclient\s+error\s+'429\s+too\s+many\s+requests'\s+for\s+url\b|\btoo\s+many\s+429\s+error\s+responses\b",
            3,
        ),
        // HTTP 429 in its usual spellings; curl 8 prints no reason phrase.
        QuotaPattern::status(
            r#"(?i)(?:\bhttp/[0-9](?:\.[0-9])?\s+429\b|\b(?:status|error)[\s_]?(?:code)?["']?\s*[:=]\s*["']?429\b|\bstatus\s+code\s+429\b|\b(?:with|returned|got|received)\s+(?:http\s+)?status\s+429\b|\bapi\s*error\s*[:(]?\s*\(?\s*429\b|\brequest\s+rejected\s*\(\s*429\s*\)|\bcode["']?\s*:\s*429\b|(?:\bcurl:\s*\([0-9]+\)\s+)?\bthe\s+requested\s+url\s+returned\s+error\s*:?\s*429\b|\b429\s*(?:-\s*\{|\{|[:-]?\s*(?:too\s+many|rate[\s_-]?limit|resource[\s_]exhausted|quota)))"#,
            3,
        ),
        // A bare "Limit reached · resets 3pm" at the start of a line, with a reset.
        QuotaPattern {
            regex: compile(r"(?i)\blimit\s+reached\b"),
            shape: Shape::Phrase { max_prefix_words: 0, requires_reset: true },
            kind: HitKind::Message,
            needs_attention: false,
        },
        QuotaPattern::token(
            r"(?i)\b(?:rate_limit_error|rate_limit_exceeded|rate_limited|ratelimit(?:ed|error|exceeded(?:error|exception)?)|too_many_requests|toomanyrequests(?:error|exception)?|resource_exhausted|resourceexhausted|quota_exceeded|quotaexceeded|userratelimitexceeded|dailylimitexceeded|terminalquotaerror|retryablequotaerror|usage_limit_(?:reached|exceeded))\b",
            false,
        ),
        QuotaPattern::token(r"(?i)\b(?:insufficient_quota|billing_hard_limit_reached)\b", true),
    ]
});

#[cfg(test)]
mod tests {
    #[test]
    fn limit_wording_is_told_from_a_goodbye() {
        for worded in [
            "You've hit your session limit · resets 8pm",
            r#"{"type":"rate_limit_error"}"#,
            "RateLimitError: 429",
            "Please try again in 20s.",
            "Claude AI usage limit reached|1763744400",
            "RESOURCE_EXHAUSTED: Quota exceeded",
        ] {
            assert!(LIMIT_OR_RESET_HINT.is_match(worded.as_bytes()), "{worded}");
        }
        for goodbye in ["shutting down", "still working 3", "generated 2 files", "awaiting input", "accurate"]
        {
            assert!(!LIMIT_OR_RESET_HINT.is_match(goodbye.as_bytes()), "{goodbye}");
        }
        // A client's last word that reports the limit again, after its retry, states no
        // reset of its own: the reset counts from the limit's line, not from it (before:
        // the group waited the client's retry delay too long).
        for last_word in ["Attempt 2 failed with status 429. Giving up.", "Error 429: max retries exceeded"] {
            assert!(LIMIT_OR_RESET_HINT.is_match(last_word.as_bytes()), "{last_word}");
            assert!(!is_limit_or_reset_worded(last_word.as_bytes()), "{last_word}");
        }
        for worded in [
            "Attempt 2 failed with status 429. Giving up; try again in 5 minutes.",
            "Rate limit reached. Please try again in 50.000s.\nAttempt 2 failed with status 429. Giving up.",
            "usage limit reached",
        ] {
            assert!(is_limit_or_reset_worded(worded.as_bytes()), "{worded}");
        }
    }

    use super::*;

    #[test]
    fn built_in_patterns_compile() {
        assert!(!QUOTA_PATTERNS.is_empty());
        let patterns: [&Regex; 24] = [
            &RETRY_ANNOUNCED,
            &ERROR_OUTPUT_LINE,
            &GAVE_UP,
            &ATTEMPT_FAILED,
            &ATTEMPT_OF,
            &TURN_COMPLETED,
            &RESULT_STATUS_SUCCESS,
            &WORKSPACE_LIMIT_WITH_RETURN,
            &HIT_HINT,
            &IS_ERROR_TRUE,
            &IS_ERROR_FALSE,
            &ERROR_OBJECT,
            &SERVER_ERROR,
            &COUNTDOWN,
            &WARNING,
            &FALLBACK,
            &FALLBACK_FOLLOWING,
            &OVERSIZED_REQUEST,
            &RATE_LIMIT_EVENT,
            &STATUS_REJECTED,
            &NEEDS_ATTENTION,
            &BILLING_MENTION,
            &EXCLUDED_LIMIT_KINDS,
            &QUOTA_PATTERNS[0].regex,
        ];
        assert!(patterns.iter().all(|pattern| !pattern.as_str().is_empty()));
    }
}
