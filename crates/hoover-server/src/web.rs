//! The web page: server-rendered askama templates (HTML-escaped by construction) and one small
//! script, behind a strict Content-Security-Policy and, off loopback, a token.
//!
//! Pages: `/` dashboard, `/live` tail, `/search`, `/sessions/{id}`, `/files/{key}` (every
//! version, downloads, diffs), `/sources`. Nothing here loads a whole store: lists come from
//! the index (bounded queries) or one SQL pass.

use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use hoover_index::{Index, SearchRequest, Sort};
use hoover_store::Store;
use hoover_types::{human_bytes, Key};
use serde::Deserialize;

use crate::indexing::Indexer;
use crate::live::LiveFeed;

/// What the pages need.
#[derive(Clone)]
pub(crate) struct Web {
    pub store: Store,
    pub indexer: Option<Indexer>,
    pub live: LiveFeed,
    /// Redact secrets from what pages show (downloads stay byte for byte).
    pub redact: bool,
    pub conns: std::sync::Arc<crate::ConnCounters>,
    /// Diffs computing at once.
    pub diffs: Arc<tokio::sync::Semaphore>,
    /// Most live streams open at once.
    pub max_live_streams: usize,
}

/// How many diff pages compute at once (each holds two versions in memory).
pub(crate) const DIFFS_AT_ONCE: usize = 2;

const CSS: &str = include_str!("../static/app.css");
const JS: &str = include_str!("../static/app.js");

/// Headers on every response: no inline script or style, no framing, no sniffing.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The token check, when the server has one: `Authorization: Bearer TOKEN`, or the
/// `hoover_token` cookie, which `?token=TOKEN` on any page sets (then redirects without it).
/// `/healthz` stays open for monitoring.
pub(crate) async fn require_token(
    State(token): State<Option<Arc<str>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        // Without a token the page is for this machine alone, and the Host header must say
        // so: a DNS-rebinding page (evil.example resolving to 127.0.0.1) is refused.
        return match req.headers().get(header::HOST).map(|h| h.to_str()) {
            None => next.run(req).await,
            Some(Ok(host)) if is_loopback_host(host) => next.run(req).await,
            Some(_) => (
                StatusCode::FORBIDDEN,
                "this hoover page has no token, so it answers only to loopback names (localhost, 127.0.0.1, [::1]); open it by one of them, or give the server --http-token\n",
            )
                .into_response(),
        };
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let same = |given: &str| -> bool {
        use subtle::ConstantTimeEq;
        given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    };
    let query = req.uri().query().unwrap_or("");
    let from_query = Query::<std::collections::HashMap<String, String>>::try_from_uri(req.uri())
        .ok()
        .and_then(|Query(params)| params.get("token").cloned());
    if let Some(given) = from_query {
        if !same(&given) {
            return refuse();
        }
        let rest: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
            .collect();
        // Only ever to a path on this server: `//host/…` would leave it.
        let path = format!("/{}", req.uri().path().trim_start_matches(['/', '\\']));
        let target = if rest.is_empty() {
            path
        } else {
            format!("{path}?{}", rest.join("&"))
        };
        let mut res = Redirect::to(&target).into_response();
        let cookie = format!("hoover_token={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
        return res;
    }
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("hoover_token="));
    if bearer.is_some_and(same) || cookie.is_some_and(same) {
        next.run(req).await
    } else {
        refuse()
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, _)| h).unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn refuse() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "this hoover server needs its token: send `Authorization: Bearer TOKEN`, or open any page once with ?token=TOKEN\n",
    )
        .into_response()
}

pub(crate) async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

pub(crate) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    message: String,
}

fn page(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render: {e}"),
        ),
    }
}

fn error_page(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorPage {
        status: status.as_u16(),
        message: message.into(),
    }
    .render()
    .unwrap_or_else(|_| "error".into());
    (status, Html(body)).into_response()
}

/// A page that could not be made: its status and what to say.
pub(crate) struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(self.0, self.1)
    }
}

