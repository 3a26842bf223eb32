//! The HTTP listener: `GET /healthz`, `/api/search`, `/api/stats`, `/api/live` (Server-Sent
//! Events) and `/metrics` (Prometheus text). The web page grows here.
//!
//! Connections are bounded: at most `connections` at once (more are closed at accept), each
//! closed when a request's headers take longer than `header_timeout` (slow or idle clients
//! cannot hold a slot), and at most half of them may hold a live stream.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{routing::get, Json, Router};
use hoover_index::{SearchRequest, Sort};
use serde::Deserialize;
use serde_json::json;

use crate::indexing::Indexer;
use crate::live::{LiveEvent, LiveFeed};
use crate::web::{self, Web as App};

/// Bounds on the HTTP side.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub connections: usize,
    pub header_timeout: std::time::Duration,
}

/// Serves `app` on `listener` until `shutdown`, within `bounds`. At shutdown each connection
/// finishes the request at hand for up to two seconds; live streams are ended.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    bounds: Bounds,
    conns: std::sync::Arc<crate::ConnCounters>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use std::sync::atomic::Ordering;
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(bounds.connections));
    let mut tasks = tokio::task::JoinSet::new();
    let refused = |addr| {
        conns.http_refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%addr, "refused an HTTP connection: {} are open", bounds.connections);
    };
    while let Some((stream, addr, permit)) =
        crate::accept_within(&listener, &limit, &shutdown, refused).await
    {
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let (conns, shutdown) = (conns.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _permit = permit;
            conns.http_open.fetch_add(1, Ordering::Relaxed);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(bounds.header_timeout)
                .max_buf_size(64 * 1024);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, "HTTP connection ended: {e}");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn).await;
                }
            }
            conns.http_open.fetch_sub(1, Ordering::Relaxed);
        });
        while tasks.try_join_next().is_some() {}
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), drain).await;
}

