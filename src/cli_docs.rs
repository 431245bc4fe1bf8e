//! The command reference (`docs/cli.md`), generated from the clap definitions in
//! [`crate::cli`] like the shell completions, so neither can drift from what the binary
//! accepts.
//!
//! [`markdown`] renders the reference; an integration test compares it with the file in the
//! repository and fails when someone changed a flag without regenerating it
//! (`DRAINCTL_UPDATE_DOCS=1 cargo test --features testing --test integration cli_reference`
//! rewrites it).
//! `drainctl completions bash|zsh|fish` (in `commands/completions.rs`) prints a completion
//! script made by `clap_complete`.

use clap::{Arg, Command, CommandFactory};

use crate::cli::Cli;

/// `docs/cli.md`: every visible command with its usage and arguments.
pub fn markdown() -> String {
    let mut root = Cli::command();
    root.build();
    let mut out = String::new();
    out.push_str("# Command reference\n\n");
    out.push_str(
        "Generated from drainctl's command-line definitions; do not edit by hand. A test fails\n\
         when this file is out of date; `DRAINCTL_UPDATE_DOCS=1 cargo test --features testing\n\
         --test integration cli_reference` rewrites it.\n\n",
    );
    if let Some(about) = root.get_about() {
        out.push_str(&format!("{about}\n\n"));
    }
    out.push_str("## Options of every command\n\n");
    let globals: Vec<&Arg> = visible_arguments(&root).into_iter().filter(|arg| arg.is_global_set()).collect();
    argument_table(&mut out, &globals);
    out.push_str("## Commands\n\n");
    for command in root.get_subcommands().filter(|c| !c.is_hide_set() && c.get_name() != "help") {
        command_section(&mut out, command, "drainctl");
    }
    out
}

fn command_section(out: &mut String, command: &Command, parent: &str) {
    let path = format!("{parent} {}", command.get_name());
    out.push_str(&format!("### `{path}`\n\n"));
    if let Some(about) = command.get_long_about().or_else(|| command.get_about()) {
        out.push_str(&format!("{about}\n\n"));
    }
    let usage = command.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage:").trim();
    out.push_str("```\n");
    for line in usage.lines() {
        out.push_str(line.trim());
        out.push('\n');
    }
    out.push_str("```\n\n");
    let arguments: Vec<&Arg> =
        visible_arguments(command).into_iter().filter(|arg| !arg.is_global_set()).collect();
    if !arguments.is_empty() {
        argument_table(out, &arguments);
    }
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set() && c.get_name() != "help") {
        command_section(out, sub, &path);
    }
}

fn visible_arguments(command: &Command) -> Vec<&Arg> {
    command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version"))
        .collect()
}

fn argument_table(out: &mut String, arguments: &[&Arg]) {
    out.push_str("| argument | default | meaning |\n|---|---|---|\n");
    for arg in arguments {
        let default: Vec<String> =
            arg.get_default_values().iter().map(|value| value.to_string_lossy().into_owned()).collect();
        let shows_default = !default.is_empty() && arg.get_action().takes_values();
        let default = if shows_default { format!("`{}`", default.join(", ")) } else { String::new() };
        let mut meaning = arg.get_help().map(|help| help.to_string()).unwrap_or_default();
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        if !possible.is_empty() && arg.get_action().takes_values() {
            meaning.push_str(&format!(" (one of: {})", possible.join(", ")));
        }
        if arg.is_required_set() {
            meaning.push_str(" (required)");
        }
        out.push_str(&format!("| `{}` | {} | {} |\n", spelling(arg), default, meaning.replace('|', "\\|")));
    }
    out.push('\n');
}

/// How an argument is written: `NAME`, `--limit <N>`, `-v, --verbose`.
fn spelling(arg: &Arg) -> String {
    let value_name = || {
        arg.get_value_names()
            .and_then(|names| names.first())
            .map(|name| name.to_string())
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
    };
    if arg.is_positional() {
        return value_name();
    }
    let mut text = String::new();
    if let Some(short) = arg.get_short() {
        text.push_str(&format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        if !text.is_empty() {
            text.push_str(", ");
        }
        text.push_str(&format!("--{long}"));
    }
    if arg.get_action().takes_values() {
        let optional = arg.get_num_args().is_some_and(|range| range.min_values() == 0);
        if optional {
            text.push_str(&format!(" [<{}>]", value_name()));
        } else {
            text.push_str(&format!(" <{}>", value_name()));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_names_every_visible_command() {
        let text = markdown();
        for command in ["drainctl migrate", "drainctl quota test", "drainctl completions"] {
            assert!(text.contains(&format!("### `{command}`")), "{command} missing");
        }
        assert!(!text.contains('\u{1b}'), "no terminal styling");
    }
}
