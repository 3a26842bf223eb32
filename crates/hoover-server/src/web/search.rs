//! `/search`: full-text search over the index, a page of hits at a time.

use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;

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
