//! The one error type of drainctl and the exit-code contract.
//!
//! Every failure is turned into an [`Error`] whose variant decides the process exit code
//! (see the table in `docs/exit-codes.md`) and whose message is the single line printed on
//! stderr. Secrets that were registered with [`register_secret`] (the database password) are
//! scrubbed from every message before it is shown.

use std::sync::Mutex;

/// Every normal outcome: work done, nothing to do, lock skipped, rate-limited.
pub const EXIT_OK: u8 = 0;
/// The command line was wrong.
pub const EXIT_USAGE: u8 = 64;
/// Input data was malformed (an enqueued payload, a JSON line).
pub const EXIT_DATA: u8 = 65;
/// The database could not be reached or refused the login.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// A bug or an unexpected database error.
pub const EXIT_INTERNAL: u8 = 70;
/// Try again later: a lock wait timed out, a serialization retry was exhausted.
pub const EXIT_TEMPORARY: u8 = 75;
/// The configuration (or the deployment: schema, worker command) is wrong.
pub const EXIT_CONFIG: u8 = 78;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Of two exit codes, the worse — for a command that goes on after a failed step
/// (`supervise`) and exits with the worst class of what failed (docs/exit-codes.md): a
/// bug (70) over an unreachable database (69) over the configuration (78) over "try
/// again later" (75) over bad data (65) over usage (64) over ok.
pub fn worse_exit_code(a: u8, b: u8) -> u8 {
    let rank = |code: u8| match code {
        EXIT_INTERNAL => 6,
        EXIT_UNAVAILABLE => 5,
        EXIT_CONFIG => 4,
        EXIT_TEMPORARY => 3,
        EXIT_DATA => 2,
        EXIT_USAGE => 1,
        EXIT_OK => 0,
        // A code outside the table is as bad as a bug.
        _ => 7,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Temporary(String),
    /// A deadlock or serialization failure: the database gave up one side of a conflict
    /// between concurrent transactions; running the same step again usually succeeds
    /// ([`crate::db::retry_conflicts`]). Exits 75 like [`Error::Temporary`].
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// A write the database refused as read-only (a standby, `default_transaction_read_only`
    /// turned on while the session was open).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Error::Unavailable(message) if message.contains(READ_ONLY))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            Error::Data(_) => EXIT_DATA,
            Error::Unavailable(_) => EXIT_UNAVAILABLE,
            Error::Internal(_) => EXIT_INTERNAL,
            Error::Temporary(_) | Error::Conflict(_) => EXIT_TEMPORARY,
            Error::Config(_) => EXIT_CONFIG,
        }
    }

    /// The message with every registered secret replaced by `***`.
    pub fn display_scrubbed(&self) -> String {
        scrub(&self.to_string())
    }

    /// The line a command that failed ends with: the message, and for a session the
    /// server closed what that left and what to do (docs/exit-codes.md).
    pub fn final_line(&self) -> String {
        let mut line = self.display_scrubbed();
        // (Not for a connection that was never made: nothing of the command ran.)
        if matches!(self, Error::Unavailable(message)
            if message.contains(CONNECTION_LOST) && !message.starts_with(CANNOT_CONNECT)
                && !message.contains(COMMIT_OUTCOME_UNKNOWN))
        {
            line.push_str(
                "; what the command had not committed was rolled back: run it again once the database answers",
            );
        }
        line
    }

    /// The same error with `note` after its message: `…; note`.
    pub fn noted(self, note: &str) -> Error {
        self.map_message(|message| format!("{message}; {note}"))
    }

    /// Prefix the message with what was being done.
    pub fn context(self, what: &str) -> Error {
        self.map_message(|message| format!("{what}: {message}"))
    }

    /// The same kind of error with its message rewritten.
    fn map_message(self, rewrite: impl FnOnce(String) -> String) -> Error {
        match self {
            Error::Usage(m) => Error::Usage(rewrite(m)),
            Error::Data(m) => Error::Data(rewrite(m)),
            Error::Unavailable(m) => Error::Unavailable(rewrite(m)),
            Error::Internal(m) => Error::Internal(rewrite(m)),
            Error::Temporary(m) => Error::Temporary(rewrite(m)),
            Error::Conflict(m) => Error::Conflict(rewrite(m)),
            Error::Config(m) => Error::Config(rewrite(m)),
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(error: postgres::Error) -> Error {
        classify_database_error(&error)
    }
}

/// Sort a database error into the exit-code classes: a lost or refused connection is
/// "unavailable", a lock or serialization conflict is "temporary", the rest internal.
pub fn classify_database_error(error: &postgres::Error) -> Error {
    use postgres::error::SqlState;
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        let message = format!("database error: {}", db.message());
        // The server ended the session (`pg_terminate_backend`, a shutdown, a crash of another
        // backend, its idle or idle-in-transaction timeout while a paused process held it):
        // as lost as a closed connection, and said the same way.
        if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
            || *code == SqlState::IDLE_SESSION_TIMEOUT
            // `transaction_timeout` (PostgreSQL 17), unnamed in the driver's table.
            || code.code() == "25P04"
        {
            return Error::Unavailable(format!("{CONNECTION_LOST}: {message}"));
        }
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || *code == SqlState::INVALID_CATALOG_NAME
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            return Error::Unavailable(message);
        }
        if is_conflict(code) {
            return Error::Conflict(message);
        }
        // The role lacks a right, or its search_path names no schema it can use: how the
        // database was set up, not a bug (docs/operations.md, "The role and its settings").
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            // On a table the role may read but not write, the right to create in the schema
            // is no fix (before, the advice given for both).
            let fix = if db.message().starts_with("permission denied for table") {
                "connect as the tables' owner, or grant the role SELECT, INSERT, UPDATE and DELETE on \
                 drainctl's tables (`drainctl doctor` prints the GRANT)"
            } else {
                "connect as the owner of the database, or grant the role the right to create in its schema \
                 and to use drainctl's tables"
            };
            return Error::Config(format!(
                "{message}: the database role lacks a privilege drainctl needs; {fix}"
            ));
        }
        // A column or table drainctl's statements use is not there: the schema was changed
        // by hand after its migrations (docs/migrations.md, "A schema changed by hand"),
        // not a bug of a binary whose statements its tests ran on that schema. An `ON
        // CONFLICT` without the unique index it names is one too.
        if *code == SqlState::UNDEFINED_COLUMN
            || *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::INVALID_COLUMN_REFERENCE
        {
            return Error::Config(format!("{message}: {CHANGED_BY_HAND}"));
        }
        if *code == SqlState::INVALID_SCHEMA_NAME {
            return Error::Config(format!("{message}: the role's {NO_SCHEMA}"));
        }
        if *code == SqlState::LOCK_NOT_AVAILABLE {
            return Error::Temporary(message);
        }
        // The statements prepared on this session are not on the server process that got
        // the next one: a transaction pooler the check at connect missed (a busy pool).
        if *code == SqlState::DUPLICATE_PSTATEMENT
            || *code == SqlState::INVALID_SQL_STATEMENT_NAME
            || (*code == SqlState::PROTOCOL_VIOLATION && db.message().contains("prepared statement"))
        {
            return Error::Config(format!(
                "{message}: the session's statements went to another server process, as through a connection \
                 pooler in transaction or statement mode: {}",
                crate::db::NEEDS_A_SESSION
            ));
        }
        // The server out of room (its disk or a tablespace full, memory, shared memory):
        // nothing of the statement was written, and the same work goes through once room
        // is made — no bug of drainctl's (docs/exit-codes.md).
        if code.code().starts_with("53") {
            return Error::Temporary(format!(
                "{message}: the database server is out of room (its disk, a tablespace or memory); what was \
                 not committed was rolled back: free space on the server, then run it again"
            ));
        }
        // A statement cancelled (`pg_cancel_backend`, an administrator's tool): what was
        // not committed is rolled back, and running the command again is the remedy.
        if *code == SqlState::QUERY_CANCELED {
            return Error::Temporary(format!(
                "{message}: the statement was cancelled (pg_cancel_backend or a timeout); what was not \
                 committed was rolled back: run it again"
            ));
        }
        // A standby after a failover, or `default_transaction_read_only`: the database
        // cannot be used for now, which is no bug of drainctl's (docs/exit-codes.md).
        if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            return Error::Unavailable(format!(
                "{message}: {READ_ONLY} (a standby, for instance after a failover, or \
                 default_transaction_read_only = on); nothing was written: point the database URL at \
                 the primary"
            ));
        }
        return Error::Internal(message);
    }
    // `query_one` found two rows where a unique index allows one (dropped by hand), or none
    // where a row of drainctl's own must be: unexpected, and no connection problem.
    if error.to_string() == "query returned an unexpected number of rows" {
        return Error::Internal(
            "database error: a query returned an unexpected number of rows: were drainctl's tables changed by \
             hand? `drainctl doctor` names what differs"
                .to_string(),
        );
    }
    if error.is_closed() || is_broken_session(error) {
        return Error::Unavailable(format!("{CONNECTION_LOST}: {}", with_causes(error)));
    }
    // The client refused its own settings before or while connecting (no host, no
    // password where the server asks for one): the configuration is wrong, not the
    // server away (docs/exit-codes.md). The client names such an error only by its text.
    if error.to_string().starts_with("invalid configuration") {
        return Error::Config(format!("database settings: {}", with_causes(error)));
    }

    // Errors without a server response are I/O or protocol failures: the server is
    // unreachable or went away.
    Error::Unavailable(format!("database unreachable: {}", with_causes(error)))
}

