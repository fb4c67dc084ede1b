//! `hyperctl`: parse flags, stream bytes to and from hyperd, print.

mod cli;
mod cmd;
mod exit;
mod progress;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let socket = cli.socket.unwrap_or_else(hyperd_proto::default_socket);
    match cmd::run(cli.command, &socket).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {}", exit::describe(&e));
            exit::code(&e)
        }
    }
}
