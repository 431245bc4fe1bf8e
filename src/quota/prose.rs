//! Telling a limit message from prose that mentions limits. A phrase counts when it
//! starts a message (nothing, a separator or a few words that are not prose connectives
//! before it) and does not run on as the subject of a sentence; an identifier counts as a
//! value, a key or the start of a line. A run that exited 0 must also print the hit in
//! the shape of a real limit message, not a sentence of its result.

use std::sync::LazyLock;

use regex::{Match, Regex};

use super::patterns::{compile, QuotaPattern, Shape, EXCLUDED_LIMIT_KINDS};
use super::reset::RESET_KEYWORD;

/// Whether `found`, a match of `pattern` in `text`, is a limit message and not prose.
pub(super) fn accepts(pattern: &QuotaPattern, text: &str, found: &Match<'_>) -> bool {
    match pattern.shape {
        Shape::Phrase { max_prefix_words, requires_reset } => {
            starts_message(&text[..found.start()], max_prefix_words)
                && !runs_on_as_prose(&text[found.end()..])
                && !EXCLUDED_LIMIT_KINDS.is_match(found.as_str())
                && (!requires_reset || RESET_KEYWORD.is_match(&text[found.end()..]))
        }
        Shape::Token => token_stands_alone(text, found.start()),
    }
}

/// Words that, just before a limit phrase, show a sentence talking about limits
/// rather than a limit message.
const PROSE_PREFIX_WORDS: &[&str] = &[
    "if",
    "when",
    "whenever",
    "once",
    "until",
    "unless",
    "before",
    "after",
    "avoid",
    "avoids",
    "avoiding",
    "avoided",
    "prevent",
    "prevents",
    "preventing",
    "handle",
    "handles",
    "handling",
    "handled",
    "whether",
    "detect",
    "detects",
    "detecting",
    "detected",
    "catch",
    "catches",
    "catching",
    "about",
    "mention",
    "mentions",
    "mentioned",
    "like",
    "such",
    "as",
    "could",
    "might",
    "may",
    "would",
    "should",
    "not",
    "no",
    "never",
    "without",
    "for",
    "test",
    "tests",
    "testing",
    "simulate",
    "simulates",
    "simulated",
    "log",
    "logs",
    "logged",
    "print",
    "prints",
    "printed",
    "show",
    "shows",
    "showed",
    "shown",
    "display",
    "displays",
    "says",
    "said",
    "say",
    "return",
    "returns",
    "returned",
    "throw",
    "throws",
    "raise",
    "raises",
    "of",
    "on",
    "we",
    "they",
    "i",
    "it",
    "to",
    "what",
    "how",
    "why",
    "which",
    "explain",
    "explains",
    "describe",
    "describes",
];

/// Words that, just after a limit phrase, show it is the subject of a sentence.
const PROSE_SUFFIX_WORDS: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "means",
    "meant",
    "message",
    "messages",
    "error",
    "errors",
    "banner",
    "banners",
    "text",
    "string",
    "strings",
    "handling",
    "handler",
    "handlers",
    "logic",
    "case",
    "cases",
    "when",
    "if",
    "which",
    "should",
    "would",
    "could",
    "can",
    "scenario",
    "scenarios",
    "response",
    "responses",
    "detection",
    "check",
    "checks",
];

fn is_separator(previous: Option<char>, c: char, next: Option<char>) -> bool {
    let inside_word = previous.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric);
    match c {
        '\'' | '-' | '.' | '/' => !inside_word,
        ':' | '"' | '|' | '·' | '[' | ']' | '{' | '}' | '>' | '<' | ',' | ';' | '!' | '?' | '*' | '='
        | '#' | '~' | '\u{fffd}' => true,
        _ => false,
    }
}

/// The text before a phrase leaves it at the start of a message: nothing, a
/// separator (`Error:`, `·`, `"message": "`), or a few words that are not prose.
fn starts_message(prefix: &str, max_prefix_words: usize) -> bool {
    let trimmed = prefix.trim_end();
    let chars: Vec<(usize, char)> = trimmed.char_indices().collect();
    let separator = (0..chars.len()).rev().find(|&index| {
        let previous = index.checked_sub(1).map(|before| chars[before].1);
        let next = chars.get(index + 1).map(|&(_, c)| c);
        is_separator(previous, chars[index].1, next)
    });
    let remainder = match separator {
        Some(index) => {
            let (offset, c) = chars[index];
            if c == '"' || c == '\'' {
                // A quotation inside a sentence (`says "usage limit reached"`) is prose;
                // a JSON or dict value (`"message": "...`) is not.
                let before_quote = trimmed[..offset].trim_end();
                if before_quote.chars().last().is_some_and(|last| last.is_alphanumeric()) {
                    return false;
                }
            }
            &trimmed[offset + c.len_utf8()..]
        }
        None => trimmed,
    };
    let words: Vec<String> = remainder
        .split_whitespace()
        .map(|word| word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|word| !word.is_empty())
        .collect();
    if remainder.contains('`') {
        return false;
    }
    words.len() <= max_prefix_words && !words.iter().any(|word| PROSE_PREFIX_WORDS.contains(&word.as_str()))
}

