//! `broker`: parses the command line, binds the port and runs the broker
//! until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use broker::{Cli, Command, Config};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let cli: Cli = client::cli::parse_args();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match serve(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("broker: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: Cli) -> Result<(), String> {
    if let Some(Command::Token) = cli.command {
        let (token, hash) = broker::new_token();
        println!("token = {token}");
        println!("token_sha256 = \"{hash}\"");
        return Ok(());
    }
    let config = Config::from_cli(cli)?;
    match broker::raise_open_files_limit() {
        Ok(limit) => tracing::debug!("open files limit: {limit}"),
        Err(error) => tracing::warn!("cannot raise the open files limit: {error}"),
    }
    let address = format!("{}:{}", config.host, config.port);
    let listener =
        broker::listen(&address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
    actix_web::rt::System::new()
        .block_on(broker::run(config, listener, shutdown_signal()))
        .map_err(|e| e.to_string())
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the broker with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
