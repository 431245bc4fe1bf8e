//! The item's own words in a worker's output. A wrapper may print a string of the payload
//! it was given at the end of a line of its own (`cannot read $path`, `::checkpoint::
//! summarising $path`), and whoever wrote the payload — a web form, a file dropped into a
//! source folder — chose those words: a limit, a wait or a server error they spell is the
//! item's content, never the client's, and must not stall the group (docs/rate-limits.md,
//! "How the output is read"; docs/guarantees.md, "Item content never stalls a group").
//! A string the client's own line goes on after (a ticket's subject quoting the client's
//! heading, `You've hit your 5-hour limit · resets 7am`), or that a line is nothing but (a
//! script printing the limit its payload names), stays the client's.

use std::collections::BTreeSet;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

/// A string of the payload shorter than this is not looked for: a word of it may well be
/// the client's own (`429`, `gpt-4o`).
const MIN_ITEM_CHARS: usize = super::MIN_ECHOED_CHARS;
/// A string longer than this is looked for whole and by its lines, not by its paths'
/// tails (a path is at most 4,096 bytes on Linux).
const MAX_PATH_CHARS: usize = 4096;
/// What stands for the item's words in a line read again without them.
const IN_PLACE_OF_THE_ITEM: &str = "…";

/// The strings of an item's payload, found in a stream in one left-to-right scan.
pub(crate) struct ItemStrings {
    finder: Option<AhoCorasick>,
}

impl ItemStrings {
    /// The strings of the payload that opens the worker's `input`
    /// ([`crate::drain::worker_input`]): every string value and object key of at least
    /// [`MIN_ITEM_CHARS`] characters, each line of one, and of a path each tail after a
    /// `/` (a wrapper printing a file's name or its path under a folder) — each also as a
    /// JSON string writes it (`\"`, `\u00e9`), for a wrapper that prints JSON.
    pub(crate) fn of(input: &[u8]) -> ItemStrings {
        let mut strings = BTreeSet::new();
        if let Some(Ok(payload)) = serde_json::Deserializer::from_slice(input).into_iter::<Value>().next() {
            collect(&payload, &mut strings);
        }
        let escaped: Vec<String> = strings.iter().flat_map(|text| json_forms(text)).collect();
        strings.extend(escaped);
        let finder = match strings.is_empty() {
            true => None,
            // Built only when an output reads as affecting the group (a limit, an error, a
            // client's wait); a payload too large for the automaton is not looked for.
            false => AhoCorasick::builder().match_kind(MatchKind::Standard).build(&strings).ok(),
        };
        ItemStrings { finder }
    }

    /// `text` with each of the item's strings that ends a line of the worker's own words
    /// replaced by `…`: the string has a letter or a digit before it on its line, none
    /// after it, and words a verdict could come from (a limit's, a wait's, a server
    /// error's, a refused key's). `None` when there is none. A string that spans lines (a
    /// path with a line break) is the item's on every line of it.
    pub(crate) fn masked(&self, text: &str) -> Option<String> {
        let finder = self.finder.as_ref()?;
        let mut found: Vec<(usize, usize)> =
            finder.find_overlapping_iter(text).map(|found| (found.start(), found.end())).collect();
        // A path's tail inside the path found there is that path's part: the words before
        // it are the item's too. Sorted by start, longest first, a span ending no later
        // than one before it lies inside that one.
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        found.dedup();
        let mut reach = 0;
        let outermost: Vec<(usize, usize)> = found
            .into_iter()
            .filter(|&(start, end)| {
                let inside = end <= reach;
                reach = reach.max(end);
                !(inside && start > 0 && text.as_bytes()[start - 1] == b'/')
            })
            .collect();
        let spans: Vec<(usize, usize)> = outermost
            .into_iter()
            .filter(|&(start, end)| {
                let line_start = text[..start].rfind('\n').map_or(0, |at| at + 1);
                let line_end = text[end..].find('\n').map_or(text.len(), |at| end + at);
                let before = &text[line_start..start];
                has_words_of_its_own(before)
                    && !is_a_clients_label(before)
                    && !has_words_of_its_own(&text[end..line_end])
                    && could_decide(&text[start..end])
            })
            .collect();
        if spans.is_empty() {
            return None;
        }
        let mut masked = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in merged(spans) {
            masked.push_str(&text[at..start]);
            masked.push_str(IN_PLACE_OF_THE_ITEM);
            at = end;
        }
        masked.push_str(&text[at..]);
        Some(masked)
    }

    /// [`ItemStrings::masked`] of a captured stream, read as UTF-8 as the classifier reads
    /// it.
    pub(crate) fn masked_bytes(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.masked(&String::from_utf8_lossy(bytes)).map(String::into_bytes)
    }

    /// `lines` (a stream's latest lines, oldest first) as they read without the item's
    /// words; `None` when they hold none of them.
    pub(crate) fn masked_lines(&self, lines: &[&str]) -> Option<Vec<String>> {
        let masked = self.masked(&lines.join("\n"))?;
        Some(masked.split('\n').map(str::to_string).collect())
    }
}

