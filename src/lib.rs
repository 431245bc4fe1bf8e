//! drainctl keeps quota-bound backlog work moving.
//!
//! A *drain* is a named backlog of items in PostgreSQL plus a worker command that
//! processes one item at a time. drainctl is a one-shot CLI: each invocation opens one
//! connection, brings the schema up to date under an advisory lock, does one pass of work
//! and exits. [`run`] is the whole program: parse, resolve, dispatch (see `commands`),
//! report.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub(crate) mod accounts;
pub(crate) mod atomic_file;
pub(crate) mod backoff;
pub(crate) mod cli;
pub mod cli_docs;
pub(crate) mod clock;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod db;
pub(crate) mod drain;
pub(crate) mod duration;
pub(crate) mod error;
#[cfg(test)]
mod fixtures;
pub(crate) mod glob;
pub(crate) mod hashing;
pub(crate) mod metrics;
pub(crate) mod migrate;
pub(crate) mod model;
pub(crate) mod notify;
pub(crate) mod output;
pub(crate) mod ownership;
pub(crate) mod pinned_folder;
pub(crate) mod poison;
pub(crate) mod priority;
pub(crate) mod prune;
pub(crate) mod quota;
pub(crate) mod ratelimit;
pub(crate) mod reap;
pub(crate) mod report;
pub(crate) mod schedule;
pub(crate) mod sources;
pub(crate) mod supervise;
pub(crate) mod usage;
pub(crate) mod worker;

use std::ffi::OsString;

use clap::Parser;

use crate::cli::Cli;
use crate::error::{Error, EXIT_OK, EXIT_USAGE};

/// The lines of the shape of drainctl's schema on `client`'s database that `doctor` does
/// not expect, and those it expects that are not there (`migrate::shape_drift`): the test
/// that keeps the expected shape current with the migrations reads it.
pub fn schema_shape_drift(
    client: &mut postgres::Client,
) -> std::result::Result<(Vec<String>, Vec<String>), String> {
    migrate::shape_drift(client).map_err(|error| error.to_string())
}

/// Run drainctl with these arguments; returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    // First of all: the environment may hold the database password.
    let hidden = crate::worker::process::hide_from_other_processes();
    // Before the command line is parsed: its errors quote the values given.
    crate::config::register_environment_secrets();
    let args: Vec<OsString> = args.into_iter().collect();
    let mut cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => return parse_failed(&error, &args),
    };
    // `--key --replace --payload 1` parses, as the key `--replace`: a key left out.
    if let Some(refused) = option_taken_as_value(&args) {
        return refused;
    }
    // A pass writing to its own log file dates its log lines, and supervise logs its summary.
    let is_logged = log_file_of(&cli.command).is_some();
    let is_supervise = matches!(cli.command, cli::Command::Supervise(_));
    init_logger(cli.verbose.max(u8::from(is_logged && is_supervise)), is_logged);
    if let Err(error) = hidden {
        log::warn!("cannot hide this process's environment from other processes of its user: {error}");
    }
    output::set_dated_lines(is_logged);
    if let cli::Command::Drain(args) = &mut cli.command {
        claim_drain_log(args);
    }
    // A drain that `supervise` started writes there already; one started by hand opens it.
    if let Some(path) = log_file_of(&cli.command) {
        if let Err(error) = output::redirect_stdio_to_log_file(path) {
            return failed(&error);
        }
        if is_supervise {
            log::info!("supervise started as pid {}", std::process::id());
        }
    }
    crate::worker::process::keep_inherited_descriptors_from_children();
    let output = cli.command.output();
    match commands::dispatch(cli) {
        Ok(report) => report.print(output.json),
        Err(error) => failed(&error),
    }
}

/// A `--key` or `--payload` whose value is one of the command's options, refused with 64.
fn option_taken_as_value(args: &[OsString]) -> Option<u8> {
    let (flag, option) = cli::option_taken_as_value(args)?;
    Some(failed(&Error::Usage(format!("{flag}: {}", cli::option_as_value(&flag, &option)))))
}

