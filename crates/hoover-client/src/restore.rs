//! Restore: one version to a file or stdout, or a whole tree as it was at a time. Output files
//! are written beside their destination under a temporary name and renamed into place only
//! after the content's BLAKE3 matched, so a failed restore never leaves a partial file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hoover_types::{Key, VersionInfo};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::remote::Remote;

/// Which version to restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector {
    Latest,
    /// Version number, 1-based.
    Seq(u64),
    /// The newest version whose source mtime is at or before this time (ns since the epoch).
    At(i64),
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Latest => write!(f, "latest version"),
            Selector::Seq(n) => write!(f, "version {n}"),
            Selector::At(ns) => match jiff::Timestamp::from_nanosecond(i128::from(*ns)) {
                Ok(t) => write!(f, "version modified at or before {t}"),
                Err(_) => write!(f, "version modified at or before {ns} ns"),
            },
        }
    }
}

/// Picks a version from a list sorted oldest first.
pub fn pick(versions: &[VersionInfo], selector: Selector) -> Option<&VersionInfo> {
    match selector {
        Selector::Latest => versions.last(),
        Selector::Seq(n) => versions.iter().find(|v| v.seq == n),
        Selector::At(t) => versions.iter().rev().find(|v| v.mtime_ns <= t),
    }
}

/// Removes a temporary file unless it was kept.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A short temporary name in `dir`, so that it stays within the file-name limit however long
/// the final name is (255 bytes on most file systems).
fn temp_path(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".hoover-{}-{n}.part", std::process::id()))
}

/// Creates a file that did not exist (never opens one planted in its place), readable only by
/// its owner.
fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Restores one version into `out`, atomically.
pub async fn restore_file<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    key: &Key,
    seq: u64,
    out: &Path,
) -> Result<VersionInfo> {
    restore_into(remote, key, seq, out).await?
}

/// Restores one version into `out`. The outer error is the connection's (the session cannot
/// go on); the inner one is this file's alone (a local path that cannot be written), after
/// which the connection is still in step and other files can be restored.
async fn restore_into<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    key: &Key,
    seq: u64,
    out: &Path,
) -> Result<Result<VersionInfo>> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if out.file_name().is_none() {
        return Ok(Err(anyhow::anyhow!("{} is not a file name", out.display())));
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Ok(Err(
            anyhow::Error::new(e).context(format!("cannot create {}", dir.display()))
        ));
    }
    let tmp = temp_path(&dir);
    let guard = TempGuard(Some(tmp.clone()));
    let file = match create_new_private(&tmp) {
        Ok(f) => f,
        Err(e) => {
            return Ok(Err(
                anyhow::Error::new(e).context(format!("cannot create {}", tmp.display()))
            ))
        }
    };
    let mut file = std::io::BufWriter::new(file);
    // A write error is this file's: the rest of the version is read and dropped, so the
    // connection stays in step.
    let mut write_error: Option<std::io::Error> = None;
    let info = remote
        .restore(key, seq, |bytes| {
            if write_error.is_none() {
                if let Err(e) = file.write_all(bytes) {
                    write_error = Some(e);
                }
            }
            Ok(())
        })
        .await?;
    Ok(finish(file, write_error, &tmp, out, &info).map(|()| {
        std::mem::forget(guard);
        info
    }))
}

/// Flushes, dates, checks and renames a restored temporary file into place.
fn finish(
    file: std::io::BufWriter<std::fs::File>,
    write_error: Option<std::io::Error>,
    tmp: &Path,
    out: &Path,
    info: &VersionInfo,
) -> Result<()> {
    if let Some(e) = write_error {
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    let file = file
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    if info.mtime_ns > 0 {
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(info.mtime_ns as u64);
        let _ = file.set_modified(mtime);
    }
    file.sync_all()
        .with_context(|| format!("cannot flush {}", tmp.display()))?;
    drop(file);
    // The chunks and the whole content were verified while streaming; check what landed on disk.
    let written = hash_file(tmp)?;
    if written != Some(info.blake3) {
        bail!(
            "{} does not hash to the version's BLAKE3 after writing; disk trouble?",
            tmp.display()
        );
    }
    std::fs::rename(tmp, out)
        .with_context(|| format!("cannot move the restored file to {}", out.display()))
}

/// Restores one version to a stream (standard output). The content is verified as it
/// streams; on a mismatch the error comes after the bytes were written, and the exit status
/// says so.
pub async fn restore_stdout<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    key: &Key,
    seq: u64,
    out: &mut impl Write,
) -> Result<VersionInfo> {
    let info = remote
        .restore(key, seq, |bytes| {
            out.write_all(bytes).context("cannot write to stdout")
        })
        .await?;
    out.flush()?;
    Ok(info)
}

