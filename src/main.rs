//! The `selfheal` binary: parses the command line, loads configuration,
//! initialises logging and hands over to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// A self-hosted Slack bot that heals failed dbt pipeline runs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration (environment, schedules, agents) and exit.
    Check,
    /// Run the bot until SIGINT or SIGTERM.
    Run,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SELFHEAL_LOG")
                .unwrap_or_else(|_| "info,slack_morphism=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = match selfheal::config::Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("selfheal: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Check => {
            print!("{}", selfheal::config::summary(&config));
            ExitCode::SUCCESS
        }
        Command::Run => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("selfheal: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                match selfheal::app::run(config, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        error!(error = ?e, "selfheal stopped with an error");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

/// Cancels `token` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    token.cancel();
}
