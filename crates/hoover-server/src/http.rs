//! The HTTP listener: `GET /healthz`, `GET /api/search`, `GET /api/stats`. The web page grows
//! here.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{routing::get, Json, Router};
use hoover_index::{SearchRequest, Sort};
use hoover_store::Store;
use serde::Deserialize;
use serde_json::json;

use crate::indexing::Indexer;

#[derive(Clone)]
struct App {
    store: Store,
    indexer: Option<Indexer>,
}

pub(crate) fn router(store: Store, indexer: Option<Indexer>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/search", get(search))
        .route("/api/stats", get(stats))
        .with_state(App { store, indexer })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn healthz(State(app): State<App>) -> Json<serde_json::Value> {
    let store = app.store.clone();
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

#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    sort: Option<String>,
}

async fn search(State(app): State<App>, Query(p): Query<SearchParams>) -> Response {
    let index = match Indexer::searchable(app.indexer.as_ref()) {
        Ok(index) => index,
        Err(why) => return error(StatusCode::SERVICE_UNAVAILABLE, why),
    };
    let sort: Sort = match p.sort.as_deref().unwrap_or("relevance").parse() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let request = SearchRequest {
        query: p.q.unwrap_or_default(),
        limit: p.limit.unwrap_or(20),
        offset: p.offset.unwrap_or(0),
        sort,
    };
    match tokio::task::spawn_blocking(move || index.search(&request)).await {
        Ok(Ok(results)) => Json(results).into_response(),
        Ok(Err(hoover_index::IndexError::Query(m))) => error(StatusCode::BAD_REQUEST, m),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn stats(State(app): State<App>) -> Response {
    let store = app.store.clone();
    let counts = match tokio::task::spawn_blocking(move || store.counts()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let index = app
        .indexer
        .as_ref()
        .and_then(|i| i.index().map(|x| x.counters()));
    let status = app.indexer.as_ref().map(|i| i.status());
    let dedup = if counts.chunk_stored_bytes > 0 {
        counts.version_bytes as f64 / counts.chunk_stored_bytes as f64
    } else {
        0.0
    };
    Json(json!({
        "files": counts.files,
        "versions": counts.versions,
        "chunks": counts.chunks,
        "raw_bytes": counts.version_bytes,
        "latest_bytes": counts.latest_bytes,
        "unique_bytes": counts.chunk_raw_bytes,
        "stored_bytes": counts.chunk_stored_bytes,
        "dedup_ratio": dedup,
        "index": index,
        "indexer": status,
    }))
    .into_response()
}
