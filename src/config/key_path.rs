//! Which setting a TOML error points at, read from the text around its position.
//!
//! A value of the wrong type (`max_items_per_pass = "50"`) or a number too large for 64
//! bits fails while the file is parsed, before [`super::resolve`] can name the key, and
//! the parser's message names only the value. Its position does: the key is written on
//! the same line before the value (`KEY = `, or `KEY = { INNER = ` in an inline table),
//! and the table is the last `[header]` above it — for a `[[drain]]` or a
//! `[[quota_group]]`, named by its `name = "..."` line. The result reads like the
//! messages of `resolve` (docs/configuration.md): `drain "halacha": max_items_per_pass`,
//! `quota group "g": switch_cooldown`, `retention.runs`. When the text is not written
//! that way (a value on a line of its own inside a multi-line array), nothing is named.

/// The setting at byte `offset` of `text`, as the messages of `resolve` name it.
pub(super) fn describe(text: &str, offset: usize) -> Option<String> {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |at| at + 1);
    let key = key_before_value(&text[line_start..offset])?;
    let (header, header_end) = last_header(&text[..line_start]).unwrap_or_default();
    let (scope, path) = match header.split_once('.') {
        Some((top, rest)) => (top.to_string(), format!("{rest}.{key}")),
        None => (header.clone(), key),
    };
    let name = || table_name(text, &header, header_end, line_start);
    Some(match array_table_label(&scope, name) {
        Some(label) if label.starts_with("[[") => format!("{label} {path}"),
        Some(label) => format!("{label}: {path}"),
        None if matches!(scope.as_str(), "" | "defaults") => path,
        None => format!("{scope}.{path}"),
    })
}

/// The `name = "..."` of the `[[drain]]` or `[[quota_group]]` whose lines hold
/// `line_start`: under the last header `header` (its line ending at `header_end`), or for
/// a sub-table header (`[drain.window]`, `[[quota_group.accounts]]`) the array table above
/// it, which holds the name.
fn table_name(text: &str, header: &str, header_end: usize, line_start: usize) -> Option<String> {
    match header.split_once('.') {
        Some((top, _)) => last_array_table(&text[..line_start], top).and_then(name_in_table),
        None => name_in_table(&text[header_end..]),
    }
}

/// How messages name an array table `top` (`drain`, `quota_group`): by its name
/// (`drain "docs"`), else as `[[drain]]`; None for any other table.
fn array_table_label(top: &str, name: impl FnOnce() -> Option<String>) -> Option<String> {
    let (label, kind) = match top {
        "drain" => ("drain", "drain"),
        "quota_group" => ("quota group", "quota_group"),
        _ => return None,
    };
    Some(match name() {
        Some(name) => format!("{label} {name:?}"),
        None => format!("[[{kind}]]"),
    })
}

/// An error the parser places on a table's header line (`[drain]`, `[[defaults]]`, a
/// `[[drain]]` missing a field) said with the table named and, for a header written with
/// the wrong number of brackets, how to write it.
pub(super) fn explain_at_header(text: &str, offset: usize, message: &str) -> Option<String> {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |at| at + 1);
    let line_end = text[line_start..].find('\n').map_or(text.len(), |at| line_start + at);
    let written = text[line_start..line_end].split('#').next().unwrap_or_default().trim();
    if !written.starts_with('[') {
        return None;
    }
    // `[[drain.window]]`: the drain's window, written as an array of tables.
    if written.starts_with("[[") && written.contains('.') {
        return in_table(text, offset, message);
    }
    let is_array = written.starts_with("[[");
    let name = written.trim_start_matches('[').trim_end_matches(']').trim().replace([' ', '"'], "");
    let table_name = || name_in_table(&text[line_end.min(text.len())..]);
    // A header whose brackets do not pair (`[[drain]`): the header is what is wrong, not
    // the table it would open.
    let opening = written.len() - written.trim_start_matches('[').len();
    let closing = written.len() - written.trim_end_matches(']').len();
    if opening != closing {
        let pairs = match name.as_str() {
            "drain" | "quota_group" => 2,
            "defaults" | "database" => 1,
            _ => opening.max(closing),
        };
        return Some(format!("{written}: {message}: write {}{name}{}", "[".repeat(pairs), "]".repeat(pairs)));
    }
    Some(match (name.as_str(), is_array) {
        ("defaults" | "database", true) => {
            format!("{written}: write [{name}] with one pair of brackets: there is one {name} table")
        }
        ("drain" | "quota_group", false) => format!(
            "{written}: write [[{name}]] with two pairs of brackets: each {} is a table of its own",
            name.replace('_', " ")
        ),
        ("drain", true) => match table_name() {
            Some(table) => format!("drain {table:?}: {message}"),
            None => format!("a [[drain]] without a name: {message}"),
        },
        ("quota_group", true) => match table_name() {
            Some(table) => format!("quota group {table:?}: {message}"),
            None => format!("a [[quota_group]] without a name: {message}"),
        },
        _ => return None,
    })
}

