//! The command-line interface: every subcommand and option, with its help text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "hoover",
    version,
    about = "Keep every version of every AI chat transcript on your own server",
    long_about = "hoover copies chat transcripts (Claude Code's ~/.claude/projects/**/*.jsonl by default) \
from laptops to a server over SSH. The server keeps every version of every file in a \
content-addressed store; any version can be listed and restored byte for byte.\n\n\
Settings come from (later wins): built-in defaults, the TOML config file, HOOVER_* environment \
variables, then flags."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run everything locally with zero configuration: a server on loopback, a watcher on your
    /// Claude Code transcripts (or a live demo tree when there are none), keys made on first run.
    Up(UpArgs),
    /// Run the server: SSH endpoint, store, and HTTP listener.
    Serve(ServeArgs),
    /// One pass: push every new or changed file under the roots to the server.
    Sync(SyncArgs),
    /// Keep pushing: watch the roots and ship every change within a second, across sleep,
    /// network loss and server restarts. Exits 0 on SIGINT/SIGTERM after the push in flight.
    Watch(WatchArgs),
    /// Show the watch agent's state: connected, files, pending, last push, bytes today.
    Status(StatusArgs),
    /// Check the set-up step by step (config, roots, key, network, host key, login, protocol,
    /// a test push, the agent service) and say how to fix what fails.
    Doctor(DoctorArgs),
    /// List the files the server holds, with their latest version.
    Ls(LsArgs),
    /// List every version of one file.
    Versions(VersionsArgs),
    /// Restore one version of a file (-o), or a whole tree as it was at a time (--to).
    Restore(RestoreArgs),
    /// Check a server store offline: every chunk re-hashed, every version reassembled.
    Verify(VerifyArgs),
    /// Search every chat on the server.
    Search(SearchArgs),
    /// Rebuild a server store's search index (its `index/` subdirectory) from the store (the
    /// server must be stopped; it also rebuilds by itself when the index is missing, damaged or
    /// of an older schema).
    Reindex(ReindexArgs),
    /// Build a server's store again on this machine from its off-site copy
    /// (`hoover serve --replicate-to`): the newest snapshot of its version log and every pack
    /// it names, each chunk then checked as `hoover verify` does.
    Recover(RecoverArgs),
}