/// Every route, behind the token check (when there is a token) and the security headers.
pub(crate) fn router(app: App, token: Option<std::sync::Arc<str>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/search", get(search))
        .route("/api/stats", get(stats))
        .route("/api/live", get(live_events))
        .route("/metrics", get(metrics))
        .route("/", get(web::dashboard))
        .route("/live", get(web::live))
        .route("/search", get(web::search))
        .route("/sessions/{id}", get(web::session))
        .route("/files/{*key}", get(web::file))
        .route("/download/{seq}/{*key}", get(web::download))
        .route("/diff/{*key}", get(web::diff))
        .route("/sources", get(web::sources))
        .route("/static/app.css", get(web::css))
        .route("/static/app.js", get(web::js))
        .with_state(app)
        .layer(axum::middleware::from_fn_with_state(
            token,
            web::require_token,
        ))
        .layer(axum::middleware::from_fn(web::security_headers))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// 200 while the store answers and the index (when kept) is not failing; 503 otherwise, so a
/// monitor or a load balancer sees trouble by the status alone.
async fn healthz(State(app): State<App>) -> Response {
    let store = app.store.clone();
    let counts = match tokio::task::spawn_blocking(move || store.counts()).await {
        Ok(counts) => counts.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let index_error = app.indexer.as_ref().and_then(|i| i.status().error);
    let unavailable = |what: serde_json::Value| (StatusCode::SERVICE_UNAVAILABLE, Json(what));
    match (counts, index_error) {
        (Ok(c), None) => Json(json!({
            "ok": true,
            "files": c.files,
            "versions": c.versions,
            "chunks": c.chunks,
        }))
        .into_response(),
        (Ok(_), Some(index)) => unavailable(json!({ "ok": false, "index": index })).into_response(),
        (Err(store), _) => unavailable(json!({ "ok": false, "store": store })).into_response(),
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

/// The store's totals and size, read off the async runtime; a failure as the response to send.
async fn store_size(app: &App) -> Result<hoover_store::StoreSize, Response> {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || store.size()).await {
        Ok(Ok(size)) => Ok(size),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn stats(State(app): State<App>) -> Response {
    let size = match store_size(&app).await {
        Ok(size) => size,
        Err(response) => return response,
    };
    let index = app
        .indexer
        .as_ref()
        .and_then(|i| i.index().map(|x| x.counters()));
    let status = app.indexer.as_ref().map(|i| i.status());
    let counts = &size.counts;
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
        "pack_bytes": counts.pack_bytes,
        "log_bytes": size.log_bytes,
        "store_bytes": size.store_bytes(),
        "kept_ratio": size.kept_ratio().unwrap_or(0.0),
        "transcripts": index.as_ref().map(|c| &c.transcripts),
        "index": index,
        "indexer": status,
        "copy": app.copy.as_ref().map(|c| c.status()),
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
struct LiveParams {
    /// Resume after this event id (the `Last-Event-ID` header wins).
    after: Option<u64>,
    /// Only messages whose project path contains this.
    project: Option<String>,
    /// Only messages of this role.
    role: Option<String>,
    /// Only messages whose text contains this (case-insensitive).
    q: Option<String>,
}

impl LiveParams {
    fn matches(&self, e: &LiveEvent) -> bool {
        let m = &e.message.message;
        let contains =
            |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        self.project
            .as_deref()
            .is_none_or(|p| m.project.as_deref().is_some_and(|mp| contains(mp, p)))
            && self
                .role
                .as_deref()
                .is_none_or(|r| m.role.eq_ignore_ascii_case(r))
            && self.q.as_deref().is_none_or(|q| contains(&m.text, q))
    }
}

/// `GET /api/live`: each message as it arrives, as one SSE event whose id is the message's
/// feed id and whose data is the message as JSON (`key`, `session`, `uuid`, `role`,
/// `timestamp`, `text`, ...). A reconnect with `Last-Event-ID` (or `?after=`) resumes after
/// that id from the feed's recent events, with no gap and no duplicate.
async fn live_events(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    Query(params): Query<LiveParams>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;

    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(params.after);
    // Each stream holds a connection for as long as the page is open: at most half the
    // connections may, so pages and the API still load.
    let open = app
        .conns
        .live_streams
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let slot = LiveSlot(app.conns.clone());
    if open as usize >= app.max_live_streams {
        drop(slot);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{open} live streams are open, the most this server serves; close a live page and retry"
            ),
        );
    }
    let (backlog, rx) = app.live.subscribe(after);
    struct Cursor {
        pending: std::collections::VecDeque<std::sync::Arc<LiveEvent>>,
        rx: tokio::sync::broadcast::Receiver<std::sync::Arc<LiveEvent>>,
        last: u64,
        feed: LiveFeed,
        params: LiveParams,
        _slot: LiveSlot,
    }
    let cursor = Cursor {
        pending: backlog.into(),
        rx,
        last: after.unwrap_or(0),
        feed: app.live.clone(),
        params,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.pending.pop_front() {
                if e.id <= c.last {
                    continue;
                }
                c.last = e.id;
                if !c.params.matches(&e) {
                    continue;
                }
                let event = Event::default().id(e.id.to_string()).data(e.json.clone());
                return Some((Ok::<_, std::convert::Infallible>(event), c));
            }
            match c.rx.recv().await {
                Ok(e) => c.pending.push_back(e),
                // Fell behind the broadcast: take what was missed from the feed's ring.
                Err(RecvError::Lagged(_)) => c.pending.extend(c.feed.since(c.last)),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A live stream's place in the count; given back when the stream ends.
struct LiveSlot(std::sync::Arc<crate::ConnCounters>);

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0
            .live_streams
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `GET /metrics`: the store's and the index's counters in Prometheus text format.
async fn metrics(State(app): State<App>) -> Response {
    let size = match store_size(&app).await {
        Ok(size) => size,
        Err(response) => return response,
    };
    let counts = &size.counts;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: u64| {
        out.push_str(&format!(
            "# HELP hoover_{name} {help}\n# TYPE hoover_{name} {kind}\nhoover_{name} {value}\n"
        ));
    };
    metric("files", "Files stored.", "gauge", counts.files);
    metric(
        "versions_total",
        "Versions stored.",
        "counter",
        counts.versions,
    );
    metric("chunks", "Distinct chunks stored.", "gauge", counts.chunks);
    metric(
        "version_bytes",
        "Sizes of every version added up.",
        "gauge",
        counts.version_bytes,
    );
    metric(
        "stored_bytes",
        "Compressed bytes of the distinct chunks.",
        "gauge",
        counts.chunk_stored_bytes,
    );
    metric(
        "pack_bytes",
        "Bytes of the pack files: the chunks' frames and their records.",
        "gauge",
        counts.pack_bytes,
    );
    metric(
        "log_bytes",
        "Bytes of the version log (versions.db and its write-ahead log).",
        "gauge",
        size.log_bytes,
    );
    let c = &app.conns;
    for (name, help, kind, value) in [
        (
            "ssh_connections",
            "SSH connections open now.",
            "gauge",
            &c.open,
        ),
        (
            "ssh_connections_refused_total",
            "SSH connections refused because --max-connections were open.",
            "counter",
            &c.refused,
        ),
        (
            "ssh_connections_refused_preauth_total",
            "SSH connections refused because their address had too many logging in at once.",
            "counter",
            &c.refused_preauth,
        ),
        (
            "http_connections",
            "HTTP connections open now.",
            "gauge",
            &c.http_open,
        ),
        (
            "http_connections_refused_total",
            "HTTP connections refused because --max-http-connections were open.",
            "counter",
            &c.http_refused,
        ),
        (
            "live_streams",
            "Live streams (/api/live) open now.",
            "gauge",
            &c.live_streams,
        ),
        (
            "ssh_connections_timed_out_total",
            "SSH connections closed for not logging in in time or for stalling.",
            "counter",
            &c.timed_out,
        ),
    ] {
        metric(
            name,
            help,
            kind,
            value.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    if let Some(copy) = app.copy.as_ref().map(|c| c.status()) {
        metric(
            "copy_packs_behind",
            "Packs with committed bytes the off-site copy does not hold yet.",
            "gauge",
            copy.packs_behind,
        );
        metric(
            "copy_bytes_behind",
            "Committed pack bytes the off-site copy does not hold yet.",
            "gauge",
            copy.bytes_behind,
        );
        metric(
            "copy_bytes_total",
            "Pack bytes uploaded to the off-site copy since the server started.",
            "counter",
            copy.bytes_copied,
        );
        let now = jiff::Timestamp::now().as_nanosecond() as i64;
        metric(
            "copy_snapshot_age_seconds",
            "Seconds since the newest snapshot of the version log in the off-site copy was taken.",
            "gauge",
            copy.snapshot_ns
                .map_or(u64::MAX, |ns| ((now - ns).max(0) / 1_000_000_000) as u64),
        );
        metric(
            "copy_snapshot_milliseconds",
            "How long the last snapshot of the version log took (taken, compressed, uploaded); the next waits at least nine times as long.",
            "gauge",
            copy.snapshot_seconds.map_or(0, |s| (s * 1000.0) as u64),
        );
        metric(
            "copy_failing",
            "1 while the off-site copy cannot be reached or written.",
            "gauge",
            copy.error.is_some() as u64,
        );
    }
    if let Some(index) = app.indexer.as_ref().and_then(|i| i.index()) {
        let c = index.counters();
        metric("messages", "Messages indexed.", "gauge", c.messages);
        metric("sessions", "Sessions seen.", "gauge", c.sessions);
        metric("projects", "Projects seen.", "gauge", c.projects);
        metric(
            "malformed_lines_total",
            "Lines skipped as malformed.",
            "counter",
            c.malformed_lines,
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
