//! Counters for the dashboard, kept in memory and rebuilt from the index's fast fields at open.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// What the counters are built from: one indexed message.
pub(crate) struct Counted<'a> {
    pub ts_ms: i64,
    pub session_h: u64,
    pub project_h: u64,
    pub model: Option<&'a str>,
    /// Present only on the first line of an API response (`message.id`), so tokens count once.
    pub usage: Option<[u64; 4]>,
}

#[derive(Default)]
pub(crate) struct Stats {
    messages: u64,
    sessions: HashSet<u64>,
    projects: HashSet<u64>,
    per_hour: BTreeMap<i64, u64>,
    tokens: BTreeMap<(i64, String), [u64; 4]>,
    pub(crate) malformed_lines: u64,
    pub(crate) indexed_files: u64,
}

impl Stats {
    pub(crate) fn count(&mut self, m: Counted<'_>) {
        self.messages += 1;
        if m.session_h != 0 {
            self.sessions.insert(m.session_h);
        }
        if m.project_h != 0 {
            self.projects.insert(m.project_h);
        }
        *self
            .per_hour
            .entry(m.ts_ms.div_euclid(MS_PER_HOUR))
            .or_default() += 1;
        if let Some(usage) = m.usage {
            if usage.iter().any(|&n| n > 0) {
                let model = m.model.unwrap_or("unknown").to_string();
                let slot = self
                    .tokens
                    .entry((m.ts_ms.div_euclid(MS_PER_DAY), model))
                    .or_default();
                for (total, n) in slot.iter_mut().zip(usage) {
                    *total += n;
                }
            }
        }
    }

    pub(crate) fn snapshot(&self, now_ms: i64) -> Counters {
        let today = now_ms.div_euclid(MS_PER_DAY);
        let messages_today = self.per_hour.range(today * 24..).map(|(_, n)| n).sum();
        let since = (now_ms.div_euclid(MS_PER_HOUR)) - 7 * 24 + 1;
        Counters {
            messages: self.messages,
            sessions: self.sessions.len() as u64,
            projects: self.projects.len() as u64,
            messages_today,
            malformed_lines: self.malformed_lines,
            indexed_files: self.indexed_files,
            messages_per_hour: self
                .per_hour
                .range(since..)
                .map(|(&h, &n)| HourCount {
                    hour: ms_to_rfc3339(h * MS_PER_HOUR),
                    messages: n,
                })
                .collect(),
            tokens_per_day: self
                .tokens
                .iter()
                .map(|((day, model), t)| TokenDay {
                    day: ms_to_rfc3339(day * MS_PER_DAY)[..10].to_string(),
                    model: model.clone(),
                    input: t[0],
                    output: t[1],
                    cache_read: t[2],
                    cache_write: t[3],
                })
                .collect(),
        }
    }
}

/// The index's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub messages: u64,
    pub sessions: u64,
    pub projects: u64,
    /// Messages whose timestamp falls on today's date (UTC).
    pub messages_today: u64,
    pub malformed_lines: u64,
    pub indexed_files: u64,
    /// The last seven days, hours with messages only.
    pub messages_per_hour: Vec<HourCount>,
    /// Token usage per UTC day and model, each API response counted once.
    pub tokens_per_day: Vec<TokenDay>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HourCount {
    pub hour: String,
    pub messages: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenDay {
    pub day: String,
    pub model: String,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

pub(crate) fn ms_to_rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