/// Options every client command shares.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server, as [USER@]HOST[:PORT] (port 2222 by default).
    #[arg(long, env = "HOOVER_SERVER")]
    pub server: Option<String>,
    /// Private key to authenticate with [default: ~/.ssh/id_ed25519, else ~/.ssh/id_rsa].
    #[arg(long, env = "HOOVER_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// Where server host keys are recorded (first use records, a change is refused)
    /// [default: <config dir>/known_hosts].
    #[arg(long, env = "HOOVER_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// TOML config file [default: $HOOVER_CONFIG, else <config dir>/config.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Address for SSH.
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub ssh_listen: SocketAddr,
    /// Address for HTTP.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// Token for the web page (at least 16 characters), as for `hoover serve`; required when
    /// --http-listen is not a loopback address. The page's address is printed with it.
    #[arg(long, env = "HOOVER_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// Watch a demo tree that grows by a message every few seconds, even if you have transcripts.
    #[arg(long)]
    pub demo: bool,
    /// Seconds between demo messages.
    #[arg(long, default_value_t = 3)]
    pub demo_every: u64,
    /// Where `up` keeps its store, keys and demo tree [default: <data dir>/up].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Store directory [default: <data dir>/store].
    #[arg(long, env = "HOOVER_STORE")]
    pub store: Option<PathBuf>,
    /// Address for SSH [default: 127.0.0.1:2222].
    #[arg(long, env = "HOOVER_SSH_LISTEN")]
    pub ssh_listen: Option<SocketAddr>,
    /// Address for the web page and HTTP API [default: 127.0.0.1:8080]: /, /live, /search,
    /// /sessions/ID, /files/KEY, /sources, /api/search, /api/stats, /api/live, /metrics,
    /// /healthz.
    #[arg(long, env = "HOOVER_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Token for the web page and HTTP API (at least 16 characters), required when
    /// --http-listen is not a loopback address. Send it as `Authorization: Bearer TOKEN`, or
    /// open any page once with `?token=TOKEN` (a cookie keeps it).
    #[arg(long, env = "HOOVER_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// Keep no search index (searches are refused; the store is unaffected).
    #[arg(long)]
    pub no_index: bool,
    /// Index and show secrets (API keys, tokens, private keys, passwords) as they are, instead
    /// of replacing them with [REDACTED:<kind>]. The store always keeps every byte.
    #[arg(long, env = "HOOVER_NO_REDACT")]
    pub no_redact: bool,
    /// OpenSSH authorized_keys file of the clients allowed in
    /// [default: <config dir>/authorized_keys]. `hoover-allow="push"` makes a key push-only.
    #[arg(long, env = "HOOVER_AUTHORIZED_KEYS")]
    pub authorized_keys: Option<PathBuf>,
    /// OpenSSH host private key; an ed25519 key is created (mode 0600) when missing
    /// [default: <data dir>/host_key].
    #[arg(long, env = "HOOVER_HOST_KEY")]
    pub host_key: Option<PathBuf>,
    /// Most SSH connections served at once; more are refused until one closes.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Seconds a new connection has to authenticate and start hoover's protocol before it is
    /// closed (so silent or slow clients cannot hold connection slots).
    #[arg(long, value_name = "SECS", default_value_t = hoover_server::ServerConfig::LOGIN_TIMEOUT.as_secs())]
    pub login_timeout: u64,
    /// Seconds a connection may stall in the middle of something (a half-sent request, a batch
    /// of chunks not yet committed, a reply it does not read) before it is closed and its
    /// uncommitted batch dropped. An agent idle between requests is never closed for it.
    #[arg(long, value_name = "SECS", default_value_t = hoover_server::ServerConfig::STALL_TIMEOUT.as_secs())]
    pub stall_timeout: u64,
    /// Most HTTP connections open at once (half of them at most may hold a live page's
    /// stream); more are closed at once until one ends.
    #[arg(long, value_name = "N", default_value_t = hoover_server::ServerConfig::MAX_HTTP_CONNECTIONS)]
    pub max_http_connections: usize,
    /// Seconds an HTTP client has to send a request's headers, idle keep-alive time included,
    /// before its connection is closed.
    #[arg(long, value_name = "SECS", default_value_t = hoover_server::ServerConfig::HTTP_HEADER_TIMEOUT.as_secs())]
    pub http_timeout: u64,
    /// Most chunks one uncommitted batch may hold, counting the chunks its versions name too
    /// (each costs the server about 100 bytes of memory until commit). A bigger batch is refused
    /// and nothing of it recorded; the default allows a single new file of about 16 GB.
    #[arg(long, value_name = "N", default_value_t = hoover_store::MAX_BATCH_ITEMS)]
    pub max_batch_chunks: usize,
    /// Keep an off-site copy of the store in an S3-compatible object store (AWS S3, Backblaze
    /// B2, Cloudflare R2, MinIO, Garage), as s3://BUCKET/PREFIX: every committed pack is
    /// uploaded, and a snapshot of the version log follows within --replicate-every seconds of
    /// a commit and at shutdown. Credentials and region come from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and AWS_REGION. An unreachable copy never stops ingest: it
    /// catches up when it can, and /api/stats, /metrics and the dashboard show how far behind
    /// it is. `hoover recover` builds a store from it.
    #[arg(long, env = "HOOVER_REPLICATE_TO", value_name = "S3_URL")]
    pub replicate_to: Option<String>,
    /// The S3 endpoint for --replicate-to [default: $AWS_ENDPOINT_URL, else AWS]. A plain
    /// http:// endpoint needs AWS_ALLOW_HTTP=true.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The longest the copy's snapshot of the version log trails a commit, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub replicate_every: u64,
    /// TOML config file [default: $HOOVER_CONFIG, else <config dir>/config.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The copy, as s3://BUCKET/PREFIX (what the server had as --replicate-to).
    #[arg(long, value_name = "S3_URL")]
    pub from: String,
    /// The directory to build the store in: new or empty (give it to `hoover serve --store`).
    #[arg(long)]
    pub store: PathBuf,
    /// The S3 endpoint [default: $AWS_ENDPOINT_URL, else AWS]. A plain http:// endpoint needs
    /// AWS_ALLOW_HTTP=true.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What to push: the machine's name and the roots, shared by sync, watch and doctor.