/// BLAKE3 of a local file, or `None` when it does not exist.
pub fn hash_file(path: &Path) -> Result<Option<[u8; 32]>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(*hasher.finalize().as_bytes()))
}

/// What a tree restore did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TreeReport {
    pub restored: Vec<String>,
    pub unchanged: Vec<String>,
    /// Local files that differ from the chosen version and were left alone (no `--force`).
    pub kept_local: Vec<String>,
    /// Keys with no version at or before the chosen time.
    pub not_yet: Vec<String>,
    /// Keys that were not restored, each with why (a path that would leave the target, a
    /// symbolic link in the way, a file that could not be written).
    pub skipped: Vec<Skipped>,
}

/// A key a tree restore left out, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub key: String,
    pub reason: String,
}

/// The part of `key` under `prefix`, matched by whole components: `key == prefix` (then the
/// file's own name) or `key` starts with `prefix/`. `None` for keys outside the prefix, such
/// as `src/claude../x` under `src/claude`.
pub fn relative_to_prefix<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return Some(key);
    }
    if key == prefix {
        return key.rsplit('/').next();
    }
    key.strip_prefix(prefix)?.strip_prefix('/')
}

/// Where `rest` (a key's part under the prefix) is written inside `dir`, checked to stay
/// there: only plain components (no `..`, no root, no drive), and no existing symbolic link
/// on the way or at the end, so nothing is written through a link that points elsewhere.
pub fn contained_path(dir: &Path, rest: &str) -> std::result::Result<PathBuf, String> {
    use std::path::Component;
    let relative = Path::new(rest);
    if rest.is_empty()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{rest:?} is not a plain relative path; it would leave {}",
            dir.display()
        ));
    }
    match crate::scan::first_link_below(dir, relative) {
        Ok(None) => Ok(dir.join(relative)),
        Ok(Some(link)) => Err(format!(
            "{} is a symbolic link; hoover does not restore through links",
            link.display()
        )),
        Err(e) => Err(format!(
            "cannot inspect {}: {e}",
            dir.join(relative).display()
        )),
    }
}

/// Restores every file under `prefix` (whole components) into `dir`, as it was at `selector`.
/// A key whose path would leave `dir`, or that cannot be written, is skipped with its reason;
/// the rest of the tree is restored.
pub async fn restore_tree<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    prefix: &str,
    dir: &Path,
    selector: Selector,
    force: bool,
) -> Result<TreeReport> {
    let mut report = TreeReport::default();
    let files = remote.list(prefix).await?;
    for f in files {
        let key = f.key.clone();
        let Some(rest) = relative_to_prefix(key.as_str(), prefix) else {
            continue;
        };
        let out = match contained_path(dir, rest) {
            Ok(out) => out,
            Err(reason) => {
                report.skipped.push(Skipped {
                    key: key.to_string(),
                    reason,
                });
                continue;
            }
        };
        let info = match selector {
            Selector::Latest => f.latest.clone(),
            _ => {
                let versions = remote.versions(&key).await?;
                match pick(&versions, selector) {
                    Some(v) => v.clone(),
                    None => {
                        report.not_yet.push(key.to_string());
                        continue;
                    }
                }
            }
        };
        match hash_file(&out) {
            Ok(Some(h)) if h == info.blake3 => {
                report.unchanged.push(out.display().to_string());
                continue;
            }
            Ok(Some(_)) if !force => {
                report.kept_local.push(out.display().to_string());
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                report.skipped.push(Skipped {
                    key: key.to_string(),
                    reason: format!("{e:#}"),
                });
                continue;
            }
        }
        match restore_into(remote, &key, info.seq, &out).await? {
            Ok(_) => report.restored.push(out.display().to_string()),
            Err(e) => report.skipped.push(Skipped {
                key: key.to_string(),
                reason: format!("{e:#}"),
            }),
        }
    }
    Ok(report)
}
