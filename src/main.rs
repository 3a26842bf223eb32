//! The `hoover` command: parses the command line and dispatches to one file per subcommand.
//!
//! Exit codes: 0 success; 1 an error (printed with its whole cause chain); 2 a usage error;
//! 3 partly done (some files failed and will be retried, or local files were left alone).

mod cli;
mod commands;
mod config;
mod progress;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    // Everything hoover creates (the store, keys, client state, `up`'s directory, restored
    // transcripts) holds chats or secrets: owner-only, whatever umask it was started with.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse_from(cli::with_search_words_last(std::env::args_os().collect()));
    let default_filter = match cli.command {
        Command::Serve(_) | Command::Watch(_) | Command::Up(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // The agent mostly waits and moves small messages: one thread avoids cross-thread wake-ups,
    // which were most of its CPU per append. Heavy work still goes to the blocking pool.
    let runtime = match cli.command {
        Command::Watch(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .expect("cannot start the async runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => commands::up::run(args).await,
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Sync(args) => commands::sync::run(args).await,
            Command::Watch(args) => commands::watch::run(args).await,
            Command::Status(args) => commands::status::run(args).await,
            Command::Doctor(args) => commands::doctor::run(args).await,
            Command::Ls(args) => commands::ls::run(args).await,
            Command::Versions(args) => commands::versions::run(args).await,
            Command::Restore(args) => commands::restore::run(args).await,
            Command::Verify(args) => commands::verify::run(args).await,
            Command::Search(args) => commands::search::run(args).await,
            Command::Reindex(args) => commands::reindex::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        // `hoover ls | head`: the reader had what it wanted.
        Err(e) if commands::is_stdout_closed(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            commands::print_error(&e);
            std::process::ExitCode::from(1)
        }
    }
}
