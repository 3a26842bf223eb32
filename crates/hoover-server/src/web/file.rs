//! `/files/{key}`: a file's versions; `/download/{seq}/{key}`: one version, byte for byte.

use super::*;

struct VersionRow {
    seq: u64,
    received: String,
    mtime: String,
    size: u64,
    change: String,
    hash: String,
    deleted: String,
}

#[derive(Template)]
#[template(path = "file.html")]
struct FilePage {
    key: String,
    versions: Vec<VersionRow>,
    diff_a: u64,
    diff_b: u64,
}

pub(crate) async fn file(
    State(web): State<Web>,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let key = parse_key(&key)?;
    let store = web.store.clone();
    let k = key.clone();
    let (versions, deletions, changes) = blocking(move || {
        let versions = store.versions(&k).map_err(|e| e.to_string())?;
        let deletions = store.deletions(&k).map_err(|e| e.to_string())?;
        let changes = changes(&store, &k, &versions).map_err(|e| e.to_string())?;
        Ok((versions, deletions, changes))
    })
    .await?;
    if versions.is_empty() {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            format!("the server has no file {key}"),
        ));
    }
    let rows = versions
        .iter()
        .zip(changes)
        .map(|(v, change)| VersionRow {
            seq: v.seq,
            received: ns_to_rfc3339(v.received_at_ns),
            mtime: ns_to_rfc3339(v.mtime_ns),
            size: v.size,
            change,
            hash: hex::encode(&v.blake3[..8]),
            deleted: deletions
                .iter()
                .find(|d| d.after_seq == v.seq)
                .map(|d| ns_to_rfc3339(d.at_ns))
                .unwrap_or_default(),
        })
        .collect::<Vec<_>>();
    let last = versions.last().map(|v| v.seq).unwrap_or(1);
    Ok(page(FilePage {
        key: key.to_string(),
        versions: rows,
        diff_a: last.saturating_sub(1).max(1),
        diff_b: last,
    }))
}

/// Versions whose change is described line by line: the newest ones.
const LINE_COUNTED: usize = 200;

/// What each version changed: lines added for an append (only the appended bytes are read),
/// else the size change.
fn changes(
    store: &Store,
    key: &Key,
    versions: &[hoover_types::VersionInfo],
) -> Result<Vec<String>, hoover_store::StoreError> {
    let counted_from = versions.len().saturating_sub(LINE_COUNTED);
    let mut out = Vec::with_capacity(versions.len());
    for (i, v) in versions.iter().enumerate() {
        let Some(prev) = i.checked_sub(1).map(|p| &versions[p]) else {
            out.push("new".to_string());
            continue;
        };
        let bytes = if v.size >= prev.size {
            format!("+{} bytes", v.size - prev.size)
        } else {
            format!("−{} bytes", prev.size - v.size)
        };
        let counted = i >= counted_from && v.size >= prev.size;
        if !(counted && store.extends_previous(key, v.seq, prev.size)?) {
            out.push(if counted {
                format!("rewritten, {bytes}")
            } else {
                bytes
            });
            continue;
        }
        let mut lines = 0u64;
        for piece in store.read_range(key, v.seq, prev.size, None)? {
            lines += piece?.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        let noun = if lines == 1 { "line" } else { "lines" };
        out.push(format!("+{lines} {noun} ({bytes})"));
    }
    Ok(out)
}

/// `GET /download/{seq}/{*key}`: one version, byte for byte, streamed chunk by chunk (memory
/// stays at a few chunks whatever the file's size). The whole is checked against its BLAKE3
/// as it streams; on a mismatch the body ends early, short of its Content-Length, so no client
/// takes it for complete.
pub(crate) async fn download(
    State(web): State<Web>,
    Path((seq, key)): Path<(u64, String)>,
) -> Result<Response, PageError> {
    let key = parse_key(&key)?;
    let (store, k) = (web.store.clone(), key.clone());
    let info = blocking(move || store.version(&k, seq).map_err(|e| e.to_string()))
        .await?
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("{key} has no version {seq}")))?;
    let name = key.as_str().rsplit('/').next().unwrap_or("file").replace(
        |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-' && c != '_',
        "_",
    );
    let disposition = format!("attachment; filename=\"v{seq}-{name}\"");
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let store = web.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        // The last piece goes only after the whole was checked against its BLAKE3.
        let result = store
            .read_version(&key, seq, &mut out)
            .map_err(|e| e.to_string())
            .and_then(|()| out.flush_buf().map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::warn!(%key, seq, "download cut short: {e}");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::CONTENT_LENGTH, info.size)
        .body(Body::from_stream(stream))
        .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Hands what is written to an HTTP body in pieces of about 256 KiB, waiting while the
/// reader is behind. A gone reader (a closed download) ends the writing.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

const DOWNLOAD_PIECE: usize = 256 * 1024;

impl ChannelWriter {
    fn flush_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "download closed"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= DOWNLOAD_PIECE {
            self.flush_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