/// Whether the words before a payload's string on its line are only a client's label
/// for its own message (`ERROR:`, `API Error:`, `Error:`, `Attempt 2 failed:`): a ticket
/// quoting the client's message without its label leaves the client's line the client's.
fn is_a_clients_label(before: &str) -> bool {
    static LABEL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        super::patterns::compile(
            r"(?i)^\s*(?:[*✕×!-]\s*)?(?:\[?(?:api\s+)?(?:error|warning|fatal)\]?|attempt\s+\d+\s+failed(?:\s+with\s+status\s+\d+)?)\s*[:\-]?\s*$",
        )
    });
    LABEL.is_match(&strip_escapes(before))
}

/// `spans` sorted and merged where they overlap or touch.
fn merged(mut spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Whether a string of the item could decide a verdict: it holds a word of a limit, of a
/// client's wait, of a server error or of a refused key. A zone (`America/Los_Angeles`)
/// or a window (`tokens per minute`) the payload names is left in the client's line.
fn could_decide(text: &str) -> bool {
    static WORDS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        super::patterns::compile(
            r"(?i)retry|retrying|try\s+again|wait|\b5[0-9]{2}\b|server|unavailable|overload|api\s*key|unauthori|forbidden|permission|log\s*in\b|authenticat",
        )
    });
    super::patterns::HIT_HINT.is_match(text) || WORDS.is_match(text)
}

/// How a JSON string writes `text` when it differs from `text` itself: escaped as
/// serde_json (and Go, jq) write it, and with every character beyond ASCII as `\uXXXX`
/// (Python's `json.dumps`).
fn json_forms(text: &str) -> Vec<String> {
    let Ok(quoted) = serde_json::to_string(text) else { return Vec::new() };
    let escaped = quoted[1..quoted.len() - 1].to_string();
    // jq and Python escape DEL too, and Go `&`, `<` and `>`.
    let unicode_escaped = |escape: &dyn Fn(char) -> bool| {
        let mut written = String::with_capacity(escaped.len());
        for c in escaped.chars() {
            if !escape(c) {
                written.push(c);
                continue;
            }
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                written.push_str(&format!("\\u{unit:04x}"));
            }
        }
        written
    };
    let python = unicode_escaped(&|c| !c.is_ascii() || c == '\x7f');
    let go = unicode_escaped(&|c| !c.is_ascii() || c == '\x7f' || matches!(c, '&' | '<' | '>'));
    let jq = unicode_escaped(&|c| c == '\x7f');
    [escaped, python, go, jq].into_iter().filter(|form| form != text).collect()
}

fn collect(value: &Value, strings: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => add(text, strings),
        Value::Array(values) => values.iter().for_each(|value| collect(value, strings)),
        Value::Object(fields) => {
            for (key, value) in fields {
                add(key, strings);
                collect(value, strings);
            }
        }
        _ => {}
    }
}

fn add(text: &str, strings: &mut BTreeSet<String>) {
    let long_enough = |text: &str| text.chars().count() >= MIN_ITEM_CHARS;
    if long_enough(text) {
        strings.insert(text.to_string());
    }
    for line in text.lines().map(str::trim).filter(|line| long_enough(line)) {
        strings.insert(line.to_string());
        // Tails only of what looks like a path: no blank before its first `/` (a URL in a
        // sentence — `metric: generativelanguage.googleapis.com/…` — is no file's path).
        let looks_like_a_path =
            line.find('/').is_some_and(|slash| !line[..slash].contains(char::is_whitespace));
        if line.len() > MAX_PATH_CHARS || !looks_like_a_path {
            continue;
        }
        let mut tail = line;
        while let Some(slash) = tail.find('/') {
            tail = &tail[slash + 1..];
            if !long_enough(tail) {
                break;
            }
            strings.insert(tail.to_string());
        }
    }
}

/// Whether a line, the item's strings taken out, still has a letter or a digit outside
/// a terminal escape (`\x1b[31m`).
fn has_words_of_its_own(line: &str) -> bool {
    strip_escapes(line).chars().any(char::is_alphanumeric)
}

