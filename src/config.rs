//! Settings: built-in defaults < TOML config file < `HOOVER_*` environment < flags.
//! Nothing is written to the user's directories unless a command needs it (keys, state).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The TOML config file. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub server: Option<String>,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub source: Option<String>,
    pub roots: Option<Vec<String>>,
    pub include: Option<Vec<String>>,
    #[serde(default)]
    pub serve: ServeSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    pub store: Option<PathBuf>,
    pub ssh_listen: Option<String>,
    pub http_listen: Option<String>,
    pub authorized_keys: Option<PathBuf>,
    pub host_key: Option<PathBuf>,
    /// `false` turns the search index off.
    pub index: Option<bool>,
    /// The web page's token (see `hoover serve --help`).
    pub http_token: Option<String>,
    /// `false` indexes and shows secrets as they are.
    pub redact: Option<bool>,
    /// Keep an off-site copy at this `s3://BUCKET/PREFIX` (see `hoover serve --help`).
    pub replicate_to: Option<String>,
    /// The S3 endpoint for it.
    pub s3_endpoint: Option<String>,
}

/// Platform directories: config (~/.config/hoover) and data (~/.local/share/hoover) on Linux.
pub struct Dirs {
    pub config: PathBuf,
    pub data: PathBuf,
}

pub fn dirs() -> Result<Dirs> {
    let p = directories::ProjectDirs::from("", "", "hoover")
        .context("cannot find the home directory; set HOME")?;
    Ok(Dirs {
        config: p.config_dir().to_path_buf(),
        data: p.data_dir().to_path_buf(),
    })
}

/// The first line of a config file `hoover up` wrote; `up` rewrites such a file (its ports may
/// change) and leaves any other alone.
pub const UP_MARKER: &str = "# Written by `hoover up`";

/// Writes (or updates) the client settings that reach `hoover up`'s server, so that plain
/// `hoover ls`, `search`, `status` and `doctor` work from another terminal. Returns the file
/// written, or why not (a config file of the user's own, or `$HOOVER_CONFIG` set).
pub fn write_up_client_config(settings: &[(&str, toml::Value)]) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("HOOVER_CONFIG") {
        return Err(format!(
            "$HOOVER_CONFIG names {}, left as it is",
            Path::new(&p).display()
        ));
    }
    let path = dirs()
        .map_err(|e| e.to_string())?
        .config
        .join("config.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.starts_with(UP_MARKER) => {
            return Err(format!("{} is your own, left as it is", path.display()))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let mut text = format!(
        "{UP_MARKER} so that plain `hoover ls`, `search`, `status` and `doctor` reach it.\n\
         # `hoover up` rewrites this file while the line above is here; delete the line to keep\n\
         # your own settings.\n"
    );
    for (name, value) in settings {
        text.push_str(&format!("{name} = {value}\n"));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Loads the config file: `explicit`, else `$HOOVER_CONFIG`, else `<config dir>/config.toml`.
/// A missing default file is no error; a missing explicit one is.
pub fn load(explicit: Option<&Path>) -> Result<ConfigFile> {
    let (path, must_exist) = match (explicit, std::env::var_os("HOOVER_CONFIG")) {
        (Some(p), _) => (p.to_path_buf(), true),
        (None, Some(p)) => (PathBuf::from(p), true),
        (None, None) => (dirs()?.config.join("config.toml"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            Ok(ConfigFile::default())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the config file {}", path.display())),
    }
}

/// Expands a leading `~/`.
pub fn expand(path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~") {
        if let Some(home) = directories::BaseDirs::new() {
            return home.home_dir().join(rest);
        }
    }
    path.to_path_buf()
}

/// The Claude Code projects directory: `$CLAUDE_CONFIG_DIR/projects` or `~/.claude/projects`.
pub fn claude_projects_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CLAUDE_CONFIG_DIR") {
        return Ok(PathBuf::from(dir).join("projects"));
    }
    let home = directories::BaseDirs::new().context("cannot find the home directory; set HOME")?;
    Ok(home.home_dir().join(".claude").join("projects"))
}

/// This machine's name, made safe as a key component.
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::process::Command::new("hostname")
                .arg("-s")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
        })
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('.').to_string();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}