/// The log file a pass writes to (`--log-file` of `supervise` and `drain`).
fn log_file_of(command: &cli::Command) -> Option<&std::path::Path> {
    match command {
        cli::Command::Supervise(args) => args.log_file.as_deref(),
        cli::Command::Drain(args) => args.log_file.as_deref(),
        _ => None,
    }
}

/// A drain `supervise` started writes to a log file named after supervise's pid until
/// one of them renames it after the drain's own pid; the run records the renamed path
/// (see `drain::log_file`). A drain started by hand with a name of that form that does
/// not exist yet creates it under its own pid. A rename that fails leaves the name, with
/// a warning.
fn claim_drain_log(args: &mut cli::DrainArgs) {
    let Some(path) = args.log_file.take() else { return };
    // A path that names no file is refused as given (`absolute` would read `notes/.` as
    // `notes`).
    if crate::atomic_file::file_name_of(&path).is_none() {
        args.log_file = Some(path);
        return;
    }
    // The run records the path: relative, it would mean nothing away from this folder.
    let path = std::path::absolute(&path).unwrap_or(path);
    let pid = std::process::id();
    args.log_file = Some(match drain::log_file::rename_after(&path, pid) {
        Ok(renamed) => renamed,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            drain::log_file::named_after(&path, pid)
        }
        // Renamed already by supervise, and `path` is now the file of the next pass of
        // this drain it started in the same second (one a free slot): ours is the renamed
        // file this process writes to.
        Err(error)
            if error.kind() == std::io::ErrorKind::AlreadyExists
                && drain::log_file::is_stdout(&drain::log_file::named_after(&path, pid)) =>
        {
            drain::log_file::named_after(&path, pid)
        }
        // Not a regular file (a link planted there): opening it refuses it by name.
        Err(error) if error.kind() == std::io::ErrorKind::InvalidInput => path,
        Err(error) => {
            log::warn!("cannot rename log file {} after drain pid {pid}: {error}", path.display());
            path
        }
    });
}

/// Report a failure on stderr, in one line; returns its exit code.
fn failed(error: &Error) -> u8 {
    output::say_failure(error);
    error.exit_code()
}

/// The command line did not parse, or asked for help or the version: clap prints help to
/// stdout and its errors to stderr; a value one of our parsers refused is reported like
/// every other error, `drainctl: --flag: message`. Help and version exit 0, the rest 64.
fn parse_failed(error: &clap::Error, args: &[OsString]) -> u8 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use std::error::Error as _;
    let invalid = error.source().and_then(|source| source.downcast_ref::<cli::InvalidValue>());
    if let (ErrorKind::ValueValidation, Some(invalid)) = (error.kind(), invalid) {
        let flag = match error.get(ContextKind::InvalidArg) {
            // "--lock-timeout <DURATION>"
            Some(ContextValue::String(arg)) => arg.split_whitespace().next().unwrap_or_default().to_string(),
            _ => String::new(),
        };
        return failed(&Error::Usage(format!("{flag}: {invalid}")));
    }
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        // Said, as any summary stdout cannot take (docs/exit-codes.md); a closed pipe is not.
        let printed = error.print().and_then(|()| std::io::Write::flush(&mut std::io::stdout()));
        match printed {
            Err(why) if why.kind() != std::io::ErrorKind::BrokenPipe => {
                output::say_on_stderr(&format!("drainctl: warn: could not write the output to stdout: {why}"))
            }
            _ => {}
        }
        return EXIT_OK;
    }
    // `--key --payload {}`: clap blames the word left over; the key is what is missing.
    if let Some(refused) = option_taken_as_value(args) {
        return refused;
    }
    output::say_on_stderr(&format!("drainctl: {}", crate::error::scrub(&usage_error_line(error, args))));
    // An item's key or payload that is not UTF-8 is bad input data, as on stdin
    // (docs/exit-codes.md); any other argument is a usage error.
    if error.kind() == ErrorKind::InvalidUtf8 && is_item_data(not_utf8_option(args)) {
        return crate::error::EXIT_DATA;
    }
    EXIT_USAGE
}

