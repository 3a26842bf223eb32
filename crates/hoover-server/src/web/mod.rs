//! The web page: server-rendered askama templates (HTML-escaped by construction) and one small
//! script, behind a strict Content-Security-Policy and, off loopback, a token.
//!
//! Pages: `/` dashboard, `/live` tail, `/search`, `/sessions/{id}`, `/files/{key}` (every
//! version, downloads, diffs), `/sources`. Nothing here loads a whole store: lists come from
//! the index (bounded queries) or one SQL pass. One module per page (`dashboard`, `tail`,
//! `search`, `session`, `file`, `diff`, `sources`); this one holds what they share: the
//! middleware, the static files, error pages and formatting.

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

mod dashboard;
mod diff;
mod file;
mod search;
mod session;
mod sources;
mod tail;

pub(crate) use dashboard::dashboard;
pub(crate) use diff::diff;
pub(crate) use file::{download, file};
pub(crate) use search::search;
pub(crate) use session::session;
pub(crate) use sources::sources;
pub(crate) use tail::live;

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
    /// The off-site copy, when the server keeps one.
    pub copy: Option<hoover_replica::Replicator>,
}

/// How many diff pages compute at once (each holds two versions in memory).
pub(crate) const DIFFS_AT_ONCE: usize = 2;

const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");

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

/// The first `chars` characters of `text`, with an ellipsis when cut.
pub(crate) fn head(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn parse_key(key: &str) -> Result<Key, PageError> {
    Key::new(key.to_string())
        .map_err(|e| PageError(StatusCode::BAD_REQUEST, format!("bad key: {e}")))
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
}
