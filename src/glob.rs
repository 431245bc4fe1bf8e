//! The glob patterns of file-backed sources: which files under a source's `dir` become
//! items.
//!
//! A pattern is a relative path of `/`-separated segments. In a segment, `*` matches any
//! run of characters and `?` exactly one; everything else matches itself (there are no
//! character classes, braces or escapes). A segment that is exactly `**` matches zero or
//! more folders. As in the shell, a wildcard never matches a leading `.`: hidden files
//! and folders are matched only by a segment that starts with a literal `.`, and `**`
//! never enters a hidden folder — so the `.name.tmp` a writer renames into place is not
//! picked up half-written.
//!
//! The matcher works one path segment at a time ([`Glob::start`], [`Glob::step`]), so a
//! folder walk can stop descending as soon as no pattern position is left alive.

/// A parsed, checked pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: any number of (non-hidden) folders.
    AnyFolders,
    /// A name pattern.
    Name(Vec<Token>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`
    AnyRun,
    /// `?`
    AnyOne,
}

/// Positions in the pattern a partial path can be at; sorted, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct States(Vec<usize>);

impl Glob {
    /// Parse and check `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Glob, String> {
        if text.trim().is_empty() {
            return Err("the glob is empty; e.g. \"*/*.jsonl\" or \"**/*\"".to_string());
        }
        if text.starts_with('/') {
            return Err(format!("glob {text:?} must be relative to dir (no leading '/')"));
        }
        let mut segments = Vec::new();
        for part in text.split('/') {
            let segment = match part {
                "" => return Err(format!("glob {text:?} has an empty segment ('//' or a trailing '/')")),
                "." | ".." => {
                    return Err(format!("glob {text:?} must not contain '.' or '..' segments"));
                }
                "**" => Segment::AnyFolders,
                _ if part.contains("**") => {
                    return Err(format!(
                        "glob {text:?}: '**' must be a whole segment, as in \"**/*.jsonl\"; use '*' within a name"
                    ));
                }
                _ => Segment::Name(
                    part.chars()
                        .map(|c| match c {
                            '*' => Token::AnyRun,
                            '?' => Token::AnyOne,
                            c => Token::Literal(c),
                        })
                        .collect(),
                ),
            };
            // `**/**` is the same as `**`.
            if segment == Segment::AnyFolders && segments.last() == Some(&Segment::AnyFolders) {
                continue;
            }
            segments.push(segment);
        }
        if segments.last() == Some(&Segment::AnyFolders) {
            // `a/**` means every file under `a`.
            segments.push(Segment::Name(vec![Token::AnyRun]));
        }
        Ok(Glob { text: text.to_string(), segments })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The states before the first segment of a path.
    pub fn start(&self) -> States {
        self.closure(vec![0])
    }

    /// The states after one more path segment `name`.
    pub fn step(&self, states: &States, name: &str) -> States {
        let mut next = Vec::new();
        for &index in &states.0 {
            match self.segments.get(index) {
                Some(Segment::AnyFolders) if !name.starts_with('.') => next.push(index),
                Some(Segment::Name(tokens)) if name_matches(tokens, name) => next.push(index + 1),
                _ => {}
            }
        }
        self.closure(next)
    }

    /// Does a path that led to `states` match the whole pattern?
    pub fn is_complete(&self, states: &States) -> bool {
        states.0.contains(&self.segments.len())
    }

    /// Can a path that led to `states` still match when it goes deeper (is it worth
    /// entering as a folder)?
    pub fn can_go_deeper(&self, states: &States) -> bool {
        states.0.iter().any(|&index| index < self.segments.len())
    }

    /// Does the relative path `path` (segments separated by `/`) match?
    pub fn matches(&self, path: &str) -> bool {
        let mut states = self.start();
        for name in path.split('/') {
            states = self.step(&states, name);
            if states.0.is_empty() {
                return false;
            }
        }
        self.is_complete(&states)
    }

    /// Add the positions reachable by letting a `**` match no folder at all.
    fn closure(&self, mut states: Vec<usize>) -> States {
        let mut index = 0;
        while index < states.len() {
            let state = states[index];
            if self.segments.get(state) == Some(&Segment::AnyFolders) && !states.contains(&(state + 1)) {
                states.push(state + 1);
            }
            index += 1;
        }
        states.sort_unstable();
        states.dedup();
        States(states)
    }
}

/// Does one name match one segment's tokens? A leading `.` needs a literal `.`.
fn name_matches(tokens: &[Token], name: &str) -> bool {
    if name.starts_with('.') && tokens.first() != Some(&Token::Literal('.')) {
        return false;
    }
    let name: Vec<char> = name.chars().collect();
    // Iterative wildcard matching: remember the last `*` and how much of the name it has
    // eaten, and let it eat one more character when a later token fails.
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::AnyRun) => {
                star = Some((t, n));
                t += 1;
            }
            Some(Token::AnyOne) => {
                t += 1;
                n += 1;
            }
            Some(Token::Literal(c)) if *c == name[n] => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((star_token, eaten_to)) => {
                    t = star_token + 1;
                    n = eaten_to + 1;
                    star = Some((star_token, eaten_to + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t.min(tokens.len())..].iter().all(|token| *token == Token::AnyRun)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_paths_they_should() {
        let cases: &[(&str, &str, bool)] = &[
            ("*/*.jsonl", "alice/2026-11-27.jsonl", true),
            ("*/*.jsonl", "alice/deep/2026-11-27.jsonl", false),
            ("*/*.jsonl", "top.jsonl", false),
            ("*/*.jsonl", "alice/notes.txt", false),
            ("*/*.jsonl", "alice/.partial.jsonl", false),
            ("*/*.jsonl", ".cache/a.jsonl", false),
            ("*/.*.jsonl", "alice/.partial.jsonl", true),
            ("**/*.jsonl", "a.jsonl", true),
            ("**/*.jsonl", "a/b/c/d.jsonl", true),
            ("**/*.jsonl", "a/.git/d.jsonl", false),
            ("**", "a/b/c", true),
            ("**", ".hidden", false),
            ("a/**", "a/x", true),
            ("a/**", "a/b/x", true),
            ("a/**", "b/x", false),
            ("a/**/b/*.txt", "a/b/1.txt", true),
            ("a/**/b/*.txt", "a/x/y/b/1.txt", true),
            ("a/**/b/*.txt", "a/x/y/c/1.txt", false),
            ("**/**/x", "p/q/x", true),
            ("session-??.log", "session-07.log", true),
            ("session-??.log", "session-7.log", false),
            ("*.tar.gz", "a.tar.gz", true),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("*.json", "a.jsonl", false),
            ("[x].txt", "[x].txt", true),
            ("[x].txt", "x.txt", false),
            ("שלום/*", "שלום/קובץ", true),
            ("?", "ש", true),
        ];
        for (pattern, path, expected) in cases {
            let glob = Glob::parse(pattern).unwrap();
            assert_eq!(glob.matches(path), *expected, "{pattern} ~ {path}");
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for (pattern, fragment) in [
            ("", "empty"),
            ("/data/*", "relative"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("../*", "'..'"),
            ("./a", "'.'"),
            ("a**/b", "whole segment"),
        ] {
            let error = Glob::parse(pattern).unwrap_err();
            assert!(error.contains(fragment), "{pattern}: {error}");
        }
    }

    #[test]
    fn a_walk_stops_where_nothing_can_match() {
        let glob = Glob::parse("*/*.jsonl").unwrap();
        let top = glob.step(&glob.start(), "alice");
        assert!(glob.can_go_deeper(&top) && !glob.is_complete(&top));
        let file = glob.step(&top, "a.jsonl");
        assert!(glob.is_complete(&file) && !glob.can_go_deeper(&file));
        let deeper = glob.step(&file, "x");
        assert!(!glob.can_go_deeper(&deeper) && !glob.is_complete(&deeper));
    }
}