#[derive(Args, Debug, Clone)]
pub struct RootArgs {
    /// Name of this machine in keys [default: the host name].
    #[arg(long, env = "HOOVER_SOURCE")]
    pub source: Option<String>,
    /// A directory to push, as [NAME=]DIR; repeatable
    /// [default: claude=$CLAUDE_CONFIG_DIR/projects or ~/.claude/projects].
    #[arg(long = "root")]
    pub roots: Vec<String>,
    /// Which files to take, as globs relative to each root; repeatable [default: **/*.jsonl].
    #[arg(long = "include")]
    pub includes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub what: RootArgs,
    /// Print one JSON object with the counts on stdout, and nothing else.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub what: RootArgs,
    /// Where to write the agent's state for `hoover status` [default: <data dir>/agent.json].
    #[arg(long, env = "HOOVER_STATUS_FILE")]
    pub status_file: Option<PathBuf>,
    /// Seconds between safety-net full scans.
    #[arg(long, default_value_t = 300)]
    pub rescan_secs: u64,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub what: RootArgs,
    /// The agent's state file [default: <data dir>/agent.json].
    #[arg(long, env = "HOOVER_STATUS_FILE")]
    pub status_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The agent's state file [default: <data dir>/agent.json].
    #[arg(long, env = "HOOVER_STATUS_FILE")]
    pub status_file: Option<PathBuf>,
    /// Print the state as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only keys starting with this prefix.
    #[arg(default_value = "")]
    pub prefix: String,
    /// Print a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VersionsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The file's key, as `hoover ls` shows it.
    pub key: String,
    /// Print a JSON array on stdout, oldest first.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "QUERY syntax:
  words            every word must occur (English stemming: `running` finds `run`)
  \"a phrase\"       the words in this order
  -word            exclude messages with the word
  snake_case_name  identifiers, paths (src/main.rs), flags and error codes match whole
  project:NAME     a path component of the project directory (cwd)
  session:ID       one session
  role:ROLE        user, assistant, summary, system, ...
  tool:NAME        messages calling or answering a tool (Bash, Read, Edit, ...)
  kind:KIND        records of one type: user, assistant, system, summary, and progress,
                   snapshot, queue (Claude Code's bookkeeping, left out unless asked for)
  key:KEY          one stored file
  after:DATE       on or after YYYY-MM-DD (UTC) or an RFC 3339 time
  before:DATE      before that
Secrets (API keys, tokens, private keys, passwords) show as [REDACTED:<kind>] unless the
server runs with --no-redact.")]
pub struct SearchArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to look for (see QUERY syntax below). `-word` excludes a word and is taken as
    /// part of the query, wherever it stands.
    #[arg(required = true, num_args = 1..)]
    pub query: Vec<String>,
    /// Most hits to show.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: u32,
    /// Skip this many hits (for paging).
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    /// Order: relevance, newest or oldest.
    #[arg(long, default_value = "relevance")]
    pub sort: String,
    /// Print {total, hits:[{key, session, uuid, role, timestamp, snippet, ...}]} on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Where a server's store is, for the commands that open it offline (`verify`, `reindex`).
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The server's store directory [default: `store` under [serve] in the config file, else
    /// <data dir>/store].
    #[arg(long, env = "HOOVER_STORE")]
    pub store: Option<PathBuf>,
    /// TOML config file [default: $HOOVER_CONFIG, else <config dir>/config.toml].
    #[arg(long, env = "HOOVER_CONFIG")]
    pub config: Option<PathBuf>,
}

impl StoreArgs {
    /// The store directory, as `hoover serve` finds it: `--store`, else `store` under
    /// `[serve]` in the config file, else `<data dir>/store`.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.store {
            return Ok(crate::config::expand(p));
        }
        let file = crate::config::load(self.config.as_deref())?;
        Ok(crate::config::expand(
            &file.serve.store.clone().unwrap_or_else(|| {
                crate::config::dirs()
                    .map(|d| d.data.join("store"))
                    .unwrap_or_default()
            }),
        ))
    }
}

#[derive(Args, Debug)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Index secrets as they are instead of redacting them.
    #[arg(long)]
    pub no_redact: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A key (with -o), or a key prefix (with --to).
    pub key: String,
    /// Version number to restore (1 is the oldest) [default: the latest].
    #[arg(long = "version", conflicts_with = "at")]
    pub version: Option<u64>,
    /// Restore the newest version modified at or before this time: RFC 3339 (e.g.
    /// 2026-11-20T15:00:00Z), or a date, which means the end of that day in local time.
    #[arg(long)]
    pub at: Option<String>,
    /// Write the file here; `-` writes to stdout.
    #[arg(
        short = 'o',
        long = "output",
        conflicts_with = "to",
        required_unless_present = "to"
    )]
    pub output: Option<PathBuf>,
    /// Restore every file under the prefix into this directory.
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// Overwrite local files that differ from the restored version (with -o or --to).
    #[arg(long)]
    pub force: bool,
    /// Print what was restored as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The command line with `hoover search`'s exclusions (`-word`) made query words. clap would
