//! The item's own words in a worker's output. A wrapper may print a string of the payload
//! it was given inside a line of its own (`cannot read $path`, `::checkpoint:: summarising
//! $path`), and whoever wrote the payload — a web form, a file dropped into a source
//! folder — chose those words: a limit, a wait or a server error they spell is the item's
//! content, never the client's, and must not stall the group (docs/rate-limits.md, "How
//! the output is read"; docs/guarantees.md, "Item content never stalls a group").

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

/// The strings of an item's payload, found in a line in one left-to-right scan.
pub(crate) struct ItemStrings {
    finder: Option<AhoCorasick>,
}

impl ItemStrings {
    /// The strings of the payload that opens the worker's `input`
    /// ([`crate::drain::worker_input`]): every string value and object key of at least
    /// [`MIN_ITEM_CHARS`] characters, each line of one, and of a path each tail after a
    /// `/` (a wrapper printing a file's name or its path under a folder).
    pub(crate) fn of(input: &[u8]) -> ItemStrings {
        let mut strings = BTreeSet::new();
        if let Some(Ok(payload)) = serde_json::Deserializer::from_slice(input).into_iter::<Value>().next() {
            collect(&payload, &mut strings);
        }
        let finder = match strings.is_empty() {
            true => None,
            // Built once per judged run, only when its output spelled something that
            // affects the group; a payload too large for the automaton is read as before.
            false => AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&strings).ok(),
        };
        ItemStrings { finder }
    }

    /// `text` with the item's strings replaced by `…` in each line that has words of
    /// its own besides them (`cannot read $path`); `None` when no line has. A line that
    /// is nothing but the item's strings is left as it is: a worker printing what its
    /// payload tells it to (a script simulating a vendor, `jq -r .message >&2`) prints
    /// its own message (docs/rate-limits.md, "How the output is read").
    pub(crate) fn masked(&self, text: &str) -> Option<String> {
        let finder = self.finder.as_ref()?;
        if !finder.is_match(text) {
            return None;
        }
        let mut masked = String::with_capacity(text.len());
        let mut changed = false;
        for line in text.split_inclusive('\n') {
            let found: Vec<_> = finder.find_iter(line).collect();
            let mut rest = String::with_capacity(line.len());
            let mut at = 0;
            for item in &found {
                rest.push_str(&line[at..item.start()]);
                rest.push_str(IN_PLACE_OF_THE_ITEM);
                at = item.end();
            }
            rest.push_str(&line[at..]);
            if !found.is_empty() && has_words_of_its_own(&rest) {
                masked.push_str(&rest);
                changed = true;
            } else {
                masked.push_str(line);
            }
        }
        changed.then_some(masked)
    }

    /// [`ItemStrings::masked`] of a captured stream, read as UTF-8 as the classifier reads
    /// it.
    pub(crate) fn masked_bytes(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.masked(&String::from_utf8_lossy(bytes)).map(String::into_bytes)
    }
}

/// Whether a line, the item's strings taken out, still has a letter or a digit outside
/// a terminal escape (`\x1b[31m`).
fn has_words_of_its_own(line: &str) -> bool {
    static ESCAPE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        super::patterns::compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)")
    });
    ESCAPE.replace_all(line, "").chars().any(char::is_alphanumeric)
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
        if line.len() > MAX_PATH_CHARS {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payloads_strings_their_lines_and_a_paths_tails_are_masked() {
        let payload =
            br#"{"path": "/uploads/17. You have reached your usage limit, resets in 6 days", "n": 3}
./bin/summarise.sh"#;
        let strings = ItemStrings::of(payload);
        assert_eq!(
            strings
                .masked("cannot read /uploads/17. You have reached your usage limit, resets in 6 days")
                .as_deref(),
            Some("cannot read …")
        );
        assert_eq!(
            strings.masked("summarising 17. You have reached your usage limit, resets in 6 days.").as_deref(),
            Some("summarising ….")
        );
        // The client's own words are left as they are, and so is a line that is nothing
        // but a string of the payload: a worker printing what its payload tells it to.
        assert_eq!(strings.masked("Claude AI usage limit reached|1765130000"), None);
        let whole = "/uploads/17. You have reached your usage limit, resets in 6 days";
        assert_eq!(strings.masked(&format!("  \x1b[31m{whole}\x1b[0m\n")), None);
        assert_eq!(
            strings.masked(&format!("{whole}\nnot found: {whole}\n")).as_deref(),
            Some(&*format!("{whole}\nnot found: …\n"))
        );
        // A line of a string with a newline is the item's too.
        let strings = ItemStrings::of(br#"{"name": "a\nusage limit reached, resets in 6 days"}"#);
        assert_eq!(strings.masked("name: usage limit reached, resets in 6 days").as_deref(), Some("name: …"));
        // A short word of the payload is not looked for; nor is anything without a payload.
        assert_eq!(ItemStrings::of(br#"{"model": "gpt-4o"}"#).masked("Rate limit reached for gpt-4o"), None);
        assert_eq!(ItemStrings::of(b"not json\nargs").masked("not json"), None);
    }

    #[test]
    fn a_model_named_by_the_payload_leaves_the_clients_limit_message_a_limit_message() {
        let strings = ItemStrings::of(br#"{"model": "gpt-4o-2024-08-06"}"#);
        assert_eq!(
            strings
                .masked(
                    "Rate limit reached for gpt-4o-2024-08-06 on requests per min. Please try again in 20s."
                )
                .as_deref(),
            Some("Rate limit reached for … on requests per min. Please try again in 20s.")
        );
    }
}
