//! `/sources`: the machines that push: when each was last seen, its files, versions and bytes.

use super::*;

struct SourceRow {
    name: String,
    last_seen: String,
    files: u64,
    versions: u64,
    bytes: String,
}

#[derive(Template)]
#[template(path = "sources.html")]
struct SourcesPage {
    sources: Vec<SourceRow>,
}

pub(crate) async fn sources(State(web): State<Web>) -> Result<Response, PageError> {
    let store = web.store.clone();
    let sources = blocking(move || store.sources().map_err(|e| e.to_string())).await?;
    Ok(page(SourcesPage {
        sources: sources
            .into_iter()
            .map(|s| SourceRow {
                last_seen: ns_to_rfc3339(s.last_received_ns),
                bytes: human_bytes(s.version_bytes),
                name: s.name,
                files: s.files,
                versions: s.versions,
            })
            .collect(),
    }))
}