fn runs_on_as_prose(suffix: &str) -> bool {
    if suffix.starts_with('`') {
        return true;
    }
    let rest = suffix.trim_start();
    if !suffix.starts_with(char::is_whitespace) && !suffix.is_empty() {
        return false;
    }
    let word: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    PROSE_SUFFIX_WORDS.contains(&word.as_str())
}

/// An identifier counts when it is a value (`"type":"rate_limit_error"`,
/// `type: RESOURCE_EXHAUSTED`), a qualified name (`openai.RateLimitError`) or starts
/// the line; not inside a sentence or backticks.
fn token_stands_alone(text: &str, start: usize) -> bool {
    let before = text[..start].trim_end();
    match before.chars().last() {
        None => true,
        Some(quote @ ('"' | '\'')) => {
            let before_quote = before[..before.len() - quote.len_utf8()].trim_end();
            matches!(before_quote.chars().last(), None | Some(':' | '=' | '[' | '{' | ',' | '(' | '|'))
        }
        Some(':' | '=' | '[' | ']' | '{' | '(' | '|' | '.' | '>' | '*' | '-' | '·') => true,
        _ => false,
    }
}

/// For a run that exited 0 without an error object: the hit is the shape of a real
/// limit message (a short line or JSON value of its own, in a short output), not a
/// sentence of a result that talks about limits.
pub(super) fn looks_like_limit_message(
    text: &str,
    start: usize,
    end: usize,
    structured: bool,
    stands_alone: bool,
) -> bool {
    let before = &text[..start];
    let quote = before
        .char_indices()
        .rev()
        .find(|&(offset, c)| c == '"' || (c == '\'' && !apostrophe_inside_word(text, offset)));
    let json_value = quote.and_then(|(open, quote)| {
        let key_end = text[..open].trim_end();
        let is_value =
            key_end.ends_with(':') && key_end[..key_end.len() - 1].trim_end().ends_with(['"', '\'']);
        is_value.then(|| {
            let close = text[end..].find(quote).map_or(text.len(), |offset| end + offset);
            &text[open + 1..close]
        })
    });
    let message = match json_value {
        Some(value) => value,
        None => {
            // Inside a quotation in a sentence: `the logs say "Rate limit exceeded"`.
            if before.matches('"').count() % 2 == 1 {
                return false;
            }
            if !structured && !stands_alone {
                return false;
            }
            text
        }
    };
    let trimmed = message.trim_start();
    let is_list_item = MARKDOWN_ITEM.is_match(trimmed);
    message.chars().count() <= 300 && !is_list_item && !reported_after_lead_in(text, message, start)
}

/// A limit phrase that a sentence introduces with a colon — `The ticket reports: usage
/// limit reached, resets 8pm` — is the item's content reporting a limit, not the client's
/// own message. A one-word or error label before the colon (`Error:`, `API Error:`,
/// `codex:`) is how a client prints its own.
fn reported_after_lead_in(text: &str, message: &str, start: usize) -> bool {
    let message_start = message.as_ptr() as usize - text.as_ptr() as usize;
    let Some(before) = start.checked_sub(message_start).and_then(|offset| message.get(..offset)) else {
        return false;
    };
    let Some((lead_in, _)) = before.rsplit_once(':') else {
        return false;
    };
    let words = lead_in.split_whitespace().filter(|word| word.chars().any(char::is_alphabetic)).count();
    words >= 2 && !lead_in.to_ascii_lowercase().contains("error")
}

fn apostrophe_inside_word(text: &str, offset: usize) -> bool {
    let previous = text[..offset].chars().last();
    let next = text[offset + 1..].chars().next();
    previous.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric)
}

static MARKDOWN_ITEM: LazyLock<Regex> = LazyLock::new(|| compile(r"^(?:[-*+>]\s|#{1,6}\s|[0-9]{1,3}[.)]\s)"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_patterns_compile() {
        assert!(!MARKDOWN_ITEM.as_str().is_empty());
    }
}
