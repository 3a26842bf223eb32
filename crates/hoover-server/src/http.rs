//! The HTTP listener. For now it answers `GET /healthz`; the web page grows here.

use axum::{routing::get, Json, Router};
use hoover_store::Store;
use serde_json::json;

pub(crate) fn router(store: Store) -> Router {
    Router::new().route(
        "/healthz",
        get(move || {
            let store = store.clone();
            async move {
                let counts = tokio::task::spawn_blocking(move || store.counts()).await;
                match counts {
                    Ok(Ok(c)) => Json(json!({
                        "ok": true,
                        "files": c.files,
                        "versions": c.versions,
                        "chunks": c.chunks,
                    })),
                    _ => Json(json!({ "ok": false })),
                }
            }
        }),
    )
}