/// A table missing a field, written as a sub-table header (`[drain.window]`) or with dotted
/// keys (`window.days = …`), where the parser places the error: said with the drain (or
/// group) and the table named, as the inline form is (`drain "docs": window: missing field
/// `to``).
pub(super) fn explain_missing_field(text: &str, offset: usize, message: &str) -> Option<String> {
    if !message.starts_with("missing field") {
        return None;
    }
    in_table(text, offset, message)
}

/// `message`, placed at `offset` in a sub-table header or a dotted key, said with the drain
/// (or group) and the table named.
fn in_table(text: &str, offset: usize, message: &str) -> Option<String> {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |at| at + 1);
    let line_end = text[line_start..].find('\n').map_or(text.len(), |at| line_start + at);
    let written = text[line_start..line_end].split('#').next().unwrap_or_default().trim();
    let (header, header_end, inner) = if written.starts_with("[[") && !written.contains('.') {
        return None;
    } else if written.starts_with('[') {
        (written.trim_matches(['[', ']', ' ']).replace([' ', '"'], ""), line_end, String::new())
    } else {
        let key = bare_key(written.split('=').next()?)?;
        let (outer, _) = key.split_once('.')?;
        let (header, header_end) = last_header(&text[..line_start]).unwrap_or_default();
        (header, header_end, outer.to_string())
    };
    let (top, nested) = header.split_once('.').unwrap_or((header.as_str(), ""));
    let path =
        [nested, inner.as_str()].into_iter().filter(|part| !part.is_empty()).collect::<Vec<_>>().join(".");
    if path.is_empty() {
        return None;
    }
    let table = match array_table_label(top, || table_name(text, &header, header_end, line_start)) {
        Some(label) => label,
        None if matches!(top, "" | "defaults") => return Some(format!("{path}: {message}")),
        None => format!("[{top}]"),
    };
    Some(format!("{table}: {path}: {message}"))
}

/// An unknown key (`unknown field `max_atempts`, expected one of …`, the parser's message,
/// placed at the key) said with its table named, as [`describe`] names it, and the
/// expected key nearest to it suggested: `drain "zeta": unknown field `max_atempts` (did
/// you mean `max_attempts`?), expected one of …`.
pub(super) fn explain_unknown_key(text: &str, offset: usize, message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |at| at + 1);
    let before = &text[line_start..offset];
    let nearest = match nearest_key(unknown, expected) {
        nearest if nearest.is_empty() => elsewhere(unknown),
        nearest => nearest,
    };
    // A header whose first name is unknown (`[defualts]`, `[[drains]]`): a top-level key,
    // whatever table came before it.
    if before.trim_start().starts_with('[') && !before.contains('.') {
        return Some(format!("unknown field `{unknown}`{nearest}{expected}"));
    }
    // Inside an inline table (`source = { dir = "d", globs = "*" }`) or after a dotted key
    // (`window.dayz = …`): that key's table.
    let inline = match before.split_once('=') {
        Some((outer, rest)) if rest.trim_start().starts_with('{') => bare_key(outer),
        Some(_) => None,
        None => before.trim().strip_suffix('.').and_then(bare_key),
    };
    let (header, header_end) = last_header(&text[..line_start]).unwrap_or_default();
    let (top, nested) = match header.split_once('.') {
        Some((top, rest)) => (top.to_string(), Some(rest.to_string())),
        None => (header.clone(), None),
    };
    let inner = [nested, inline].into_iter().flatten().collect::<Vec<_>>().join(".");
    let table = match array_table_label(&top, || table_name(text, &header, header_end, line_start)) {
        Some(label) => Some(label),
        None if matches!(top.as_str(), "" | "defaults") && inner.is_empty() => {
            (!top.is_empty()).then(|| format!("[{top}]"))
        }
        None if matches!(top.as_str(), "" | "defaults") => None,
        None => Some(format!("[{top}]")),
    };
    let prefix = match (table, inner.is_empty()) {
        (Some(table), true) => format!("{table}: "),
        (Some(table), false) => format!("{table}: {inner}: "),
        (None, false) => format!("{inner}: "),
        (None, true) => String::new(),
    };
    Some(format!("{prefix}unknown field `{unknown}`{nearest}{expected}"))
}