/// An I/O error of a session that was open: the server closed it under the client (a
/// write into a closed socket, a reset), as `pg_terminate_backend` does mid-`COPY`.
pub fn is_broken_session(error: &postgres::Error) -> bool {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

/// What an error met on a schema changed by hand adds (docs/migrations.md).
pub const CHANGED_BY_HAND: &str =
    "drainctl's tables are not as its migrations made them (changed by hand?); `drainctl doctor` names what differs";
/// How a session lost while its transaction was committing is said: the server may have
/// committed it before the end, or not (see `db::in_transaction_told`).
pub const COMMIT_OUTCOME_UNKNOWN: &str = "lost while its transaction was committing";
/// How a write refused by a read-only database is named (see [`Error::is_read_only`]).
pub const READ_ONLY: &str = "the database is read-only";
/// How a session the server closed is named; [`Error::final_line`] adds what to do.
pub const CONNECTION_LOST: &str = "database connection lost";
/// What a role whose search_path names no usable schema is told (an error, `doctor`).
pub const NO_SCHEMA: &str = "search_path names no schema it can use; create the schema, or set \
                             search_path (options=-c search_path=...) to one that exists";
/// How a connection that could not be made begins.
pub const CANNOT_CONNECT: &str = "cannot connect to the database";

/// A deadlock (40P01) or serialization failure (40001): the server ended one of two
/// conflicting transactions, and the same work run again usually goes through.
pub fn is_conflict(code: &postgres::error::SqlState) -> bool {
    use postgres::error::SqlState;
    *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// An error and its chain of causes on one line: `error connecting to server: Connection
/// refused (os error 111)`. OpenSSL's source locations (`../ssl/statem/statem_clnt.c:1889:`)
/// are left out: they say nothing to an operator.
fn with_causes(error: &dyn std::error::Error) -> String {
    static SOURCE_LOCATION: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| crate::quota::patterns::compile(r":[\w./-]+\.c:[0-9]+:"));
    SOURCE_LOCATION.replace_all(&chain_of_causes(error), "").into_owned()
}

fn chain_of_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Remember a secret (the database password) so that it is never printed.
/// With the forms it takes when a client prints it: its `%XX` escapes in lower case
/// (`%c3%a9` is `%C3%A9`); percent-encoded whole, as Python's `quote` (which leaves `/`)
/// and `quote_plus` and JavaScript's `encodeURI` and `encodeURIComponent` write it, in either case of hex; as a JSON string's inside with
/// ASCII escapes in either case (`"S\u00e9cr\u20act"`, Python's `json.dumps`; Jackson's
/// `\u00E9`) and with `/` as `\/` (PHP's `json_encode`); and as a `.pgpass` field
/// (`\:` and `\\`).
pub fn register_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let json = json_ascii_escaped(secret);
    let serde_json = json_escaped(secret);
    let forms = [
        secret.to_string(),
        lower_case_escapes(secret),
        json.clone(),
        upper_case_unicode_escapes(&json),
        // As serde_json, JSON.stringify and `jq` write it: beyond ASCII kept as is.
        serde_json.replace('/', "\\/"),
        serde_json,
        json.replace('/', "\\/"),
        percent_encoded(secret, ""),
        percent_encoded(secret, "/"),
        percent_encoded(secret, "").replace("%20", "+"),
        percent_encoded(secret, ";,/?:@&=+$#!'()*"),
        percent_encoded(secret, "!'()*"),
        secret.replace('\\', "\\\\").replace(':', "\\:"),
    ];
    if let Ok(mut secrets) = SECRETS.lock() {
        for form in forms.into_iter().flat_map(|form| [lower_case_escapes(&form), form]) {
            if !secrets.contains(&form) {
                secrets.push(form);
            }
        }
        // The longest first: a password that holds another (`pw` and `pw@more`, as a URL
        // with an unencoded `@` gives both) is masked whole, not cut to `***@more`.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    }
}

/// `text` percent-encoded (upper-case hex) but for the unreserved characters of RFC 3986
/// and those of `keep`.
fn percent_encoded(text: &str, keep: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        let c = char::from(byte);
        if byte.is_ascii_alphanumeric() || "-._~".contains(c) || (byte.is_ascii() && keep.contains(c)) {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `text` as a JSON string's inside, with only `"` and `\` (and controls) escaped.
fn json_escaped(text: &str) -> String {
    serde_json::to_string(text).map(|quoted| quoted[1..quoted.len() - 1].to_string()).unwrap_or_default()
}

/// A JSON string's inside with the hex digits of its `\uXXXX` escapes in upper case.
fn upper_case_unicode_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '\\' {
            match chars.next() {
                Some('u') => {
                    out.push('u');
                    for _ in 0..4 {
                        if let Some(digit) = chars.next() {
                            out.push(digit.to_ascii_uppercase());
                        }
                    }
                }
                Some(other) => out.push(other),
                None => {}
            }
        }
    }
    out
}

/// `text` with the hex digits of its `%XX` escapes in lower case.
fn lower_case_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits_left = 0;
    for c in text.chars() {
        if digits_left > 0 {
            out.push(c.to_ascii_lowercase());
            digits_left -= 1;
        } else {
            out.push(c);
            if c == '%' {
                digits_left = 2;
            }
        }
    }
    out
}

