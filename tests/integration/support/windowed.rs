//! One drain `docs` of the fake worker with a night window in Jerusalem, and instants
//! inside and outside it: what the supervise and integrity tests share.

/// Thursday 2026-11-26 23:00 in Jerusalem (UTC+2): inside `sun-thu 22:00-06:00`.
pub const INSIDE: &str = "2026-11-26T21:00:00Z";
/// Friday 2026-11-27 12:00 in Jerusalem: outside the window.
pub const OUTSIDE: &str = "2026-11-27T10:00:00Z";

/// The config, with `extra` lines added to the drain.
pub fn config(extra: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"Asia/Jerusalem\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n\
         window = {{ days = \"sun-thu\", from = \"22:00\", to = \"06:00\" }}\n{extra}"
    )
}