/// ` (a setting of [defaults], not of this table)` for a key another table takes (a
/// setting written under the wrong header, or above every header); empty otherwise.
fn elsewhere(unknown: &str) -> String {
    let tables = super::raw::tables_taking(unknown);
    if tables.is_empty() {
        String::new()
    } else {
        format!(" (a setting of {}, not of this table)", tables.join(" and of "))
    }
}

/// ` (did you mean `max_attempts`?)` for the expected key (`, expected one of `a`, `b``)
/// one or two letters from `unknown`; empty when none is.
fn nearest_key(unknown: &str, expected: &str) -> String {
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|key| (edit_distance(unknown, key), key))
        .filter(|(distance, key)| *distance == 1 || (*distance == 2 && *distance < key.len() / 2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| format!(" (did you mean `{key}`?)"))
        .unwrap_or_default()
}

/// The text from the last `[[name]]` header in `text` on: the array table whose
/// sub-tables come after it.
fn last_array_table<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let mut found = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        at += line.len();
        let written = line.split('#').next().unwrap_or_default().trim();
        if written.starts_with("[[") && written.trim_matches(['[', ']', ' ']).replace(['"', ' '], "") == name
        {
            found = Some(at);
        }
    }
    found.map(|at| &text[at..])
}

/// Whether `candidate` is near enough to `given` to be what was meant: two edits or fewer,
/// one for a word under four letters (`scan` is not `cancel`).
pub(crate) fn is_near(given: &str, candidate: &str) -> bool {
    let most = if given.chars().count() < 4 { 1 } else { 2 };
    edit_distance(given, candidate) <= most
}

/// The edit distance between two keys (ASCII in practice; counted in chars).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    // Optimal string alignment: a swap of two neighbours (`dri` for `dir`) is one edit.
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// `KEY` from `KEY = ` (the value follows), `KEY = [...` (an element of its array) or
/// `OUTER = { ..., KEY = ` (`OUTER.KEY`).
fn key_before_value(prefix: &str) -> Option<String> {
    let (outer, rest) = prefix.split_once('=')?;
    let outer = bare_key(outer)?;
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('[') && !rest.contains('{') {
        return Some(outer);
    }
    if rest.starts_with('{') {
        let inner = rest.trim_end().strip_suffix('=')?;
        let inner = inner.rsplit(['{', ',']).next()?;
        return Some(format!("{outer}.{}", bare_key(inner)?));
    }
    None
}

/// A bare or dotted key, surrounding spaces removed; quotes are kept out.
fn bare_key(text: &str) -> Option<String> {
    let key = text.trim().trim_matches('"');
    let is_key = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
    is_key.then(|| key.replace(' ', ""))
}

/// The last `[table]` or `[[array]]` header in `text`, without brackets, and where the
/// line after it starts.
fn last_header(text: &str) -> Option<(String, usize)> {
    let mut found = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        at += line.len();
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let name = trimmed.split('#').next().unwrap_or_default().trim();
            let name = name.trim_start_matches('[').trim_end_matches(']').trim();
            found = Some((name.replace([' ', '"'], ""), at));
        }
    }
    found
}