/// `text` as a JSON string's inside with every character beyond ASCII escaped
/// (`\u00e9`, surrogate pairs above U+FFFF), as Python's `json.dumps` writes it.
fn json_ascii_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

/// The length in bytes of the longest registered secret (0 when there is none): how far
/// back a cut through one can reach.
pub fn longest_secret_len() -> usize {
    SECRETS.lock().map_or(0, |secrets| secrets.iter().map(String::len).max().unwrap_or(0))
}

/// How many bytes at the start of `bytes` are the end of a registered secret cut off
/// before them (the longest such end, shorter than the secret): what is left of a password
/// when a tail begins inside it, which masking no longer recognises.
pub fn secret_end_at_start(bytes: &[u8]) -> usize {
    SECRETS.lock().map_or(0, |secrets| {
        secrets
            .iter()
            .flat_map(|secret| {
                let secret = secret.as_bytes();
                (1..secret.len())
                    .filter(move |&cut| bytes.starts_with(&secret[cut..]))
                    .map(move |cut| secret.len() - cut)
            })
            .max()
            .unwrap_or(0)
    })
}

/// `text` with the database password hidden (`***`): the password of every connection URL
/// or `password=` setting it quotes, registered or not (a URL quoted back from a
/// configuration file that failed to load was never registered), and every registered
/// secret. A registered secret shorter than eight characters is hidden only where it
/// stands alone, not inside a longer word: masking every `a` of a line for the password
/// `a` would garble the line and give the password away by the letters it masked.
pub fn scrub(text: &str) -> String {
    // The placeholder of a hint (`postgres://USER:PASSWORD@HOST`, `password=PASSWORD`) is
    // no password.
    let scrubbed = URL_PASSWORD.replace_all(text, |found: &regex::Captures<'_>| match &found[2] {
        "PASSWORD" => found[0].to_string(),
        _ => format!("{}***@", &found[1]),
    });
    let mut scrubbed = KEY_VALUE_PASSWORD
        .replace_all(&scrubbed, |found: &regex::Captures<'_>| match found[0].strip_prefix(&found[1]) {
            Some("PASSWORD") => found[0].to_string(),
            _ => format!("{}***", &found[1]),
        })
        .into_owned();
    if let Ok(secrets) = SECRETS.lock() {
        for secret in secrets.iter() {
            scrubbed = hide(&scrubbed, secret);
        }
    }
    scrubbed
}

