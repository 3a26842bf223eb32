//! `/live`: the live tail, first drawn from the feed's recent events.

use super::*;

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
