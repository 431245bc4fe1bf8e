//! Access refused: the worker's key or login rejected, its key without permission, its
//! model gone. Every item of the quota group would meet the same answer and waiting does
//! not fix it, so a failed run that says so is a hit that needs attention and parks the
//! group, rather than a failure that uses an attempt of each item in turn until the whole
//! backlog is dead-lettered (docs/rate-limits.md, "Needs attention").
//!
//! Read only in a run that failed (a non-zero exit, or output that is itself an error
//! object), on the worker's own lines — never on the item's echoed input or on a line the
//! client retried past — and only after no quota hit and no server error was found.

use std::sync::LazyLock;

use regex::Regex;

use super::clean::{Line, Origin};
use super::patterns::compile;

/// The wordings of the three clients and the error identifiers of their APIs. A bare
/// `403 Forbidden` is not among them: a worker that fetches a page may well meet one for
/// that item alone.
static ACCESS_REFUSED: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          # Anthropic: error types, and Claude Code's messages
          \bauthentication_error\b
        | \bpermission_error\b
        | "api_error_type"\s*:\s*"not_found_error"
        | "type"\s*:\s*"not_found_error"\s*,\s*"message"\s*:\s*"model:
        | \binvalid\s+(?:x-)?api[\s_-]?key\b
        | \bfailed\s+to\s+authenticate\b
        | \bplease\s+run\s+/login\b
        | \boauth\s+token\s+(?:has\s+)?(?:expired|been\s+revoked)\b
        | \bissue\s+with\s+the\s+selected\s+model\b
        # OpenAI and codex-cli
        | \binvalid_api_key\b
        | \bincorrect\s+api\s+key\s+provided\b
        | \bmodel_not_found\b
        | \bdoes\s+not\s+exist\s+or\s+you\s+do\s+not\s+have\s+access\s+to\s+it\b
        | \bunexpected\s+status\s+40[13]\b
        | \baccess\s+token\s+could\s+not\s+be\s+refreshed\b
        | \bchatgpt\s+credential\s+expired\b
        # No key at all: codex's `Missing environment variable: `OPENAI_API_KEY``,
        # gemini-cli's `you must specify the GEMINI_API_KEY environment variable`
        | \bmissing\s+environment\s+variable\W{0,3}\w*api_key\b
        | \bmust\s+specify\s+the\s+\w*api_key\s+environment\s+variable\b
        # Gemini: statuses and reasons, and gemini-cli's error class
        | \bapi_key_invalid\b
        | \bapi\s+key\s+(?:is\s+)?not\s+valid\b
        | "status"\s*:\s*"(?:unauthenticated|permission_denied)"
        | \bconsumer_suspended\b
        | \bmodelnotfounderror\b
        | \bis\s+not\s+found\s+for\s+api\s+version\b
        # Claude Code's "API Error: 401 …" and "API Error: 403 …"
        | \bapi\s*error\s*[:(]?\s*\(?\s*40[13]\b
        "#,
    )
});

/// The last of the worker's lines that says its access was refused, as stored with the
/// hit (at most about 500 characters around the words).
pub(super) fn refused_access(streams: &[&[Line]]) -> Option<String> {
    let refused = |line: &&Line| line.origin == Origin::Worker && !line.retried && !line.text.is_empty();
    streams.iter().rev().find_map(|lines| {
        lines.iter().rev().filter(refused).find_map(|line| {
            ACCESS_REFUSED
                .find(&line.text)
                .map(|found| super::excerpt(&line.text, found.start(), found.end()))
        })
    })
}