/// [`scrub`] for text a server cut to a length (an `application_name`, 63 bytes): a
/// registered secret cut off at its end — its first four characters or more — is masked
/// too, which [`scrub`] cannot recognise.
pub fn scrub_cut(text: &str) -> String {
    let mut scrubbed = scrub(text);
    if let Ok(secrets) = SECRETS.lock() {
        for secret in secrets.iter() {
            let cut = (4..secret.len())
                .rev()
                .filter(|&end| secret.is_char_boundary(end))
                .find(|&end| scrubbed.ends_with(&secret[..end]));
            if let Some(end) = cut {
                scrubbed.truncate(scrubbed.len() - end);
                scrubbed.push_str("***");
            }
        }
    }
    scrubbed
}

/// `scheme://user:PASSWORD@host`: the password runs to the last `@` of the word, as an
/// unencoded `@` in it is still the user's password.
static URL_PASSWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    crate::quota::patterns::compile(r"(?i)([a-z][a-z0-9+.-]*://[^\s/?#@:]*:)(\S*)@")
});
static KEY_VALUE_PASSWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    crate::quota::patterns::compile(r"(?i)(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s'][^\s]*)")
});

/// [`scrub`] for bytes a worker printed: `None` when they hold no password, else their
/// text (an invalid byte as U+FFFD, as it is shown anyway) with the passwords masked.
/// Output without one is only scanned, never copied: this runs for every item. A password
/// a terminal escape or a JSON string's escape splits is whole as the output is shown or
/// read: then the text is kept as shown (without its escapes), the password masked.
pub fn scrub_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(bytes);
    let may_hold_one = URL_PASSWORD.is_match(&text)
        || KEY_VALUE_PASSWORD.is_match(&text)
        || SECRETS.lock().map_or(true, |secrets| secrets.iter().any(|secret| text.contains(secret.as_str())));
    let scrubbed: std::borrow::Cow<'_, str> =
        if may_hold_one { std::borrow::Cow::Owned(scrub(&text)) } else { std::borrow::Cow::Borrowed(&text) };
    if let Some(shown) = crate::quota::decoded_view(&scrubbed) {
        let masked = scrub(&shown);
        if masked != shown {
            return Some(masked.into_bytes());
        }
    }
    (scrubbed != text).then(|| scrubbed.into_owned().into_bytes())
}

