//! The transcript page's body: a session read from the store
//! ([`hoover_transcript::session`]) as HTML.
//!
//! Everything from a transcript is escaped: Markdown's raw HTML becomes text, links keep only
//! `http`, `https` and `mailto` targets (with `rel="noopener noreferrer nofollow"`), Markdown
//! images become their alt text (the page loads nothing from elsewhere), and pasted images are
//! `data:` thumbnails of an image type, their base64 checked. A subagent's conversation is in
//! the page (folded), so find-in-page finds its text.

use std::fmt::Write as _;

use hoover_transcript::session::{
    Block, Conversation, Image, Item, ItemKind, Session, ToolCall, ToolResult,
};
use serde_json::Value;

/// The most bytes of one text (a result, a file's content, a message) the page shows.
const TEXT_MAX: usize = 64 * 1024;

/// What the reader asked for.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    /// Show progress, snapshots, queue operations and other bookkeeping too.
    pub all: bool,
}

/// Counts for the page's header.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counts {
    pub prompts: u64,
    pub responses: u64,
    pub tool_calls: u64,
    pub subagents: u64,
    pub hidden: u64,
    pub output_tokens: u64,
}

/// Replaces secrets in everything the page would show (see `hoover_index::redact`): texts,
/// results, summaries, and every string of a tool's input, whole values of fields named like
/// secrets included.
pub(crate) fn redact(session: &mut Session) {
    fn text(t: &mut String) {
        if let std::borrow::Cow::Owned(r) = hoover_index::redact::redact(t) {
            *t = r;
        }
    }
    fn value(v: &mut Value) {
        match v {
            Value::String(s) => text(s),
            Value::Array(a) => a.iter_mut().for_each(value),
            Value::Object(o) => {
                for (k, v) in o.iter_mut() {
                    match v {
                        Value::String(s) if hoover_index::redact::is_secret_field(k) => {
                            *s = "[REDACTED:field]".into()
                        }
                        other => value(other),
                    }
                }
            }
            _ => {}
        }
    }
    fn conversation(c: &mut Conversation) {
        for item in &mut c.items {
            match &mut item.kind {
                ItemKind::Prompt { text: t, .. }
                | ItemKind::Meta { text: t }
                | ItemKind::Summary { text: t }
                | ItemKind::System { text: t, .. } => text(t),
                ItemKind::Compaction { summary, .. } => summary.iter_mut().for_each(text),
                ItemKind::OrphanResult(r) => text(&mut r.text),
                ItemKind::Hidden { .. } => {}
                ItemKind::Response(resp) => {
                    for b in &mut resp.blocks {
                        match b {
                            Block::Text(t) | Block::Thinking(t) => text(t),
                            Block::Tool(call) => {
                                value(&mut call.input);
                                if let Some(r) = &mut call.result {
                                    text(&mut r.text);
                                }
                                if let Some(sub) = &mut call.subagent {
                                    conversation(&mut sub.conversation);
                                }
                            }
                            Block::RedactedThinking | Block::Image(_) => {}
                        }
                    }
                }
            }
        }
    }
    conversation(&mut session.conversation);
    for a in &mut session.unlinked {
        conversation(&mut a.conversation);
    }
}

/// Renders the session; returns the HTML and its counts.
pub(crate) fn render(session: &Session, keys: &[String], options: Options) -> (String, Counts) {
    let mut r = Renderer {
        depth: 0,
        out: String::new(),
        counts: Counts::default(),
        options,
        keys,
    };
    r.conversation(&session.conversation);
    if !session.unlinked.is_empty() {
        let _ = write!(
            r.out,
            "<section class=\"unlinked\"><h2>Subagents no call was found for</h2>"
        );
        for agent in &session.unlinked {
            r.counts.subagents += 1;
            let n = agent.conversation.items.len();
            let _ = write!(
                r.out,
                "<details class=\"subagent\"><summary>subagent {} · {n} records · <code>{}</code></summary><div class=\"nested\">",
                esc(agent.agent_id.as_deref().unwrap_or("")),
                esc(&agent.key)
            );
            r.depth = 1;
            r.conversation(&agent.conversation);
            r.depth = 0;
            r.out.push_str("</div></details>");
        }
        r.out.push_str("</section>");
    }
    (r.out, r.counts)
}

