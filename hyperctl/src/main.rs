//! `hyperctl`: parse flags, stream bytes to and from hyperd, print.

mod cli;
mod cmd;
mod credentials;
mod elide;
mod exit;
mod handoff;
mod peer;
mod progress;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    hyperd_proto::bound_allocator_caching();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the runtime");
    let code = runtime.block_on(run(cli::Cli::parse()));
    // A read of stdin blocked on a terminal or a silent pipe runs on a thread that nothing can
    // cancel: exit without waiting for it.
    runtime.shutdown_background();
    code
}

async fn run(cli: cli::Cli) -> ExitCode {
    let socket = cli.socket.or_else(cli::socket_from_env);
    match cmd::run(cli.command, socket).await {
        Ok(code) => code,
        Err(e) => ExitCode::from(exit::report(&e)),
    }
}
