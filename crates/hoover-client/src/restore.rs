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

/// Restores one version into `out`, atomically.
pub async fn restore_file<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    key: &Key,
    seq: u64,
    out: &Path,
) -> Result<VersionInfo> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = out
        .file_name()
        .with_context(|| format!("{} is not a file name", out.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.hoover-partial-{}", std::process::id()));
    let guard = TempGuard(Some(tmp.clone()));
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    let info = remote
        .restore(key, seq, |bytes| {
            file.write_all(bytes)
                .with_context(|| format!("cannot write {}", tmp.display()))
        })
        .await?;
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
    let written = hash_file(&tmp)?;
    if written != Some(info.blake3) {
        bail!(
            "{} does not hash to the version's BLAKE3 after writing; disk trouble?",
            tmp.display()
        );
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot move the restored file to {}", out.display()))?;
    std::mem::forget(guard);
    Ok(info)
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
}

/// Restores every file under `prefix` into `dir`, as it was at `selector`.
pub async fn restore_tree<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    prefix: &str,
    dir: &Path,
    selector: Selector,
    force: bool,
) -> Result<TreeReport> {
    let mut report = TreeReport::default();
    let files = remote.list(prefix).await?;
    let strip = prefix.trim_end_matches('/');
    for f in files {
        let key = f.key.clone();
        let rest = key.as_str()[strip.len()..].trim_start_matches('/');
        let rest = if rest.is_empty() {
            key.as_str().rsplit('/').next().unwrap_or(key.as_str())
        } else {
            rest
        };
        let out = dir.join(rest);
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
        match hash_file(&out)? {
            Some(h) if h == info.blake3 => {
                report.unchanged.push(out.display().to_string());
                continue;
            }
            Some(_) if !force => {
                report.kept_local.push(out.display().to_string());
                continue;
            }
            _ => {}
        }
        restore_file(remote, &key, info.seq, &out).await?;
        report.restored.push(out.display().to_string());
    }
    Ok(report)
}
