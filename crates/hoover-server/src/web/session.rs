//! `/sessions/{id}`: a session read as a conversation.

use super::*;

#[derive(Template)]
#[template(path = "session.html")]
struct SessionPage {
    session: String,
    project: String,
    /// The session's own file.
    keys: Vec<String>,
    /// Its other files: resumed copies, subagents.
    more: Vec<String>,
    counts: crate::transcript::Counts,
    all: bool,
    /// The conversation, rendered (and escaped) by `transcript::render`.
    body: String,
}

/// The most bytes of transcript (the session's files together) one page reads; a larger
/// session is downloaded file by file.
const SESSION_MAX_BYTES: u64 = 128 << 20;

#[derive(Deserialize, Default)]
pub(crate) struct SessionParams {
    /// `1`: show every record (progress, snapshots, queue operations) too.
    all: Option<String>,
}

/// `GET /sessions/{id}`: the session read from the store (its files' latest versions, its
/// subagents' too), in conversation order. The index only says which files hold it.
pub(crate) async fn session(
    State(web): State<Web>,
    Path(id): Path<String>,
    Query(params): Query<SessionParams>,
) -> Result<Response, PageError> {
    let index = index_of(&web)?;
    let sid = id.clone();
    let keys = blocking(move || index.session_keys(&sid).map_err(|e| e.to_string())).await?;
    if keys.is_empty() {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            format!("no session {id} in the index"),
        ));
    }
    let all = params.all.as_deref() == Some("1");
    let redact = web.redact;
    let store = web.store.clone();
    let read_keys = keys.clone();
    let (body, counts) = blocking(move || {
        let started = std::time::Instant::now();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut total = 0u64;
        for k in &read_keys {
            let key = Key::new(k.clone()).map_err(|e| e.to_string())?;
            let Some(v) = store.latest(&key).map_err(|e| e.to_string())? else {
                continue;
            };
            total += v.size;
            if total > SESSION_MAX_BYTES {
                return Err(format!(
                    "this session's files hold more than {} MB: download them from their file pages",
                    SESSION_MAX_BYTES >> 20
                ));
            }
            let mut bytes = Vec::with_capacity(v.size as usize);
            store
                .read_version(&key, v.seq, &mut bytes)
                .map_err(|e| e.to_string())?;
            files.push((k.clone(), bytes));
        }
        let refs: Vec<hoover_transcript::session::File<'_>> = files
            .iter()
            .map(|(key, bytes)| hoover_transcript::session::File { key, bytes })
            .collect();
        let read = started.elapsed();
        let mut session = hoover_transcript::session::build(&refs);
        let built = started.elapsed();
        if redact {
            crate::transcript::redact(&mut session);
        }
        let redacted = started.elapsed();
        let keys: Vec<String> = files.iter().map(|(k, _)| k.clone()).collect();
        let page = crate::transcript::render(&session, &keys, crate::transcript::Options { all });
        tracing::debug!(
            "session page: {total} bytes in {} files read in {read:?}, built by {built:?}, redacted by {redacted:?}, {} bytes rendered by {:?}",
            files.len(),
            page.0.len(),
            started.elapsed()
        );
        Ok(page)
    })
    .await?;
    let project = keys
        .first()
        .and_then(|k| hoover_index::project_of_key(k))
        .unwrap_or("")
        .to_string();
    // The session's own file first, then its subagents'.
    let (own, agents): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| {
        let name = k.rsplit('/').next().unwrap_or(k);
        !name.starts_with("agent-") && !k.contains("/subagents/")
    });
    let mut files = own.into_iter().chain(agents);
    let first: Vec<String> = files.next().into_iter().collect();
    let more: Vec<String> = files.collect();
    Ok(page(SessionPage {
        session: id,
        project,
        keys: first,
        more,
        counts,
        all,
        body,
    }))
}
