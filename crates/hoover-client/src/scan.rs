//! Roots and scanning: which local files exist, and under which keys.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use hoover_types::Key;

/// A watched directory and the name it goes by in keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    pub name: String,
    pub dir: PathBuf,
}

impl Root {
    /// Parses `[NAME=]DIR`; the name defaults to the directory's last component.
    pub fn parse(s: &str) -> Result<Root> {
        let (name, dir) = match s.split_once('=') {
            Some((n, d)) if !n.is_empty() && !n.contains('/') => (n.to_string(), PathBuf::from(d)),
            _ => {
                let dir = PathBuf::from(s);
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .with_context(|| format!("cannot name the root {s:?}; write it as NAME=DIR"))?;
                (name, dir)
            }
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            bail!("bad root name {name:?} in {s:?}: use letters, digits, '-' or '_'");
        }
        Ok(Root { name, dir })
    }
}

/// The include patterns, matched against the path relative to the root.
#[derive(Clone)]
pub struct Includes(GlobSet);

impl Includes {
    pub fn new(patterns: &[String]) -> Result<Includes> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(Glob::new(p).with_context(|| format!("bad --include pattern {p:?}"))?);
        }
        Ok(Includes(builder.build()?))
    }

    pub fn matches(&self, relative: &Path) -> bool {
        self.0.is_match(relative)
    }
}

/// The key of the file at `relative` under `root`: `<source>/<root name>/<relative path>`,
/// with `/` separators. Refused when the path is not UTF-8 or does not make a valid key.
pub fn key_for(source: &str, root: &Root, relative: &Path) -> Result<Key, String> {
    let rel = relative
        .to_str()
        .ok_or_else(|| "not valid UTF-8".to_string())?
        .replace(std::path::MAIN_SEPARATOR, "/");
    Key::new(format!("{source}/{}/{rel}", root.name)).map_err(|e| e.to_string())
}

/// Opens a regular file to read, never through a symbolic link: a link at the last component
/// fails to open (`O_NOFOLLOW`), and anything but a regular file is refused, so a link made
/// between a check and the read cannot make hoover read the file it points to.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// The first symbolic link met walking `relative` down from `root` (the root itself may be a
/// link, as the user chose it), stopping at the first component that does not exist.
pub fn first_link_below(root: &Path, relative: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut at = root.to_path_buf();
    for part in relative.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Ok(Some(at)),
            Ok(_) => {}
            // Gone: nothing below it is reached through a link.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Whether `path` lies under `root` through real directories only, with no symbolic link at
/// any component below the root.
pub fn no_links_below(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    // A component that cannot be inspected is not one anything is read through.
    !matches!(first_link_below(root, relative), Ok(Some(_)))
}

/// One file found by a scan.
#[derive(Clone, Debug)]
pub struct Found {
    pub key: Key,
    pub path: PathBuf,
}

/// Walks every root and returns the included regular files, with their keys, sorted by key.
/// Unreadable directories and files with names that cannot be keys are reported and skipped.
pub fn scan(source: &str, roots: &[Root], includes: &Includes) -> (Vec<Found>, Vec<String>) {
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    for root in roots {
        if !root.dir.is_dir() {
            warnings.push(format!(
                "root {} ({}) is not a directory; skipped",
                root.name,
                root.dir.display()
            ));
            continue;
        }
        for entry in walkdir::WalkDir::new(&root.dir).follow_links(false) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    warnings.push(format!("cannot read {e}; skipped"));
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(relative) = entry.path().strip_prefix(&root.dir) else {
                continue;
            };
            if !includes.matches(relative) {
                continue;
            }
            match key_for(source, root, relative) {
                Ok(key) => found.push(Found {
                    key,
                    path: entry.path().to_path_buf(),
                }),
                Err(e) => warnings.push(format!("{}: {e}; skipped", entry.path().display())),
            }
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    (found, warnings)
}
