//! `hoover search QUERY`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::cli::SearchArgs;
use crate::commands::{client_settings, connect, print_json};
use crate::config;

pub async fn run(args: SearchArgs) -> Result<ExitCode> {
    let query = args.query.join(" ");
    let file = config::load(args.client.config.as_deref())?;
    let settings = client_settings(&args.client, &file)?;
    let mut conn = connect(&settings).await?;
    let found = conn
        .remote
        .search(&query, args.limit, args.offset, &args.sort)
        .await;
    conn.close().await;
    let (total, hits) = match found {
        // A query the index cannot run (nothing to look for, past the limits): a usage error.
        Err(e)
            if e.downcast_ref::<hoover_client::ServerError>()
                .is_some_and(|s| s.code == hoover_proto::ErrorCode::Refused) =>
        {
            super::print_error(&e);
            return Ok(ExitCode::from(2));
        }
        found => found?,
    };
    if args.json {
        print_json(&json!({ "total": total, "hits": hits }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = super::stdout();
    for h in &hits {
        let session = h.session.as_deref().unwrap_or("-");
        let project = h.project.as_deref().unwrap_or("");
        let tool = h
            .tool
            .as_deref()
            .map(|t| format!(" [{t}]"))
            .unwrap_or_default();
        let safe = |s: &str| super::terminal_safe(s, false);
        writeln!(
            out,
            "{}  {:<9}{}  {}  session {}",
            safe(h.timestamp.get(..19).unwrap_or(&h.timestamp)),
            safe(&h.role),
            safe(&tool),
            safe(project),
            safe(session)
        )?;
        writeln!(out, "  {}", highlight(&h.snippet, &h.highlights, color))?;
        writeln!(out, "  {}:{} (version {})", safe(&h.key), h.line, h.seq)?;
        writeln!(out)?;
    }
    let shown = hits.len() as u64;
    eprintln!(
        "hoover: {total} match{}{}",
        if total == 1 { "" } else { "es" },
        if total > shown + args.offset as u64 {
            format!(
                "; showing {}-{} (more with --offset {})",
                args.offset as u64 + 1,
                args.offset as u64 + shown,
                args.offset as u64 + shown
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The snippet on one line, matched words in bold (or between `**` without a terminal).
fn highlight(snippet: &str, ranges: &[[u32; 2]], color: bool) -> String {
    let (open, close) = if color {
        ("\x1b[1;33m", "\x1b[0m")
    } else {
        ("**", "**")
    };
    // One line per hit: whitespace runs (newlines among them) become one space, and each
    // piece of chat text is made terminal-safe before hoover's own highlight codes go round it.
    let piece = |s: &str| {
        let spaced: String = s
            .chars()
            .map(|c| if c.is_whitespace() { ' ' } else { c })
            .collect();
        super::terminal_safe(&spaced, false)
    };
    let mut out = String::new();
    let mut at = 0usize;
    for [a, b] in ranges {
        let (a, b) = (*a as usize, *b as usize);
        if a < at
            || b > snippet.len()
            || !snippet.is_char_boundary(a)
            || !snippet.is_char_boundary(b)
        {
            continue;
        }
        out.push_str(&piece(&snippet[at..a]));
        out.push_str(open);
        out.push_str(&piece(&snippet[a..b]));
        out.push_str(close);
        at = b;
    }
    out.push_str(&piece(&snippet[at..]));
    out.split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::highlight;

    #[test]
    fn only_hoovers_own_colours_reach_the_terminal() {
        let snippet = "copy \u{1b}]52;c;ZXZpbA==\u{7} the fox\nnow\u{1b}[2J";
        let fox = snippet.find("fox").unwrap() as u32;
        let out = highlight(snippet, &[[fox, fox + 3]], true);
        assert_eq!(
            out,
            "copy \\u{1b}]52;c;ZXZpbA==\\u{7} the \u{1b}[1;33mfox\u{1b}[0m now\\u{1b}[2J"
        );
        let plain = highlight("a re-fox-es  b", &[[5, 8]], false);
        assert_eq!(plain, "a re-**fox**-es b");
    }
}
