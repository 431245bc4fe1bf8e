//! What a command prints: a [`Report`] carries both the human text and the JSON value,
//! and [`Report::print`] writes one of them to stdout — the only place commands print.

use std::io::Write;

use serde_json::Value;

/// The result of a command: human text, the same data as JSON, and the exit code.
#[derive(Debug)]
pub struct Report {
    pub human: String,
    pub json: Value,
    pub exit_code: u8,
}

impl Report {
    pub fn new(human: impl Into<String>, json: Value) -> Report {
        Report { human: human.into(), json, exit_code: crate::error::EXIT_OK }
    }

    pub fn with_exit_code(mut self, exit_code: u8) -> Report {
        self.exit_code = exit_code;
        self
    }

    /// Write the JSON (when `as_json`) or the human text to stdout.
    pub fn print(&self, as_json: bool) {
        let mut stdout = std::io::stdout().lock();
        let text = if as_json {
            serde_json::to_string_pretty(&self.json).unwrap_or_else(|_| "null".to_string())
        } else {
            self.human.clone()
        };
        let result = if text.is_empty() || text.ends_with('\n') {
            stdout.write_all(text.as_bytes())
        } else {
            writeln!(stdout, "{text}")
        };
        if let Err(error) = result.and_then(|_| stdout.flush()) {
            // A closed pipe (`drainctl status | head`) is not worth a failure.
            log::debug!("could not write to stdout: {error}");
        }
    }
}

/// Render rows as an aligned table with a header; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate().take(columns) {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[index].saturating_sub(cell.chars().count()) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(header.to_vec());
    for row in rows {
        push_row(row.iter().map(String::as_str).collect());
    }
    out
}

/// An instant as the operator reads it: `Sat 2026-11-28 18:00 IST`.
pub fn local_time(at: chrono::DateTime<chrono::Utc>, zone: chrono_tz::Tz) -> String {
    at.with_timezone(&zone).format("%a %Y-%m-%d %H:%M %Z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let text = table(
            &["DRAIN", "STATE", "NOTE"],
            &[
                vec!["halacha".into(), "idle".into(), "x".into()],
                vec!["m".into(), "running".into(), "".into()],
            ],
        );
        assert_eq!(text, "DRAIN    STATE    NOTE\nhalacha  idle     x\nm        running\n");
    }
}
