//! `hyperctl completion SHELL`: a completion script from clap's own description of the CLI.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionArgs};

pub(crate) fn run(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "hyperctl",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