/// The `name = "..."` of the table whose lines start `text`, up to the next header.
fn name_in_table(text: &str) -> Option<String> {
    text.lines().take_while(|line| !line.trim_start().starts_with('[')).find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != "name" {
            return None;
        }
        let value = value.trim().strip_prefix('"')?;
        Some(value[..value.find('"')?].to_string())
    })
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_with_the_wrong_brackets_says_how_to_write_it() {
        let explain = |text: &str| explain_at_header(text, 0, "invalid type: map, expected a sequence");
        assert_eq!(
            explain("[drain]\nname = \"a\"\n").unwrap(),
            "[drain]: write [[drain]] with two pairs of brackets: each drain is a table of its own"
        );
        assert_eq!(
            explain("[[defaults]]\ntimezone = \"UTC\"\n").unwrap(),
            "[[defaults]]: write [defaults] with one pair of brackets: there is one defaults table"
        );
        assert_eq!(
            explain_at_header("[[drain]]\nname = \"a\"\n", 0, "missing field `command`").unwrap(),
            "drain \"a\": missing field `command`"
        );
        assert_eq!(
            explain_at_header("[[drain]]\ncommand = [\"x\"]\n", 0, "missing field `name`").unwrap(),
            "a [[drain]] without a name: missing field `name`"
        );
        assert_eq!(explain_at_header("x = 1\n", 0, "m"), None);
        // A header left unclosed is the fault (before: "a [[drain]] without a name").
        let unclosed = "unclosed array table, expected `]`";
        assert_eq!(
            explain_at_header("[[drain]\nname = \"a\"\n", 0, unclosed).unwrap(),
            "[[drain]: unclosed array table, expected `]`: write [[drain]]"
        );
        assert_eq!(
            explain_at_header("[[quota_group]\n", 0, unclosed).unwrap(),
            "[[quota_group]: unclosed array table, expected `]`: write [[quota_group]]"
        );
    }

    fn at(text: &str, value: &str) -> Option<String> {
        describe(text, text.find(value).unwrap())
    }

    #[test]
    fn an_unknown_key_names_its_table_and_the_key_it_was_likely_meant_to_be() {
        let expected = ", expected one of `name`, `command`, `max_attempts`, `max_wait`";
        let unknown = |text: &str, key: &str| {
            explain_unknown_key(text, text.find(key).unwrap(), &format!("unknown field `{key}`{expected}"))
        };
        let drain =
            "[defaults]\ntimezone = \"UTC\"\n[[drain]]\nname = \"zeta\"\nmax_atempts = 3\nbogus = 1\n";
        assert_eq!(
            unknown(drain, "max_atempts").unwrap(),
            format!("drain \"zeta\": unknown field `max_atempts` (did you mean `max_attempts`?){expected}")
        );
        assert_eq!(
            unknown(drain, "bogus").unwrap(),
            format!("drain \"zeta\": unknown field `bogus`{expected}")
        );
        // A key of three letters is one letter away too.
        assert_eq!(
            explain_unknown_key("[database]\nurll = 1\n", 11, "unknown field `urll`, expected `url`")
                .unwrap(),
            "[database]: unknown field `urll` (did you mean `url`?), expected `url`"
        );
        let inline = "[[drain]]\nname = \"a\"\nsource = { dir = \"d\", globs = \"*\" }\n";
        assert_eq!(
            unknown(inline, "globs").unwrap(),
            format!("drain \"a\": source: unknown field `globs`{expected}")
        );
        assert_eq!(
            unknown("[defaults]\ntimezon = 1\n", "timezon").unwrap(),
            format!("[defaults]: unknown field `timezon`{expected}")
        );
        assert_eq!(
            unknown("[defaults.retention]\nrun = 1\n", "run").unwrap(),
            format!("retention: unknown field `run`{expected}")
        );
        assert_eq!(
            unknown("databse = 1\n", "databse").unwrap(),
            format!("unknown field `databse`{expected}")
        );
        // A header that is itself the unknown key belongs to no table above it.
        let header = "[[drain]]\nname = \"x\"\n[[drains]]\nname = \"y\"\n";
        assert_eq!(unknown(header, "drains").unwrap(), format!("unknown field `drains`{expected}"));
        let header = "[database]\nurl = \"u\"\n[defualts]\n";
        assert_eq!(unknown(header, "defualts").unwrap(), format!("unknown field `defualts`{expected}"));
        // A dotted key and a sub-table header name the key's table and the drain.
        let spaced = "[[drain]]\nname = \"x\"\nwindow . dayz = \"mon\"\n";
        assert_eq!(
            unknown(spaced, "dayz").unwrap(),
            format!("drain \"x\": window: unknown field `dayz`{expected}")
        );
        let dotted = "[[drain]]\nname = \"x\"\nwindow.dayz = \"mon\"\n";
        assert_eq!(
            unknown(dotted, "dayz").unwrap(),
            format!("drain \"x\": window: unknown field `dayz`{expected}")
        );
        let sub = "[[drain]]\nname = \"x\"\ncommand = [\"w\"]\n[drain.window]\ndayz = \"mon\"\n";
        assert_eq!(
            unknown(sub, "dayz").unwrap(),
            format!("drain \"x\": window: unknown field `dayz`{expected}")
        );
        assert_eq!(explain_unknown_key("x = 1\n", 0, "invalid type"), None);
        assert_eq!(edit_distance("max_atempts", "max_attempts"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        // Two neighbours swapped are one edit (before: two, and `dri` got no suggestion).
        assert_eq!(edit_distance("dri", "dir"), 1);
        assert_eq!(edit_distance("glbo", "glob"), 1);
        assert_eq!(nearest_key("dri", ", expected one of `dir`, `glob`"), " (did you mean `dir`?)");
        assert_eq!(nearest_key("glbo", ", expected one of `dir`, `glob`"), " (did you mean `glob`?)");
    }

    #[test]
    fn the_key_and_the_table_of_a_value_are_named_as_resolve_names_them() {
        let drain = "[[drain]]\nname = \"halacha\"\ncommand = [\"x\", 5]\nmax_items_per_pass = \"50\"\n\
                     window = { days = \"mon\", from = 7 }\n";
        assert_eq!(at(drain, "\"50\"").as_deref(), Some("drain \"halacha\": max_items_per_pass"));
        assert_eq!(at(drain, "5]").as_deref(), Some("drain \"halacha\": command"));
        assert_eq!(at(drain, "7 }").as_deref(), Some("drain \"halacha\": window.from"));
        // The name may come after the bad value.
        let late = "[[drain]]\nmax_items_per_pass = \"50\"\nname = \"late\"\n[[drain]]\nname = \"other\"\n";
        assert_eq!(at(late, "\"50\"").as_deref(), Some("drain \"late\": max_items_per_pass"));
        assert_eq!(
            at("[[drain]]\nmax_items_per_pass = true\n", "true").as_deref(),
            Some("[[drain]] max_items_per_pass")
        );
        let defaults =
            "[database]\nurl = 5\n[defaults]\nburst_max = 3 # hours\n[defaults.retention]\nruns = 30\n";
        assert_eq!(at(defaults, "5").as_deref(), Some("database.url"));
        assert_eq!(at(defaults, "3 #").as_deref(), Some("burst_max"));
        assert_eq!(at(defaults, "30").as_deref(), Some("retention.runs"));
        let group = "[[quota_group]]\nname = \"g\"\nswitch_cooldown = 10\n";
        assert_eq!(at(group, "10").as_deref(), Some("quota group \"g\": switch_cooldown"));
        // Not written as `KEY = value` on one line: nothing is named.
        assert_eq!(at("[[drain]]\nname = \"a\"\ncommand = [\n  \"x\",\n  5,\n]\n", "5,"), None);
        assert_eq!(at("[[drain]]\nnme = \"a\"\n", "nme"), None);
    }
}
