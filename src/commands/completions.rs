//! `drainctl completions bash|zsh|fish`: a shell completion script made by `clap_complete`
//! from the clap definitions in [`crate::cli`].

use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell, CompletionsArgs};
use crate::output::Report;

/// `drainctl completions SHELL`: the completion script on stdout.
pub fn run(args: &CompletionsArgs) -> Report {
    let shell = match args.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "drainctl", &mut script);
    // The script is the whole output: one cut short by a full disk is exit 75, not 0.
    Report::the_output(String::from_utf8_lossy(&script).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_the_commands() {
        let report = run(&CompletionsArgs { shell: CompletionShell::Bash });
        assert!(report.human.contains("enqueue"));
    }
}
