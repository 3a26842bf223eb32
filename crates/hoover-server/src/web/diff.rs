//! `/diff/{key}?a=&b=`: what changed between two versions, bounded in size and time.

use super::*;

/// One whole version, checked against its BLAKE3; a missing one is a 404.
async fn read_whole(store: &Store, key: &Key, seq: u64) -> Result<Vec<u8>, PageError> {
    let (store, key) = (store.clone(), key.clone());
    let read = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        store.read_version(&key, seq, &mut out).map(|()| out)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(hoover_store::StoreError::NotFound(m))) => Err(PageError(StatusCode::NOT_FOUND, m)),
        Ok(Err(e)) => Err(PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffPage {
    key: String,
    a: u64,
    b: u64,
    added: usize,
    removed: usize,
    cut: bool,
    /// The comparison ran past its deadline: the changes shown are right but not minimal.
    coarse: bool,
    shown: usize,
    lines: Vec<(&'static str, String)>,
    /// Why no diff is shown (the versions are too large), or empty.
    too_large: String,
}

impl DiffPage {
    fn empty(key: String, a: u64, b: u64) -> DiffPage {
        DiffPage {
            key,
            a,
            b,
            added: 0,
            removed: 0,
            cut: false,
            coarse: false,
            shown: 0,
            lines: Vec::new(),
            too_large: String::new(),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct DiffForm {
    a: u64,
    b: u64,
}

/// The most lines a diff page shows; unchanged runs are folded to three lines of context.
const DIFF_LINES: usize = 5000;

/// The largest pair of versions a diff page compares (their sizes added up); larger ones are
/// downloaded and compared locally.
const DIFF_MAX_BYTES: u64 = 16 << 20;
/// How long one diff may compute; past it `similar` gives a coarser, still correct, diff.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) async fn diff(
    State(web): State<Web>,
    Path(key): Path<String>,
    Query(form): Query<DiffForm>,
) -> Result<Response, PageError> {
    let key = parse_key(&key)?;
    let (a, b) = (form.a, form.b);
    let (store, k) = (web.store.clone(), key.clone());
    let sizes = blocking(move || {
        let size = |seq| -> Result<u64, String> {
            match store.version(&k, seq).map_err(|e| e.to_string())? {
                Some(v) => Ok(v.size),
                None => Err(format!("{k} has no version {seq}")),
            }
        };
        Ok((size(a), size(b)))
    })
    .await?;
    let (size_a, size_b) = match sizes {
        (Ok(x), Ok(y)) => (x, y),
        (Err(m), _) | (_, Err(m)) => return Err(PageError(StatusCode::NOT_FOUND, m)),
    };
    if size_a + size_b > DIFF_MAX_BYTES {
        let view = DiffPage {
            too_large: format!(
                "These two versions come to {} together, more than the {} a diff page compares. Download both and compare them on your machine (diff -u, for example).",
                human_bytes(size_a + size_b),
                human_bytes(DIFF_MAX_BYTES)
            ),
            ..DiffPage::empty(key.to_string(), a, b)
        };
        let mut response = page(view);
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return Ok(response);
    }
    // Reading and comparing run on the blocking pool, a few at a time, so that large diffs
    // never hold up the async runtime (the health check, SSH logins, other pages).
    let _permit = web
        .diffs
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| PageError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let old = read_whole(&web.store, &key, a).await?;
    let new = read_whole(&web.store, &key, b).await?;
    let redact = web.redact;
    let view =
        tokio::task::spawn_blocking(move || diff_view(key.to_string(), a, b, &old, &new, redact))
            .await
            .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(page(view))
}

fn diff_view(key: String, a: u64, b: u64, old: &[u8], new: &[u8], redact: bool) -> DiffPage {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    // Redacted whole, before the comparison: a secret spanning lines (a private key block)
    // is recognised only in the whole text.
    let (old, new) = if redact {
        (
            hoover_index::redact::redact(&old).into_owned(),
            hoover_index::redact::redact(&new).into_owned(),
        )
    } else {
        (old.into_owned(), new.into_owned())
    };
    let started = std::time::Instant::now();
    let diff = similar::TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(old.as_str(), new.as_str());
    let coarse = started.elapsed() >= DIFF_DEADLINE;
    let (mut added, mut removed) = (0, 0);
    let mut lines = Vec::new();
    let mut cut = false;
    for group in diff.grouped_ops(3) {
        for op in group {
            for change in diff.iter_changes(&op) {
                let tag = match change.tag() {
                    similar::ChangeTag::Insert => {
                        added += 1;
                        "add"
                    }
                    similar::ChangeTag::Delete => {
                        removed += 1;
                        "del"
                    }
                    similar::ChangeTag::Equal => "same",
                };
                if lines.len() < DIFF_LINES {
                    let sign = match tag {
                        "add" => '+',
                        "del" => '-',
                        _ => ' ',
                    };
                    let text = change.value().trim_end_matches('\n');
                    lines.push((tag, format!("{sign} {}", head(text, 2000))));
                } else {
                    cut = true;
                }
            }
        }
    }
    DiffPage {
        added,
        removed,
        cut,
        coarse,
        shown: lines.len(),
        lines,
        ..DiffPage::empty(key, a, b)
    }
}
