//! The `hoover` command: parses the command line and dispatches to one file per subcommand.
//!
//! Exit codes: 0 success; 1 an error (printed with its whole cause chain); 2 a usage error;
//! 3 partly done (some files failed and will be retried, or local files were left alone).

mod cli;
mod commands;
mod config;
mod progress;

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};

/// The command line, with `--version` naming the formats this build speaks and writes.
fn parse_cli() -> Cli {
    let version: &'static str = Box::leak(
        format!(
            "{} (protocol {}.{}, store format {}, index schema {})",
            env!("CARGO_PKG_VERSION"),
            hoover_proto::PROTOCOL_MAJOR,
            hoover_proto::PROTOCOL_MINOR,
            hoover_store::STORE_FORMAT_VERSION,
            hoover_index::SCHEMA_VERSION
        )
        .into_boxed_str(),
    );
    let matches = with_real_paths(Cli::command().version(version))
        .get_matches_from(cli::with_search_words_last(std::env::args_os().collect()));
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Help that names this machine's directories instead of `<data dir>` and `<config dir>`.
fn with_real_paths(mut cmd: clap::Command) -> clap::Command {
    let Ok(dirs) = config::dirs() else {
        return cmd;
    };
    let fix = |text: &str| {
        text.replace("<data dir>", &dirs.data.display().to_string())
            .replace("<config dir>", &dirs.config.display().to_string())
    };
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |mut sub| {
            let helps: Vec<(String, Option<String>, Option<String>)> = sub
                .get_arguments()
                .map(|a| {
                    (
                        a.get_id().to_string(),
                        a.get_help().map(|h| h.to_string()),
                        a.get_long_help().map(|h| h.to_string()),
                    )
                })
                .collect();
            for (id, help, long) in helps {
                let names_a_dir = |t: &Option<String>| {
                    t.as_deref()
                        .is_some_and(|t| t.contains("<data dir>") || t.contains("<config dir>"))
                };
                if names_a_dir(&help) || names_a_dir(&long) {
                    sub = sub.mut_arg(id, |mut a| {
                        if let Some(h) = &help {
                            a = a.help(fix(h));
                        }
                        if let Some(l) = &long {
                            a = a.long_help(fix(l));
                        }
                        a
                    });
                }
            }
            sub
        });
    }
    cmd
}

fn main() -> std::process::ExitCode {
    // Everything hoover creates (the store, keys, client state, `up`'s directory, restored
    // transcripts) holds chats or secrets: owner-only, whatever umask it was started with.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = parse_cli();
    // hoover's own INFO lines for the long-running commands, dependencies (tantivy's merges,
    // russh's connections) only when they warn; RUST_LOG overrides. Colours only on a
    // terminal, never into a log file or the journal.
    let default_filter = match cli.command {
        Command::Serve(_) | Command::Watch(_) | Command::Up(_) => {
            "warn,hoover=info,hoover_server=info,hoover_client=info,hoover_store=info,hoover_index=info"
        }
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
            Command::Recover(args) => commands::recover::run(args).await,
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