/// Whether the option (`--key`, `--payload=…`) whose value is not UTF-8 gives an item.
fn is_item_data(option: Option<&str>) -> bool {
    option
        .is_some_and(|option| ["--key", "--payload"].contains(&option.split('=').next().unwrap_or_default()))
}

/// The first argument that is not UTF-8, as its option names it: the option before it
/// (`--payload BYTES`), or its own start (`--payload=BYTES`, read lossily).
fn not_utf8_option(args: &[OsString]) -> Option<&str> {
    let (at, before) = first_not_utf8(args)?;
    before.or_else(|| {
        let own = args[at].as_encoded_bytes();
        let name_end = own.iter().position(|byte| *byte == b'=')?;
        std::str::from_utf8(&own[..name_end]).ok().filter(|name| name.starts_with("--"))
    })
}

/// Where the first argument that is not UTF-8 is, and the option before it whose value it
/// is (one that carries its own value, `--key=k`, is not).
fn first_not_utf8(args: &[OsString]) -> Option<(usize, Option<&str>)> {
    let at = args.iter().skip(1).position(|arg| arg.to_str().is_none())? + 1;
    let before = at
        .checked_sub(1)
        .and_then(|before| args[before].to_str())
        .filter(|arg| arg.starts_with("--") && !arg.contains('='));
    Some((at, before))
}

/// The command that `args` name (`drainctl burst on`): their words that name a
/// subcommand of the command before them.
fn command_named(args: &[OsString]) -> String {
    command_reached(args, None).0.join(" ")
}

/// The command the words of `args` reach, each naming a subcommand of the command before
/// it, up to the word `stop` (all of them without one): its path from `drainctl` and the
/// command itself.
fn command_reached(args: &[OsString], stop: Option<&str>) -> (Vec<String>, clap::Command) {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut path = vec!["drainctl".to_string()];
    for arg in args.iter().skip(1).filter_map(|arg| arg.to_str()).take_while(|arg| Some(*arg) != stop) {
        if let Some(sub) = command.find_subcommand(arg).cloned() {
            path.push(sub.get_name().to_string());
            command = sub;
        }
    }
    (path, command)
}

