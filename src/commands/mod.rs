//! One module per subcommand, plus the connection set-up they share.

pub mod doctor;
pub mod ls;
pub mod recover;
pub mod reindex;
pub mod restore;
pub mod search;
pub mod serve;
pub mod status;
pub mod sync;
pub mod up;
pub mod verify;
pub mod versions;
pub mod watch;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hoover_client::{Connection, ServerAddr};

use crate::cli::ClientArgs;
use crate::config::{self, ConfigFile};

/// Resolved client settings.
pub struct ClientSettings {
    pub server: ServerAddr,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    pub state_dir: PathBuf,
}

pub fn client_settings(args: &ClientArgs, file: &ConfigFile) -> Result<ClientSettings> {
    let dirs = config::dirs()?;
    let server = args
        .server
        .clone()
        .or_else(|| file.server.clone())
        .context("no server given: pass --server [USER@]HOST[:PORT], set HOOVER_SERVER, or put `server = \"...\"` in the config file")?;
    let server = ServerAddr::parse(&server)?;
    let identity = match args.identity.clone().or_else(|| file.identity.clone()) {
        Some(p) => config::expand(&p),
        None => {
            let home = directories::BaseDirs::new().context("cannot find the home directory")?;
            let ssh = home.home_dir().join(".ssh");
            let candidates = [ssh.join("id_ed25519"), ssh.join("id_rsa")];
            match candidates.iter().find(|p| p.exists()) {
                Some(p) => p.clone(),
                None => bail!(
                    "no identity: neither ~/.ssh/id_ed25519 nor ~/.ssh/id_rsa exists; pass --identity FILE \
                     (create one with `ssh-keygen -t ed25519`)"
                ),
            }
        }
    };
    let known_hosts = args
        .known_hosts
        .clone()
        .or_else(|| file.known_hosts.clone())
        .map(|p| config::expand(&p))
        .unwrap_or_else(|| dirs.config.join("known_hosts"));
    Ok(ClientSettings {
        server,
        identity,
        known_hosts,
        state_dir: dirs.data.join("client"),
    })
}

pub async fn connect(settings: &ClientSettings) -> Result<Connection> {
    hoover_client::connect(&settings.server, &settings.identity, &settings.known_hosts).await
}

/// Formats nanoseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(ns as i128)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ns.to_string())
}

/// Parses RFC 3339, or a plain date (midnight UTC), into nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_nanosecond() as i64);
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        // "What I had on the 1st": the end of that day, in this machine's time zone.
        let next = d
            .tomorrow()?
            .to_zoned(jiff::tz::TimeZone::system())?
            .timestamp();
        return Ok(next.as_nanosecond() as i64 - 1);
    }
    bail!("cannot read the time {s:?}: use RFC 3339 like 2026-11-20T15:00:00Z, or a date like 2026-11-20")
}

/// `1 file`, `2 files`: a count with its noun in the right number.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub use hoover_types::human_bytes;

/// Prints one JSON value on stdout, for `--json`.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    use std::io::Write;
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string(value)?
    )?;
    Ok(())
}

/// Text from a transcript, a key or the server, made safe to print on a terminal: control
/// characters (ESC, so no colour, cursor or OSC clipboard sequence; CR; BEL; C1) and the
/// bidirectional overrides that can make text read other than it is, are shown escaped as
/// `\u{1b}` instead of being acted on. Newlines are kept when `lines` is true, else escaped.
pub fn terminal_safe(s: &str, lines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && !(lines && c == '\n')) || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// What a store check found, as `verify` and `recover` report it.
pub struct Checked<'a>(pub &'a hoover_store::VerifyReport);

impl Checked<'_> {
    /// Each problem, for `--json`.
    pub fn problems(&self) -> Vec<String> {
        self.0.problems.iter().map(|p| p.to_string()).collect()
    }

    /// Prints each problem on its own line of stdout, terminal-safe (a problem names a file
    /// key, which a client chose).
    pub fn print_problems(&self) -> Result<()> {
        use std::io::Write;
        let mut out = stdout();
        for p in &self.0.problems {
            writeln!(out, "{}", terminal_safe(&p.to_string(), false))?;
        }
        Ok(())
    }

    /// `clean` when nothing is wrong, else how many problems.
    pub fn verdict(&self, clean: &str) -> String {
        if self.0.is_clean() {
            clean.to_string()
        } else {
            count(self.0.problems.len() as u64, "problem", "problems")
        }
    }

    /// Success when nothing is wrong, 1 otherwise.
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.0.is_clean() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::from(1)
        }
    }
}

/// Prints an error as every command does: `hoover: error: ` and its whole cause chain,
/// terminal-safe (server messages and file names are not the terminal's to act on).
pub fn print_error(e: &anyhow::Error) {
    eprintln!("hoover: error: {}", terminal_safe(&format!("{e:#}"), true));
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard output for what a command prints. A reader that went away (`hoover ls | head`)
/// is not a failure of ours: writes then fail with [`StdoutClosed`], which `main` treats as
/// success. Any other broken pipe, such as a server that died mid-push, stays an error.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

pub struct Stdout(std::io::StdoutLock<'static>);

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

fn closed(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

/// Standard output's reader went away.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether `e` is standard output going away, and nothing else.
pub fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<StdoutClosed>()
            || c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

#[cfg(test)]
mod count_tests {
    use super::*;

    #[test]
    fn counts_and_sizes_read_well() {
        assert_eq!(count(1, "new version", "new versions"), "1 new version");
        assert_eq!(count(0, "file", "files"), "0 files");
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(96_600), "96.6 KB");
        assert_eq!(human_bytes(1_234_567_890), "1.2 GB");
    }
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn terminal_control_sequences_are_shown_not_run() {
        // An OSC 52 clipboard write, a colour, a carriage return over the line, a bell, C1 CSI,
        // and a right-to-left override.
        let hostile = "ok\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{1b}[31mred\rX\u{9b}2J\u{202e}txt.exe";
        let safe = terminal_safe(hostile, false);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe:?}");
        assert_eq!(
            safe,
            "ok\\u{1b}]52;c;cm0gLXJmIH4=\\u{7}\\u{1b}[31mred\\u{d}X\\u{9b}2J\\u{202e}txt.exe"
        );
        assert_eq!(terminal_safe("a\nb", true), "a\nb");
        assert_eq!(terminal_safe("a\nb", false), "a\\u{a}b");
        assert_eq!(terminal_safe("plain – ünïcode", false), "plain – ünïcode");
    }
}