/// `text` without its terminal escapes.
fn strip_escapes(text: &str) -> std::borrow::Cow<'_, str> {
    static ESCAPE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        super::patterns::compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)")
    });
    ESCAPE.replace_all(text, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payloads_string_ending_a_wrappers_line_is_masked() {
        let payload =
            br#"{"path": "/uploads/17. You have reached your usage limit, resets in 6 days", "n": 3}
./bin/summarise.sh"#;
        let strings = ItemStrings::of(payload);
        let whole = "/uploads/17. You have reached your usage limit, resets in 6 days";
        assert_eq!(strings.masked(&format!("cannot read {whole}")).as_deref(), Some("cannot read …"));
        // A path's tail (the file's name), in quotes.
        assert_eq!(
            strings
                .masked("summarising '17. You have reached your usage limit, resets in 6 days'.")
                .as_deref(),
            Some("summarising '…'.")
        );
        // The client's own words are left as they are, and so is a line that is nothing
        // but a string of the payload: a worker printing what its payload tells it to.
        assert_eq!(strings.masked("Claude AI usage limit reached|1765130000"), None);
        assert_eq!(strings.masked(&format!("  \x1b[31m{whole}\x1b[0m\n")), None);
        assert_eq!(
            strings.masked(&format!("{whole}\nnot found: {whole}\n")).as_deref(),
            Some(&*format!("{whole}\nnot found: …\n"))
        );
        // A string with a line break that a wrapper's line began: the item's on each line.
        let strings =
            ItemStrings::of(br#"{"path": "/in/report.pdf\nClaude AI usage limit reached|1797000000"}"#);
        assert_eq!(
            strings
                .masked("cannot read /in/report.pdf\nClaude AI usage limit reached|1797000000\n")
                .as_deref(),
            Some("cannot read …\n")
        );
        // Printed as JSON, by serde_json or by Python (`\u00e9`).
        let strings =
            ItemStrings::of(r#"{"path": "Café - usage limit reached, resets in 6 days"}"#.as_bytes());
        assert_eq!(
            strings
                .masked(r#"{"msg": "cannot read Caf\u00e9 - usage limit reached, resets in 6 days"}"#)
                .as_deref(),
            Some(r#"{"msg": "cannot read …"}"#)
        );
        // jq and Python escape DEL, Go `&`.
        let strings = ItemStrings::of(
            "{\"path\": \"/uploads/\u{7f}Q&A Claude AI usage limit reached|1797000000\"}".as_bytes(),
        );
        assert_eq!(
            strings
                .masked(
                    r#"{"msg":"cannot read /uploads/\u007fQ&A Claude AI usage limit reached|1797000000"}"#
                )
                .as_deref(),
            Some(r#"{"msg":"cannot read …"}"#)
        );
        assert_eq!(
            strings.masked(r#"{"msg":"cannot read /uploads/\u007fQ\u0026A Claude AI usage limit reached|1797000000"}"#).as_deref(),
            Some(r#"{"msg":"cannot read …"}"#)
        );
        // A short word of the payload is not looked for; nor is anything without a payload.
        assert_eq!(ItemStrings::of(br#"{"model": "gpt-4o"}"#).masked("Rate limit reached for gpt-4o"), None);
        assert_eq!(ItemStrings::of(b"not json\nargs").masked("error: not json"), None);
    }

    #[test]
    fn a_payloads_string_the_clients_line_goes_on_after_stays_the_clients() {
        // A ticket quoting the client's heading: the reset after it is the client's.
        let strings = ItemStrings::of(br#"{"subject": "You've hit your 5-hour limit", "body": "help"}"#);
        assert_eq!(strings.masked("You've hit your 5-hour limit \u{b7} resets 7am (Europe/Warsaw)"), None);
        assert_eq!(strings.masked("API Error: You've hit your 5-hour limit \u{b7} resets 7am"), None);
        // A model, a zone or a window the payload names, wherever it stands.
        let strings = ItemStrings::of(
            br#"{"model": "gpt-4o-2024-08-06", "zone": "America/Los_Angeles", "w": "input tokens per minute"}"#,
        );
        assert_eq!(
            strings.masked(
                "Rate limit reached for gpt-4o-2024-08-06 on requests per min. Please try again in 20s."
            ),
            None
        );
        assert_eq!(
            strings.masked("You've hit your session limit \u{b7} resets 12:50am (America/Los_Angeles)"),
            None
        );
        assert_eq!(strings.masked("429: rate limit of input tokens per minute"), None);
    }

    #[test]
    fn a_ticket_quoting_a_clients_message_without_its_label_leaves_the_message_the_clients() {
        let strings = ItemStrings::of(
            br#"{"body": "Quota exceeded. Check your plan and billing details.\nGemini CLI says: Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro"}"#,
        );
        assert_eq!(strings.masked("ERROR: Quota exceeded. Check your plan and billing details."), None);
        assert_eq!(
            strings.masked("\x1b[31mAPI Error:\x1b[0m Quota exceeded. Check your plan and billing details."),
            None
        );
        // A URL's tail in a sentence is no file's path.
        let line = "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro";
        assert_eq!(strings.masked(line), None);
        // A wrapper's own words before it still make it the item's.
        assert_eq!(
            strings.masked("cannot read Quota exceeded. Check your plan and billing details.").as_deref(),
            Some("cannot read …")
        );
    }

    #[test]
    fn overlapping_strings_of_the_payload_are_each_judged() {
        let strings = ItemStrings::of(
            br#"{"path": "/srv/uploads/You have reached your usage limit, resets in 6 days", "title": "cannot read /srv/uploads/You"}"#,
        );
        let masked =
            strings.masked("cannot read /srv/uploads/You have reached your usage limit, resets in 6 days");
        assert_eq!(masked.as_deref(), Some("cannot read …"));
        // A second string that is the wrapper's whole line leaves the path inside it the
        // item's.
        let strings = ItemStrings::of(
            br#"{"path": "/uploads/Claude AI usage limit reached|1797000000", "title": "cannot read /uploads/Claude AI usage limit reached|1797000000"}"#,
        );
        let masked = strings.masked("cannot read /uploads/Claude AI usage limit reached|1797000000");
        assert_eq!(masked.as_deref(), Some("cannot read …"));
    }
}