/// clap's error as one line (docs/exit-codes.md): its message and tips, then where the
/// help is — `the following required arguments were not provided: <NAME>; see \`drainctl
/// drain --help\``. A command given without its subcommand names the subcommands.
fn usage_error_line(error: &clap::Error, args: &[OsString]) -> String {
    // As rendered, not as displayed: display strips escape sequences, the user's own too
    // (`--state $'pen\x1b[2Jding'` would read as `pending`); the caller escapes them.
    let text = error.render().ansi().to_string();
    let mut lines = text.lines().map(str::trim);
    let mut message = String::new();
    let mut command = command_named(args);
    let mut subcommands = Vec::new();
    // The message runs to the first blank line; after it, only its tips join it.
    let mut in_message = true;
    while let Some(line) = lines.next() {
        if let Some(usage) = line.strip_prefix("Usage: ") {
            let words = usage.split_whitespace().take_while(|word| !word.starts_with(['[', '<', '-']));
            command = words.collect::<Vec<_>>().join(" ");
        } else if line == "Commands:" {
            let names = lines.by_ref().take_while(|line| !line.is_empty());
            subcommands = names
                .filter_map(|line| line.split_whitespace().next())
                .filter(|name| *name != "help")
                .collect();
        } else if line.is_empty() {
            in_message = message.is_empty();
        } else if in_message || line.starts_with("tip:") {
            let part = line.strip_prefix("error: ").unwrap_or(line);
            let separator = match message.chars().last() {
                None => "",
                Some(':') => " ",
                Some(_) if in_message => ", ",
                Some(_) => "; ",
            };
            message = format!("{message}{separator}{part}");
        }
    }
    if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        message = format!("`{command}` needs a command: {}", subcommands.join(", "));
    }
    if error.kind() == clap::error::ErrorKind::InvalidUtf8 {
        message = not_utf8_argument(args).unwrap_or(message);
    }
    if let Some(word) = stray_word(error) {
        let is_subcommand = command_reached(args, Some(&word)).1.find_subcommand(&word).is_some();
        // clap calls a stray word after a command's argument a subcommand in conflict.
        if error.kind() == clap::error::ErrorKind::ArgumentConflict && !is_subcommand {
            message = format!("unexpected argument '{word}' found");
        }
        if let Some(tip) = stray_word_tip(&word, is_subcommand, args, &command) {
            message = format!("{message}; {tip}");
        }
    }
    if let Some(why) = signed_duration(error, args) {
        return why;
    }
    // clap suggests the subcommands most alike by its own measure, `scan` for `cancel`:
    // only those two letters away or nearer (one for a word under four) are kept.
    let similar = ["; tip: a similar subcommand exists: ", "; tip: some similar subcommands exist: "];
    if let Some((before, tip)) = similar.iter().find_map(|tip| message.split_once(tip)) {
        let given = stray_word(error).unwrap_or_default();
        let (listed, after) = tip.split_once(';').unwrap_or((tip, ""));
        let near: Vec<&str> = listed
            .split(", ")
            .map(|name| name.trim().trim_matches('\''))
            .filter(|name| crate::config::is_near(&given, name))
            .collect();
        let after = if after.is_empty() { String::new() } else { format!(";{after}") };
        message = match near.as_slice() {
            [] => format!("{before}{after}"),
            [one] => format!("{before}; tip: a similar subcommand exists: '{one}'{after}"),
            many => format!("{before}; tip: some similar subcommands exist: '{}'{after}", many.join("', '")),
        };
    }
    if let Some(tip) = missing_form_tip(error, args, &command) {
        message = format!("{message}; {tip}");
    }
    // clap's tip for an option it does not know, "to pass '--json' as a value, use '--
    // --json'", fails again where no argument is left to take the value.
    if let Some((before, tip)) = message.split_once("; tip: to pass '") {
        let word = tip.split('\'').next().unwrap_or_default();
        if let Some(replacement) = hyphen_word_tip(word, args, &command) {
            message = match replacement {
                Some(replacement) => format!("{before}; {replacement}"),
                None => before.to_string(),
            };
        }
    }
    format!("{message}; see `{command} --help`")
}

/// Which argument is not UTF-8 (where one is only accepted in UTF-8, as a path the
/// database records), named with the option it belongs to and shown with U+FFFD for the
/// bytes that are not.
fn not_utf8_argument(args: &[OsString]) -> Option<String> {
    let (at, option) = first_not_utf8(args)?;
    let shown = args[at].to_string_lossy();
    Some(match option {
        Some(option) => format!("{option} {shown:?} is not valid UTF-8: give it in UTF-8"),
        None => format!("{shown:?} is not valid UTF-8: give it in UTF-8"),
    })
}