fn index_of(web: &Web) -> Result<Index, PageError> {
    Indexer::searchable(web.indexer.as_ref())
        .map_err(|why| PageError(StatusCode::SERVICE_UNAVAILABLE, why))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, PageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PageError(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

fn ns_to_rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(ns as i128)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default()
}

/// A count with thousands separated, as the page's script shows it after a refresh (`3,243`).
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---- the dashboard ----

struct Counter {
    name: &'static str,
    label: &'static str,
    value: String,
}

struct Bar {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    label: String,
}

/// A label under the x axis.
struct Tick {
    x: f64,
    label: String,
}

/// A bar chart over fixed time slots, so one busy hour is one thin bar at its time, not a
/// block across the chart; ticks name the slots' dates, the top of the y axis its maximum.
struct Chart {
    width: u32,
    height: u32,
    /// Height of the plotting area (ticks go below it).
    plot: f64,
    bars: Vec<Bar>,
    ticks: Vec<Tick>,
    max_label: String,
    empty: bool,
}

/// `slots`: each slot's tooltip and value, oldest first; `ticks`: slot index and label.
fn time_chart(slots: &[(String, u64)], ticks: Vec<(usize, String)>, width: u32) -> Chart {
    let height = 140u32;
    let plot = height as f64 - 18.0;
    let max = slots.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let n = slots.len().max(1) as f64;
    let w = width as f64 / n;
    let bars = slots
        .iter()
        .enumerate()
        .filter(|(_, (_, v))| *v > 0)
        .map(|(i, (label, v))| {
            let h = (*v as f64 / max.max(1) as f64) * (plot - 12.0);
            Bar {
                x: i as f64 * w,
                y: plot - h,
                w: (w - 1.0).max(1.0),
                h,
                label: format!("{label}: {}", thousands(*v)),
            }
        })
        .collect();
    Chart {
        width,
        height,
        plot,
        bars,
        ticks: ticks
            .into_iter()
            .map(|(i, label)| Tick {
                x: i as f64 * w,
                label,
            })
            .collect(),
        max_label: thousands(max),
        empty: max == 0,
    }
}

/// Messages per hour over the last seven days (168 slots ending with this hour), a tick at
/// each midnight UTC.
fn hours_chart(per_hour: &[hoover_index::HourCount], now_ms: i64) -> Chart {
    const HOUR: i64 = 3_600_000;
    let last = now_ms.div_euclid(HOUR);
    let first = last - 167;
    let mut counts = vec![0u64; 168];
    for h in per_hour {
        let Ok(t) = h.hour.parse::<jiff::Timestamp>() else {
            continue;
        };
        let slot = t.as_millisecond().div_euclid(HOUR) - first;
        if (0..168).contains(&slot) {
            counts[slot as usize] += h.messages;
        }
    }
    let label = |slot: i64| {
        jiff::Timestamp::from_millisecond((first + slot) * HOUR)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    let slots: Vec<(String, u64)> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| (label(i as i64)[..13].replace('T', " ") + ":00", *n))
        .collect();
    let ticks = (0..168)
        .filter(|i| (first + i).rem_euclid(24) == 0)
        .map(|i| (i as usize, label(i)[5..10].to_string()))
        .collect();
    time_chart(&slots, ticks, 700)
}

/// Tokens per day over the 30 days up to the last day with usage, a tick every five days.
fn days_chart(per_day: &[(String, u64)]) -> (Chart, String) {
    let parse = |d: &str| d.parse::<jiff::civil::Date>().ok();
    let Some(last) = per_day.iter().filter_map(|(d, _)| parse(d)).max() else {
        return (time_chart(&[], Vec::new(), 700), String::new());
    };
    let first = last.checked_sub(jiff::Span::new().days(29)).unwrap_or(last);
    let mut slots: Vec<(String, u64)> = (0..30)
        .map(|i| {
            let d = first
                .checked_add(jiff::Span::new().days(i))
                .unwrap_or(first);
            (d.to_string(), 0)
        })
        .collect();
    for (d, n) in per_day {
        if let Some(date) = parse(d) {
            if let Ok(span) = first.until(date) {
                let i = span.get_days();
                if (0..30).contains(&i) {
                    slots[i as usize].1 += n;
                }
            }
        }
    }
    let ticks = (0..30)
        .step_by(5)
        .map(|i| (i, slots[i].0[5..].to_string()))
        .collect();
    (time_chart(&slots, ticks, 700), last.to_string())
}

/// One cell of the activity heatmap.
struct Cell {
    x: u32,
    y: u32,
    /// 0.0 to 1.0 of the busiest cell.
    level: f64,
    label: String,
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn heatmap(activity: &[Vec<u64>]) -> Vec<Cell> {
    let max = activity.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let mut cells = Vec::new();
    for (d, row) in activity.iter().enumerate() {
        for (h, &n) in row.iter().enumerate() {
            cells.push(Cell {
                x: 40 + h as u32 * 26,
                y: 18 + d as u32 * 20,
                level: if n == 0 {
                    0.0
                } else {
                    0.15 + 0.85 * n as f64 / max
                },
                label: format!("{} {h:02}:00 UTC: {} messages", WEEKDAYS[d], thousands(n)),
            });
        }
    }
    cells
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    counters: Vec<Counter>,
    chart: Chart,
    token_chart: Chart,
    /// The last day the token chart shows.
    token_last: String,
    heatmap: Vec<Cell>,
    weekdays: [&'static str; 7],
    tokens: Vec<TokenRow>,
    prices_as_of: &'static str,
    sessions: Vec<hoover_index::SessionBrief>,
}

/// One row of the token table.
struct TokenRow {
    day: String,
    model: String,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    /// Dollars at list prices, or `-` for a model the price table does not know.
    cost: String,
}

pub(crate) async fn dashboard(State(web): State<Web>) -> Result<Response, PageError> {
    let store = web.store.clone();
    let index = web.indexer.as_ref().and_then(|i| i.index().cloned());
    let (counts, c, sessions) = blocking(move || {
        let counts = store.counts().map_err(|e| e.to_string())?;
        let (counters, sessions) = match &index {
            Some(i) => (
                i.counters(),
                i.recent_sessions(15).map_err(|e| e.to_string())?,
            ),
            None => Default::default(),
        };
        Ok((counts, counters, sessions))
    })
    .await?;
    let dedup = if counts.chunk_stored_bytes > 0 {
        format!(
            "{:.1}x",
            counts.version_bytes as f64 / counts.chunk_stored_bytes as f64
        )
    } else {
        "-".into()
    };
    let counters = vec![
        Counter {
            name: "messages",
            label: "messages",
            value: thousands(c.messages),
        },
        Counter {
            name: "sessions",
            label: "sessions",
            value: thousands(c.sessions),
        },
        Counter {
            name: "projects",
            label: "projects",
            value: thousands(c.projects),
        },
        Counter {
            name: "tool_calls",
            label: "tool calls",
            value: thousands(c.transcripts.tool_calls),
        },
        Counter {
            name: "responses",
            label: "model responses",
            value: thousands(c.transcripts.responses),
        },
        Counter {
            name: "output_tokens",
            label: "output tokens",
            value: thousands(c.transcripts.tokens.output_tokens),
        },
        Counter {
            name: "cost",
            label: "est. cost (models with list prices)",
            value: format!(
                "${:.2}",
                c.tokens_per_day
                    .iter()
                    .filter_map(|t| t.cost_usd)
                    .sum::<f64>()
            ),
        },
        Counter {
            name: "messages_today",
            label: "messages today (UTC)",
            value: thousands(c.messages_today),
        },
        Counter {
            name: "ingest_rate",
            label: "ingest rate",
            value: "-".into(),
        },
        Counter {
            name: "files",
            label: "files",
            value: thousands(counts.files),
        },
        Counter {
            name: "versions",
            label: "versions",
            value: thousands(counts.versions),
        },
        Counter {
            name: "raw_bytes",
            label: "bytes, all versions",
            value: human_bytes(counts.version_bytes),
        },
        Counter {
            name: "stored_bytes",
            label: "bytes stored",
            value: human_bytes(counts.chunk_stored_bytes),
        },
        Counter {
            name: "dedup_ratio",
            label: "kept / stored",
            value: dedup,
        },
    ];
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let mut days: Vec<(String, u64)> = Vec::new();
    for t in &c.tokens_per_day {
        let total = t.input + t.output + t.cache_read + t.cache_write;
        match days.last_mut() {
            Some((d, n)) if *d == t.day => *n += total,
            _ => days.push((t.day.clone(), total)),
        }
    }
    let tokens: Vec<TokenRow> = c
        .tokens_per_day
        .iter()
        .rev()
        .take(30)
        .map(|t| TokenRow {
            day: if t.day.is_empty() {
                "(no date)".into()
            } else {
                t.day.clone()
            },
            model: t.model.clone(),
            input: t.input,
            output: t.output,
            cache_read: t.cache_read,
            cache_write: t.cache_write,
            cost: t
                .cost_usd
                .map(|c| format!("${c:.2}"))
                .unwrap_or_else(|| "-".into()),
        })
        .collect();
    let (token_chart, token_last) = days_chart(&days);
    Ok(page(Dashboard {
        counters,
        chart: hours_chart(&c.messages_per_hour, now_ms),
        token_chart,
        token_last,
        heatmap: heatmap(&c.activity),
        weekdays: WEEKDAYS,
        tokens,
        prices_as_of: c.prices_as_of,
        sessions,
    }))
}

// ---- the live tail ----

/// One row of the live tail; the page's script fills a blank one (the `<template>` the same
/// macro renders) for each new message, so both look the same.
#[derive(Default)]
struct LiveRow {
    truncated: bool,
    id: u64,
    timestamp: String,
    project: String,
    session: String,
    role: String,
    tool: String,
    text: String,
}

#[derive(Template)]
#[template(path = "live.html")]
struct LivePage {
    events: Vec<LiveRow>,
    after: u64,
    blank: LiveRow,
}

pub(crate) async fn live(State(web): State<Web>) -> Response {
    let recent = web.live.recent(200);
    let after = recent.last().map(|e| e.id).unwrap_or(0);
    let events = recent
        .iter()
        .map(|e| {
            let m = &e.message.message;
            LiveRow {
                id: e.id,
                timestamp: m.timestamp.clone(),
                project: m.project.clone().unwrap_or_default(),
                session: m.session.clone().unwrap_or_default(),
                role: m.role.clone(),
                tool: m.tool.clone().unwrap_or_default(),
                text: m.text.clone(),
                truncated: e.message.truncated,
            }
        })
        .collect();
    page(LivePage {
        events,
        after,
        blank: LiveRow::default(),
    })
}

// ---- search ----

struct HitRow {
    key: String,
    session: String,
    uuid: String,
    role: String,
    tool: String,
    project: String,
    timestamp: String,
    line: u64,
    pieces: Vec<(String, bool)>,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    query: String,
    sort: String,
    sorts: Vec<(&'static str, bool)>,
    error: String,
    total: u64,
    first: usize,
    last: usize,
    offset: usize,
    prev: usize,
    next: usize,
    more: bool,
    hits: Vec<HitRow>,
}

#[derive(Deserialize)]
pub(crate) struct SearchForm {
    q: Option<String>,
    sort: Option<String>,
    offset: Option<usize>,
}

const PAGE: usize = 20;

/// The snippet cut into plain and highlighted pieces (the template escapes each).
fn pieces(snippet: &str, ranges: &[[u32; 2]]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut at = 0;
    for [a, b] in ranges.iter().map(|&[a, b]| [a as usize, b as usize]) {
        if a < at
            || b > snippet.len()
            || !snippet.is_char_boundary(a)
            || !snippet.is_char_boundary(b)
        {
            continue;
        }
        if a > at {
            out.push((snippet[at..a].to_string(), false));
        }
        out.push((snippet[a..b].to_string(), true));
        at = b;
    }
    if at < snippet.len() {
        out.push((snippet[at..].to_string(), false));
    }
    out
}

pub(crate) async fn search(
    State(web): State<Web>,
    Query(form): Query<SearchForm>,
) -> Result<Response, PageError> {
    let query = form.q.unwrap_or_default();
    let sort_text = form.sort.unwrap_or_else(|| "relevance".into());
    // Past the window the index refuses; clamping here keeps the page's arithmetic in range.
    let offset = form.offset.unwrap_or(0).min(hoover_index::MAX_WINDOW);
    let mut view = SearchPage {
        query: query.clone(),
        sort: sort_text.clone(),
        sorts: ["relevance", "newest", "oldest"]
            .into_iter()
            .map(|s| (s, s == sort_text))
            .collect(),
        error: String::new(),
        total: 0,
        first: offset + 1,
        last: offset,
        offset,
        prev: offset.saturating_sub(PAGE),
        next: offset + PAGE,
        more: false,
        hits: Vec::new(),
    };
    if query.trim().is_empty() {
        return Ok(page(view));
    }
    let sort: Sort = match sort_text.parse() {
        Ok(s) => s,
        Err(e) => {
            view.error = e;
            return Ok(page(view));
        }
    };
    let index = index_of(&web)?;
    let request = SearchRequest {
        query,
        limit: PAGE,
        offset,
        sort,
    };
    match tokio::task::spawn_blocking(move || index.search(&request)).await {
        Ok(Ok(r)) => {
            view.total = r.total;
            view.last = offset + r.hits.len();
            view.more = (offset + r.hits.len()) < r.total as usize
                && offset + 2 * PAGE <= hoover_index::MAX_WINDOW;
            view.hits = r
                .hits
                .into_iter()
                .map(|h| HitRow {
                    pieces: pieces(&h.snippet, &h.highlights),
                    key: h.key,
                    session: h.session.unwrap_or_default(),
                    uuid: h.uuid.unwrap_or_default(),
                    role: h.role,
                    tool: h.tool.unwrap_or_default(),
                    project: h.project.unwrap_or_default(),
                    timestamp: h.timestamp,
                    line: h.line,
                })
                .collect();
        }
        Ok(Err(e)) => view.error = e.to_string(),
        Err(e) => view.error = e.to_string(),
    }
    Ok(page(view))
}

// ---- a session ----

/// The first `chars` characters of `text`, with an ellipsis when cut.
pub(crate) fn head(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

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

// ---- a file's versions, downloads and diffs ----

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

fn parse_key(key: &str) -> Result<Key, PageError> {
    Key::new(key.to_string())
        .map_err(|e| PageError(StatusCode::BAD_REQUEST, format!("bad key: {e}")))
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

// ---- sources ----

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:80",
            "[::2]:1",
            "",
            "127.0.0.1.evil:1",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn snippets_split_into_plain_and_marked_pieces() {
        assert_eq!(
            pieces("a <b> c", &[[2, 5]]),
            vec![
                ("a ".to_string(), false),
                ("<b>".to_string(), true),
                (" c".to_string(), false)
            ]
        );
    }
}