/// `text` with `secret` replaced by `***`: everywhere when it is long, else only where
/// no letter or digit touches it on either side.
fn hide(text: &str, secret: &str) -> String {
    const LONG: usize = 8;
    if secret.chars().count() >= LONG {
        return text.replace(secret, "***");
    }
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices(secret) {
        let end = at + secret.len();
        if is_word(text[..at].chars().next_back()) || is_word(text[end..].chars().next()) {
            continue;
        }
        out.push_str(&text[copied..at]);
        out.push_str("***");
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_class_of_failed_steps_wins() {
        let worst = |codes: &[u8]| codes.iter().fold(EXIT_OK, |worst, code| worse_exit_code(worst, *code));
        assert_eq!(worst(&[]), EXIT_OK);
        assert_eq!(worst(&[EXIT_CONFIG]), EXIT_CONFIG);
        assert_eq!(worst(&[EXIT_CONFIG, EXIT_CONFIG]), EXIT_CONFIG);
        assert_eq!(worst(&[EXIT_CONFIG, EXIT_INTERNAL]), EXIT_INTERNAL);
        assert_eq!(worst(&[EXIT_INTERNAL, EXIT_CONFIG]), EXIT_INTERNAL);
        assert_eq!(worst(&[EXIT_TEMPORARY, EXIT_CONFIG]), EXIT_CONFIG);
        assert_eq!(worst(&[EXIT_CONFIG, EXIT_UNAVAILABLE]), EXIT_UNAVAILABLE);
        assert_eq!(worst(&[EXIT_UNAVAILABLE, EXIT_INTERNAL]), EXIT_INTERNAL);
        assert_eq!(worst(&[EXIT_USAGE, EXIT_DATA, EXIT_TEMPORARY]), EXIT_TEMPORARY);
    }

    #[test]
    fn scrub_hides_the_forms_clients_print_a_password_in() {
        register_secret("q7Vd/Lk2+Zp9 Xw8R:Sé\\==");
        for (form, printed) in [
            ("Python's quote", "q7Vd/Lk2%2BZp9%20Xw8R%3AS%C3%A9%5C%3D%3D"),
            ("quote in lower case", "q7Vd/Lk2%2bZp9%20Xw8R%3aS%c3%a9%5c%3d%3d"),
            ("quote_plus", "q7Vd%2FLk2%2BZp9+Xw8R%3AS%C3%A9%5C%3D%3D"),
            ("PHP's json_encode", "q7Vd\\/Lk2+Zp9 Xw8R:S\\u00e9\\\\=="),
            ("Jackson", "q7Vd/Lk2+Zp9 Xw8R:S\\u00E9\\\\=="),
            ("a .pgpass field", "q7Vd/Lk2+Zp9 Xw8R\\:Sé\\\\=="),
            ("JavaScript's encodeURI", "q7Vd/Lk2+Zp9%20Xw8R:S%C3%A9%5C=="),
            ("encodeURIComponent", "q7Vd%2FLk2%2BZp9%20Xw8R%3AS%C3%A9%5C%3D%3D"),
            ("serde_json, JSON.stringify, jq", "q7Vd/Lk2+Zp9 Xw8R:Sé\\\\=="),
        ] {
            assert_eq!(scrub(&format!("said {printed} here")), "said *** here", "{form}");
        }
        register_secret("Zx9 k!m(wJ");
        assert_eq!(scrub("said Zx9%20k!m(wJ here"), "said *** here", "encodeURIComponent keeps !'()*");
    }

    #[test]
    fn a_secret_cut_off_at_the_end_of_a_text_the_server_cut_is_masked() {
        register_secret("0024756f0125616781ca7da9a1");
        // An application name the server cut to 63 bytes.
        assert_eq!(scrub_cut("job postgres://postgres:0024756f0125616781"), "job postgres://postgres:***");
        assert_eq!(scrub_cut("password=x 0024756f01"), "password=*** ***");
        assert_eq!(scrub_cut("job 002"), "job 002");
    }

    #[test]
    fn a_secret_holding_another_is_hidden_whole() {
        // Before: "***@horse-battery-staple", the shorter one hidden first.
        register_secret("Tr0ub4dor");
        register_secret("Tr0ub4dor@horse-battery-staple");
        assert_eq!(scrub("zone \"Tr0ub4dor@horse-battery-staple\""), "zone \"***\"");
    }

    #[test]
    fn scrub_hides_registered_secrets() {
        register_secret("s3cr3t-pass");
        assert_eq!(
            scrub("connect to postgres://u:s3cr3t-pass@h/db failed"),
            "connect to postgres://u:***@h/db failed"
        );
    }

    #[test]
    fn a_secret_an_escape_splits_is_masked_as_the_output_is_shown_and_read() {
        register_secret("5ad380e0eec2ca1b209e94ddf1d0fbef6106");
        // Before: kept byte for byte, and whole again once the item's error, a limit's
        // line or `quota test` read it with the escape removed or decoded.
        for split in [
            "Error: password 5ad380e0eec2\x1b[0mca1b209e94ddf1d0fbef6106\n",
            "Error: password 5ad380e0eec2\x1b]0;x\x07ca1b209e94ddf1d0fbef6106\n",
            "{\"type\":\"error\",\"message\":\"key 5ad380e0eec2\\u0063a1b209e94ddf1d0fbef6106\"}\n",
        ] {
            let kept = scrub_bytes(split.as_bytes()).expect("masked");
            let kept = String::from_utf8(kept).unwrap();
            assert!(
                kept.contains("***") && !kept.contains("ca1b209e94ddf1d0fbef6106"),
                "{split:?}: {kept:?}"
            );
        }
        // Output without a secret is left as it is, escapes and all.
        assert_eq!(scrub_bytes(b"\x1b[31merror\x1b[0m: no such file\n"), None);
        assert_eq!(scrub_bytes(b"{\"path\": \"C:\\\\tmp\"}\n"), None);
    }

    #[test]
    fn a_short_password_is_hidden_where_it_stands_alone_not_inside_words() {
        // Registered secrets are shared by the whole test process: one no other test prints.
        register_secret("q7");
        let line = "q7q cannot connect to q7-db as q7: aq7 failed";
        assert_eq!(scrub(line), "q7q cannot connect to ***-db as ***: aq7 failed");
    }

    #[test]
    fn any_quoted_url_or_password_setting_is_hidden_registered_or_not() {
        assert_eq!(
            scrub(
                r#"database: invalid type: string "postgres://drainctl:TopSecret9@db.example:5432/d", expected a table"#
            ),
            r#"database: invalid type: string "postgres://drainctl:***@db.example:5432/d", expected a table"#
        );
        assert_eq!(scrub("url postgres://u:p@ss:w/rd@h:5/db failed"), "url postgres://u:***@h:5/db failed");
        assert_eq!(scrub(r"host=h password='it\'s x' user=u"), "host=h password=*** user=u");
        assert_eq!(scrub("host=h password=Secret99 user=u"), "host=h password=*** user=u");
        assert_eq!(scrub("password authentication failed"), "password authentication failed");
        assert_eq!(scrub("see https://example.org/docs"), "see https://example.org/docs");
        let hint = "give postgres://USER:PASSWORD@HOST:PORT/DATABASE";
        assert_eq!(scrub(hint), hint);
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(Error::Usage(String::new()).exit_code(), 64);
        assert_eq!(Error::Data(String::new()).exit_code(), 65);
        assert_eq!(Error::Unavailable(String::new()).exit_code(), 69);
        assert_eq!(Error::Internal(String::new()).exit_code(), 70);
        assert_eq!(Error::Temporary(String::new()).exit_code(), 75);
        assert_eq!(Error::Conflict(String::new()).exit_code(), 75);
        assert_eq!(Error::Config(String::new()).exit_code(), 78);
    }

    #[test]
    fn a_secret_is_also_known_in_the_forms_clients_print_it() {
        assert_eq!(lower_case_escapes("S%C3%A9cr%E2%82%ACt%3AX"), "S%c3%a9cr%e2%82%act%3aX");
        assert_eq!(json_ascii_escaped("Sécr€t:\"q\\ 😀"), "S\\u00e9cr\\u20act:\\\"q\\\\ \\ud83d\\ude00");
    }
}