struct Renderer<'a> {
    /// How deep in subagents: a subagent's prompts are written by a model, in Markdown.
    depth: usize,
    out: String,
    counts: Counts,
    options: Options,
    keys: &'a [String],
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` cut at [`TEXT_MAX`] bytes (on a character boundary), and how much was left out.
fn cut(text: &str) -> (&str, usize) {
    if text.len() <= TEXT_MAX {
        return (text, 0);
    }
    let mut end = TEXT_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], text.len() - end)
}

/// The first line of `text`, at most `chars` characters.
fn first_line(text: &str, chars: usize) -> String {
    crate::web::head(text.trim().lines().next().unwrap_or(""), chars)
}

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

/// Markdown to HTML with raw HTML shown as text, safe links only, and no remote images.
pub(crate) fn markdown(out: &mut String, text: &str) {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};
    let (text, left) = cut(text);
    let mut links: Vec<bool> = Vec::new();
    let parser = Parser::new_ext(
        text,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS,
    )
    .map(|event| match event {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::HtmlBlock) => Event::Html(CowStr::Borrowed("<pre class=\"raw\">")),
        Event::End(TagEnd::HtmlBlock) => Event::Html(CowStr::Borrowed("</pre>")),
        Event::Start(Tag::Link { dest_url, .. }) => {
            let ok = safe_url(&dest_url);
            links.push(ok);
            Event::Html(if ok {
                format!(
                    "<a href=\"{}\" rel=\"noopener noreferrer nofollow\">",
                    esc(&dest_url)
                )
                .into()
            } else {
                CowStr::Borrowed("<span class=\"link\">")
            })
        }
        Event::End(TagEnd::Link) => Event::Html(CowStr::Borrowed(if links.pop() == Some(true) {
            "</a>"
        } else {
            "</span>"
        })),
        Event::Start(Tag::Image { .. }) => {
            Event::Html(CowStr::Borrowed("<span class=\"img-alt\">[image: "))
        }
        Event::End(TagEnd::Image) => Event::Html(CowStr::Borrowed("]</span>")),
        other => other,
    });
    out.push_str("<div class=\"md\">");
    pulldown_cmark::html::push_html(out, parser);
    if left > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">… {left} more bytes: see the stored file.</p>"
        );
    }
    out.push_str("</div>");
}

/// `text` without terminal escape sequences (hook output keeps its colours in transcripts) and
/// other control characters but newlines and tabs.
fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte; other escapes: ESC and one character.
            if chars.next_if_eq(&'[').is_some() {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if !c.is_control() || c == '\n' || c == '\t' {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn pre(out: &mut String, class: &str, text: &str) {
    let text = plain(text);
    let (shown, left) = cut(&text);
    let _ = write!(out, "<pre class=\"{class}\">{}</pre>", esc(shown));
    if left > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">… {left} more bytes: see the stored file.</p>"
        );
    }
}

fn is_base64(data: &str) -> bool {
    data.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'))
}

fn image(out: &mut String, img: &Image) {
    let mt = img.media_type.as_str();
    if matches!(mt, "image/png" | "image/jpeg" | "image/gif" | "image/webp") && is_base64(&img.data)
    {
        let _ = write!(
            out,
            "<a class=\"thumb\" href=\"data:{mt};base64,{d}\" target=\"_blank\" rel=\"noopener\"><img alt=\"pasted image\" src=\"data:{mt};base64,{d}\"></a>",
            d = img.data
        );
    } else {
        let _ = write!(
            out,
            "<span class=\"muted\">[image of type {}]</span>",
            esc(mt)
        );
    }
}

fn str_field<'v>(input: &'v Value, field: &str) -> Option<&'v str> {
    input.get(field).and_then(Value::as_str)
}

impl Renderer<'_> {
    fn conversation(&mut self, c: &Conversation) {
        for item in &c.items {
            self.item(item);
        }
    }

    fn meta_line(&mut self, item: &Item, role: &str) {
        let _ = write!(
            self.out,
            "<div class=\"meta\"><time>{}</time> <span class=\"role\">{role}</span>",
            esc(item.timestamp.as_deref().unwrap_or(""))
        );
        if self.options.all {
            let key = self.keys.get(item.file).map(String::as_str).unwrap_or("");
            let _ = write!(
                self.out,
                " <span class=\"muted\">{}:{}</span>",
                esc(key.rsplit('/').next().unwrap_or(key)),
                item.line
            );
        }
    }

    fn open(&mut self, item: &Item, class: &str) {
        let id = item
            .uuid
            .as_deref()
            .map(|u| format!(" id=\"m-{}\"", esc(u)))
            .unwrap_or_default();
        let _ = write!(self.out, "<article class=\"msg {class}\"{id}>");
    }

    fn item(&mut self, item: &Item) {
        match &item.kind {
            ItemKind::Prompt { text, images } => {
                self.counts.prompts += 1;
                self.open(item, "role-user");
                self.meta_line(item, "user");
                self.out.push_str("</div>");
                if text.is_empty() {
                } else if self.depth > 0 {
                    markdown(&mut self.out, text);
                } else {
                    pre(&mut self.out, "text", text);
                }
                for img in images {
                    image(&mut self.out, img);
                }
                self.out.push_str("</article>");
            }
            ItemKind::Meta { text } => {
                self.open(item, "role-meta");
                self.meta_line(item, "context");
                self.out.push_str("</div>");
                let _ = write!(
                    self.out,
                    "<details><summary>{}</summary>",
                    esc(&first_line(text, 100))
                );
                pre(&mut self.out, "text", text);
                self.out.push_str("</details></article>");
            }
            ItemKind::Response(resp) => {
                self.counts.responses += 1;
                self.open(item, "role-assistant");
                self.meta_line(item, "assistant");
                if let Some(model) = &resp.model {
                    let _ = write!(self.out, " <span class=\"model\">{}</span>", esc(model));
                }
                if let Some(u) = resp.usage {
                    let n = |i: usize| u[i].unwrap_or(0);
                    self.counts.output_tokens += n(1);
                    let _ = write!(
                        self.out,
                        " <span class=\"tokens\" title=\"input · output · cache read · cache write\">{} in · {} out · {} cache read · {} cache write</span>",
                        n(0),
                        n(1),
                        n(2),
                        n(3)
                    );
                }
                self.out.push_str("</div>");
                for block in &resp.blocks {
                    match block {
                        Block::Text(t) => markdown(&mut self.out, t),
                        Block::Thinking(t) if t.trim().is_empty() => self
                            .out
                            .push_str("<p class=\"muted thinking\">thinking (its text is not in the transcript)</p>"),
                        Block::Thinking(t) => {
                            let _ = write!(
                                self.out,
                                "<details class=\"thinking\"><summary>thinking · {}</summary>",
                                esc(&first_line(t, 80))
                            );
                            markdown(&mut self.out, t);
                            self.out.push_str("</details>");
                        }
                        Block::RedactedThinking => {
                            self.out.push_str("<p class=\"muted\">[redacted thinking]</p>")
                        }
                        Block::Image(img) => image(&mut self.out, img),
                        Block::Tool(call) => self.tool_call(call),
                    }
                }
                self.out.push_str("</article>");
            }
            ItemKind::Compaction {
                trigger,
                pre_tokens,
                summary,
            } => {
                let mut what = String::from("conversation compacted");
                if let Some(t) = trigger {
                    let _ = write!(what, " ({t}");
                    if let Some(n) = pre_tokens {
                        let _ = write!(what, ", {n} tokens before");
                    }
                    what.push(')');
                }
                self.open(item, "compaction");
                let _ = write!(self.out, "<div class=\"separator\">{}</div>", esc(&what));
                if let Some(s) = summary {
                    self.out.push_str(
                        "<details><summary>the summary the conversation continued from</summary>",
                    );
                    pre(&mut self.out, "text", s);
                    self.out.push_str("</details>");
                }
                self.out.push_str("</article>");
            }
            ItemKind::System { subtype, text } => {
                self.open(item, "role-system");
                self.meta_line(item, "system");
                let _ = write!(
                    self.out,
                    " <span class=\"muted\">{}</span></div>",
                    esc(subtype)
                );
                if !text.is_empty() {
                    pre(&mut self.out, "text muted", text);
                }
                self.out.push_str("</article>");
            }
            ItemKind::Summary { text } => {
                self.open(item, "title");
                let _ = write!(
                    self.out,
                    "<p class=\"muted\">Title: {}</p></article>",
                    esc(text)
                );
            }
            ItemKind::OrphanResult(result) => {
                self.open(item, "role-tool");
                self.meta_line(item, "tool result");
                self.out.push_str("</div>");
                self.result(result);
                self.out.push_str("</article>");
            }
            ItemKind::Hidden { kind, .. } => {
                self.counts.hidden += 1;
                if self.options.all {
                    self.open(item, "hidden-record");
                    self.meta_line(item, kind);
                    self.out.push_str("</div></article>");
                }
            }
        }
    }

    fn result(&mut self, r: &ToolResult) {
        let lines = count_lines(&r.text);
        let what = if r.is_error { "error" } else { "result" };
        let _ = write!(
            self.out,
            "<details class=\"result{}\"><summary>{what} · {lines} · {}</summary>",
            if r.is_error { " error" } else { "" },
            esc(&first_line(&r.text, 100))
        );
        pre(&mut self.out, "text", &r.text);
        for img in &r.images {
            image(&mut self.out, img);
        }
        self.out.push_str("</details>");
    }

    fn tool_call(&mut self, call: &ToolCall) {
        self.counts.tool_calls += 1;
        let input = &call.input;
        let _ = write!(
            self.out,
            "<div class=\"call\" id=\"t-{}\"><div class=\"call-head\"><span class=\"tool\">{}</span>",
            esc(&call.id),
            esc(&call.name)
        );
        let path = str_field(input, "file_path").or_else(|| str_field(input, "notebook_path"));
        match (call.name.as_str(), path) {
            ("Bash", _) if str_field(input, "command").is_some() => {
                if let Some(d) = str_field(input, "description") {
                    let _ = write!(self.out, " <span class=\"muted\">{}</span>", esc(d));
                }
                self.out.push_str("</div>");
                let cmd = format!("$ {}", str_field(input, "command").unwrap_or(""));
                pre(&mut self.out, "cmd", &cmd);
            }
            ("Edit", Some(path)) => {
                let _ = write!(self.out, " <code>{}</code></div>", esc(path));
                self.edit(
                    str_field(input, "old_string").unwrap_or(""),
                    str_field(input, "new_string").unwrap_or(""),
                );
            }
            ("MultiEdit", Some(path)) => {
                let _ = write!(self.out, " <code>{}</code></div>", esc(path));
                for e in input
                    .get("edits")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.edit(
                        str_field(e, "old_string").unwrap_or(""),
                        str_field(e, "new_string").unwrap_or(""),
                    );
                }
            }
            ("Write", Some(path)) => {
                let content = str_field(input, "content").unwrap_or("");
                let _ = write!(
                    self.out,
                    " <code>{}</code></div><details><summary>content · {}</summary>",
                    esc(path),
                    count_lines(content)
                );
                pre(&mut self.out, "text", content);
                self.out.push_str("</details>");
            }
            ("Read" | "NotebookRead" | "NotebookEdit", Some(path)) => {
                let _ = write!(self.out, " <code>{}</code>", esc(path));
                for f in ["offset", "limit"] {
                    if let Some(n) = input.get(f).and_then(Value::as_u64) {
                        let _ = write!(self.out, " <span class=\"muted\">{f} {n}</span>");
                    }
                }
                self.out.push_str("</div>");
            }
            ("Task" | "Agent", _) => {
                if let Some(d) = str_field(input, "description") {
                    let _ = write!(self.out, " <strong>{}</strong>", esc(d));
                }
                if let Some(t) = str_field(input, "subagent_type") {
                    let _ = write!(self.out, " <span class=\"muted\">{}</span>", esc(t));
                }
                self.out.push_str("</div>");
                if let Some(p) = str_field(input, "prompt") {
                    self.out.push_str("<details><summary>prompt</summary>");
                    pre(&mut self.out, "text", p);
                    self.out.push_str("</details>");
                }
            }
            ("Grep" | "Glob", _) if str_field(input, "pattern").is_some() => {
                let _ = write!(
                    self.out,
                    " <code>{}</code>",
                    esc(str_field(input, "pattern").unwrap_or(""))
                );
                for f in ["path", "glob", "type"] {
                    if let Some(v) = str_field(input, f) {
                        let _ = write!(self.out, " <span class=\"muted\">{f} {}</span>", esc(v));
                    }
                }
                self.out.push_str("</div>");
            }
            ("TodoWrite", _) if input.get("todos").is_some_and(Value::is_array) => {
                self.out.push_str("</div><ul class=\"todos\">");
                for t in input["todos"].as_array().into_iter().flatten() {
                    let _ = write!(
                        self.out,
                        "<li class=\"todo-{}\">[{}] {}</li>",
                        esc(str_field(t, "status").unwrap_or("")),
                        esc(str_field(t, "status").unwrap_or("")),
                        esc(str_field(t, "content").unwrap_or(""))
                    );
                }
                self.out.push_str("</ul>");
            }
            ("WebFetch" | "WebSearch", _) => {
                for f in ["url", "query"] {
                    if let Some(v) = str_field(input, f) {
                        let _ = write!(self.out, " <code>{}</code>", esc(v));
                    }
                }
                self.out.push_str("</div>");
                if let Some(p) = str_field(input, "prompt") {
                    pre(&mut self.out, "text muted", p);
                }
            }
            _ => {
                // A tool this page has no view for: its input as JSON, folded.
                let json = serde_json::to_string_pretty(input).unwrap_or_default();
                self.out.push_str("</div><details><summary>input</summary>");
                pre(&mut self.out, "json", &json);
                self.out.push_str("</details>");
            }
        }
        match &call.result {
            Some(r) => self.result(r),
            None => self
                .out
                .push_str("<p class=\"muted\">no result recorded</p>"),
        }
        if let Some(sub) = &call.subagent {
            self.counts.subagents += 1;
            let n = sub.conversation.items.len();
            let _ = write!(
                self.out,
                "<details class=\"subagent\"><summary>subagent {} · {n} records</summary><div class=\"nested\">",
                esc(sub.agent_id.as_deref().unwrap_or(""))
            );
            self.depth += 1;
            self.conversation(&sub.conversation);
            self.depth -= 1;
            self.out.push_str("</div></details>");
        }
        self.out.push_str("</div>");
    }

    fn edit(&mut self, old: &str, new: &str) {
        let diff = similar::TextDiff::configure()
            .timeout(std::time::Duration::from_millis(200))
            .diff_lines(old, new);
        self.out.push_str("<pre class=\"diff\">");
        let mut shown = 0usize;
        for change in diff.iter_all_changes() {
            let (class, sign) = match change.tag() {
                similar::ChangeTag::Delete => ("del", '-'),
                similar::ChangeTag::Insert => ("ins", '+'),
                similar::ChangeTag::Equal => ("eq", ' '),
            };
            let line = change.value();
            shown += line.len();
            if shown > TEXT_MAX {
                self.out
                    .push_str("<span class=\"muted\">… cut: see the stored file</span>");
                break;
            }
            let _ = write!(
                self.out,
                "<span class=\"{class}\">{sign}{}</span>",
                esc(line.strip_suffix('\n').unwrap_or(line))
            );
        }
        self.out.push_str("</pre>");
    }
}

/// `1 line`, `3 lines`: how many lines `text` has.
fn count_lines(text: &str) -> String {
    match text.lines().count() {
        1 => "1 line".to_string(),
        n => format!("{n} lines"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_html_and_keeps_only_safe_links() {
        let mut out = String::new();
        markdown(
            &mut out,
            "**bold** <script>alert(1)</script>\n\n[ok](https://example.org/a\"b) [bad](javascript:alert(1)) ![x](https://tracker.example/p.png)\n\n```rust\nlet a = \"<b>\";\n```\n\n<div onclick=x>block</div>\n",
        );
        assert!(out.contains("<strong>bold</strong>"), "{out}");
        assert!(!out.contains("<script"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(
            out.contains("<a href=\"https://example.org/a%22b\" rel=\"noopener noreferrer nofollow\">ok</a>")
                || out.contains("<a href=\"https://example.org/a&quot;b\" rel=\"noopener noreferrer nofollow\">ok</a>"),
            "{out}"
        );
        assert!(!out.contains("javascript:alert(1)\""), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("[image: x]"), "{out}");
        assert!(
            out.contains("let a = &quot;&lt;b&gt;&quot;;")
                || out.contains("let a = \"&lt;b&gt;\";"),
            "{out}"
        );
        assert!(!out.contains("<div onclick"), "{out}");
    }

    #[test]
    fn line_counts_read_in_the_right_number() {
        assert_eq!(count_lines("one"), "1 line");
        assert_eq!(count_lines("one\ntwo"), "2 lines");
        assert_eq!(count_lines(""), "0 lines");
    }

    #[test]
    fn terminal_escapes_are_not_shown() {
        assert_eq!(
            plain("Running \u{1b}[1mPostToolUse\u{1b}[22m...\u{7}"),
            "Running PostToolUse..."
        );
        assert_eq!(plain("a\tb\nc"), "a\tb\nc");
    }

    #[test]
    fn images_must_be_images_in_base64() {
        let mut out = String::new();
        image(
            &mut out,
            &Image {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into(),
            },
        );
        assert!(out.contains("src=\"data:image/png;base64,iVBORw0KGgo=\""));
        let mut out = String::new();
        image(
            &mut out,
            &Image {
                media_type: "text/html".into(),
                data: "PHNjcmlwdD4=".into(),
            },
        );
        assert!(!out.contains("data:"), "{out}");
        let mut out = String::new();
        image(
            &mut out,
            &Image {
                media_type: "image/png".into(),
                data: "\" onerror=\"alert(1)".into(),
            },
        );
        assert!(!out.contains("onerror"), "{out}");
    }
}