/// For a bare word a command has no place for, the form that was most likely meant
/// (docs/cli.md): `items NAME KEY` is `items show NAME KEY`, `runs 12` is `runs show 12`,
/// `events NAME` is `events --drain NAME`, `passes 5` is `passes --limit 5`, and a burst
/// deadline goes after `--until`, quoted when it has a space.
fn stray_word_tip(word: &str, is_subcommand: bool, args: &[OsString], command: &str) -> Option<String> {
    if is_subcommand {
        return Some(format!("`{word}` goes right after `{command}`, before its other arguments"));
    }
    let is_number = word.parse::<u64>().is_ok();
    // `runs list`, `burst list`: these commands list without a verb.
    if matches!(word, "list" | "ls" | "all") {
        return Some(match command {
            "drainctl burst" => "`drainctl burst status` lists the bursts".to_string(),
            _ => format!("`{command}` lists them as it is: leave out `{word}`"),
        });
    }
    match command {
        "drainctl items" if word.parse::<crate::model::ItemState>().is_ok() => {
            let name = positional_words(args, "items").into_iter().find(|name| *name != word)?;
            Some(format!("for its items in one state: `drainctl items {name} --state {word}`"))
        }
        "drainctl items" => {
            let name = positional_words(args, "items").into_iter().find(|name| *name != word)?;
            // `items retry docs a`: `retry` is a command, not a drain.
            let (_, top) = command_reached(&[OsString::new(), OsString::from(&name)], None);
            if top.get_name() == name {
                return Some(format!("`{name}` is a command of its own: see `drainctl {name} --help`"));
            }
            Some(format!("for one item: `drainctl items show {name} {word}`"))
        }
        "drainctl runs" if is_number => Some(format!("for one run: `drainctl runs show {word}`")),
        "drainctl runs" => Some(format!("for one drain's runs: `drainctl runs --drain {word}`")),
        "drainctl events" if word.parse::<crate::model::EventKind>().is_ok() => {
            Some(format!("for the events of one kind: `drainctl events --kind {word}`"))
        }
        "drainctl events" if !is_number => {
            Some(format!("for one drain's events: `drainctl events --drain {word}`"))
        }
        "drainctl events" | "drainctl passes" if is_number => {
            Some(format!("to show {word} of them: `{command} --limit {word}`"))
        }
        "drainctl burst" => {
            Some(format!("`drainctl burst on {word}` starts a burst, `drainctl burst off {word}` ends it"))
        }
        "drainctl burst on" => Some(
            "a deadline goes after --until, quoted when it has a space: `--until 'sat 18:00'`".to_string(),
        ),
        _ => None,
    }
}

/// For a command missing what it needs, or given two things that do not go together, the
/// form that was most likely meant (docs/cli.md): a drain named `show` is listed with
/// `items -- show`, `pause` takes `--all` instead of a name, and `--clear-backoff` goes
/// with `resume --group`.
fn missing_form_tip(error: &clap::Error, args: &[OsString], command: &str) -> Option<String> {
    use clap::error::ErrorKind;
    match (error.kind(), command) {
        (ErrorKind::MissingRequiredArgument, "drainctl items show")
            if positional_words(args, "show").is_empty() =>
        {
            Some("the items of a drain named `show` are listed with `drainctl items -- show`".to_string())
        }
        (ErrorKind::MissingRequiredArgument, "drainctl pause") => {
            Some("or `drainctl pause --all` for every drain".to_string())
        }
        (ErrorKind::ArgumentConflict, "drainctl resume")
            if args.iter().any(|arg| arg == "--clear-backoff") =>
        {
            Some(
                "--clear-backoff goes with --group: `drainctl resume --group GROUP --clear-backoff`"
                    .to_string(),
            )
        }
        _ => None,
    }
}

/// What replaces clap's tip to pass `word`, a word that begins with `-`, after `--`
/// (docs/exit-codes.md, 64): `Some(None)` leaves it out, `None` keeps it. `export` writes
/// JSON lines without a `--json` (docs/cli.md); a command whose arguments are all given
/// has no place for the word after `--` either.
fn hyphen_word_tip(word: &str, args: &[OsString], command: &str) -> Option<Option<String>> {
    if command == "drainctl export" && word == "--json" {
        return Some(Some(
            "`drainctl export` writes JSON lines without --json (--format jsonl, the default); --format csv \
             writes CSV"
                .to_string(),
        ));
    }
    let (path, reached) = command_reached(args, None);
    let last = path.last().filter(|_| path.len() >= 2)?;
    let given = positional_words(args, last).into_iter().filter(|given| given != word).count();
    // Only a drain's name or an item's key may begin with `-` (a run's id may not), and
    // no name or key is taken to begin with `--`: the tip would fail again (`drain -- --all`).
    let takes_a_name = reached.get_positionals().any(|arg| ["name", "key"].contains(&arg.get_id().as_str()));
    if given >= reached.get_positionals().count() || !takes_a_name || word.starts_with("--") {
        return Some(None);
    }
    // After `--` every word is a value: `-- -x --key a` would make `--key` one too. clap
    // names the first letter of `-k1` alone: the tip passes the whole word.
    let words: Vec<&str> = args.iter().filter_map(|arg| arg.to_str()).collect();
    let at = words.iter().position(|given| *given == word || given.starts_with(word))?;
    let whole = words[at];
    Some(Some(if at + 1 < words.len() {
        format!("to pass '{whole}' as a value, give it last, after every option and `--` (… -- {whole})")
    } else {
        format!("to pass '{whole}' as a value, put `--` before it (… -- {whole})")
    }))
}

