//! The `ipvec` binary.

use clap::Parser;
use ipvec_node::{
    api::logs::FeedLayer,
    cli::{self, Cli},
};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The dashboard owns the terminal: it logs to a file of its own.
    if !matches!(cli.command, cli::Command::Tui) {
        log_to_stderr(&cli);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli::run(cli));
    // Tasks are stopped and waited for by their owners; whatever is left (a blocking task
    // still running) does not hold the exit up for long.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `ipvec … | head`: the reader has what it wanted.
        Err(e) if cli::is_stdout_closed(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr and to the daemon's /v1/logs feed.
fn log_to_stderr(cli: &Cli) {
    let (level, format) = cli.log_settings();
    // RUST_LOG wins; else the level applies to ipvec, and other crates log warnings.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,ipvec_node={level},ipvec={level}")));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let stderr = if format == "json" {
        stderr.json().boxed()
    } else {
        stderr.boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(FeedLayer)
        .init();
}