/// take `-dialyzer` for an unknown flag; here every argument after `search` that is not one of
/// its options (or an option's value) goes after a `--`, in order, so `hoover search credo
/// -dialyzer --json` means the query `credo -dialyzer` and the flag `--json`.
pub fn with_search_words_last(argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    if argv.get(1).and_then(|a| a.to_str()) != Some("search") {
        return argv;
    }
    let cli = Cli::command();
    let Some(search) = cli.find_subcommand("search") else {
        return argv;
    };
    // Each option: its long and short names, and whether a value follows it.
    let options: Vec<(Option<String>, Option<char>, bool)> = search
        .get_arguments()
        .filter(|a| !a.is_positional())
        .map(|a| {
            (
                a.get_long().map(str::to_string),
                a.get_short(),
                a.get_action().takes_values(),
            )
        })
        // clap adds --help when it builds the command.
        .chain([(Some("help".into()), Some('h'), false)])
        .collect();
    let mut out: Vec<std::ffi::OsString> = argv[..2].to_vec();
    let mut words = Vec::new();
    let mut rest = argv.into_iter().skip(2);
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else {
            words.push(arg);
            continue;
        };
        if text == "--" {
            words.extend(rest.by_ref());
            break;
        }
        let option = if let Some(long) = text.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            // An unknown --option stays an option, for clap to refuse with its suggestion.
            let takes = options
                .iter()
                .find(|(l, _, _)| l.as_deref() == Some(name))
                .is_some_and(|o| o.2);
            Some(takes && !long.contains('='))
        } else if let Some(short) = text.strip_prefix('-').and_then(|t| t.chars().next()) {
            let rest_of = &text[1 + short.len_utf8()..];
            options
                .iter()
                .find(|(_, s, _)| *s == Some(short))
                // `-n 5` or `-n5`; `-nothing` is the exclusion of "nothing".
                .filter(|o| {
                    rest_of.is_empty() || (o.2 && rest_of.bytes().all(|b| b.is_ascii_digit()))
                })
                .map(|o| o.2 && rest_of.is_empty())
        } else {
            None
        };
        match option {
            Some(value_follows) => {
                out.push(arg);
                if value_follows {
                    out.extend(rest.next());
                }
            }
            None => words.push(arg),
        }
    }
    if !words.is_empty() {
        out.push("--".into());
        out.extend(words);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(args: &[&str]) -> SearchArgs {
        let argv = ["hoover", "search"]
            .iter()
            .chain(args)
            .map(Into::into)
            .collect();
        match Cli::try_parse_from(with_search_words_last(argv))
            .unwrap()
            .command
        {
            Command::Search(s) => s,
            _ => unreachable!(),
        }
    }

    #[test]
    fn search_takes_exclusions_as_query_words_and_flags_as_flags() {
        let s = search(&["credo", "-dialyzer", "--json"]);
        assert_eq!(s.query, ["credo", "-dialyzer"]);
        assert!(s.json);
        let s = search(&[
            "-n",
            "5",
            "panic",
            "-flaky",
            "project:hoover",
            "--sort",
            "newest",
        ]);
        assert_eq!(s.query, ["panic", "-flaky", "project:hoover"]);
        assert_eq!((s.limit, s.sort.as_str()), (5, "newest"));
        let s = search(&[
            "-nothing",
            "-n5",
            "a",
            "--offset=3",
            "--server",
            "h:1",
            "--",
            "--x",
        ]);
        assert_eq!(s.query, ["-nothing", "a", "--x"]);
        assert_eq!((s.limit, s.offset), (5, 3));
        // Other commands are left alone, and an unknown --option is still refused.
        let argv: Vec<std::ffi::OsString> = ["hoover", "ls", "-x"].iter().map(Into::into).collect();
        assert_eq!(with_search_words_last(argv.clone()), argv);
        let argv = ["hoover", "search", "a", "--jsno"]
            .iter()
            .map(Into::into)
            .collect();
        assert!(Cli::try_parse_from(with_search_words_last(argv)).is_err());
    }
}