/// `--since -1d`, `--lock-timeout -1s`: clap reads `-1d` as an option it does not know;
/// what is wrong is the sign.
fn signed_duration(error: &clap::Error, args: &[OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(word)) = error.get(ContextKind::InvalidArg) else { return None };
    let words: Vec<&str> = args.iter().filter_map(|arg| arg.to_str()).collect();
    words.windows(2).find_map(|pair| {
        let [flag, value] = [pair[0], pair[1]];
        let what = match flag {
            "--since" => "a time back from now",
            "--lock-timeout" => "a lock wait",
            _ => return None,
        };
        let is_signed_value = value.starts_with(word.as_str()) && word.len() > 1;
        is_signed_value
            .then(|| crate::cli::refuse_a_sign_of(value, what).err())
            .flatten()
            .map(|why| format!("{flag}: {why}"))
    })
}

/// The bare word clap found no place for (not an option), if its error names one.
fn stray_word(error: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    [ContextKind::InvalidSubcommand, ContextKind::InvalidArg].into_iter().find_map(|kind| {
        match error.get(kind) {
            // An argument's name (`[NAME]`, `<KEY>`) is one clap says is in conflict, not
            // a word given.
            Some(ContextValue::String(word)) if !word.starts_with(['-', '[', '<']) => Some(word.clone()),
            _ => None,
        }
    })
}

/// The words after the subcommand `after` that are neither an option nor an option's value.
fn positional_words(args: &[OsString], after: &str) -> Vec<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let takes_value = |flag: &str| {
        let sub = command.find_subcommand(after);
        let flag = flag.trim_start_matches('-');
        command.get_arguments().chain(sub.into_iter().flat_map(|sub| sub.get_arguments())).any(|arg| {
            (arg.get_long() == Some(flag) || arg.get_short().is_some_and(|short| flag == short.to_string()))
                && arg.get_action().takes_values()
        })
    };
    let mut words = Vec::new();
    let mut rest = args.iter().filter_map(|arg| arg.to_str()).skip_while(|arg| *arg != after).skip(1);
    while let Some(arg) = rest.next() {
        if arg.starts_with('-') {
            if !arg.contains('=') && takes_value(arg) {
                rest.next();
            }
        } else {
            words.push(arg.to_string());
        }
    }
    words
}

/// Log lines go to stderr as `drainctl: LEVEL: message`; with `is_dated` (a pass writing to
/// its own log file), prefixed with the UTC time.
fn init_logger(verbosity: u8, is_dated: bool) {
    // The driver's own debug lines quote every statement's parameters — whole payloads and
    // results, megabytes a line: `-vv` is drainctl's debugging, not the driver's.
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        _ => "debug,tokio_postgres=info,postgres=info",
    };
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    builder.target(env_logger::Target::Pipe(Box::new(output::WatchedStderr)));
    builder.format(move |buf, record| {
        use std::io::Write;
        // Worker output and item keys reach log lines: never let them forge or reorder one.
        let message = crate::error::scrub(&record.args().to_string());
        let message = crate::output::escape_controls(&message);
        let level = record.level().as_str().to_lowercase();
        if is_dated {
            writeln!(buf, "{} drainctl: {level}: {message}", crate::output::utc_now_stamp())
        } else {
            writeln!(buf, "drainctl: {level}: {message}")
        }
    });
    let _ = builder.try_init();
}
