//! Counters for the dashboard, kept in memory and rebuilt from the index's columns at open.
//! The counting itself is [`hoover_transcript::tally`]'s: this module only turns its numbers
//! into what the page and `/api/stats` show.

use hoover_transcript::prices;
use hoover_transcript::tally::{Tally, Totals};
use serde::Serialize;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) tally: Tally,
    pub(crate) malformed_lines: u64,
    pub(crate) indexed_files: u64,
}

impl Stats {
    /// Messages by weekday (Monday first) and hour of the day, UTC, over all time.
    fn activity(&self) -> Vec<Vec<u64>> {
        let mut grid = vec![vec![0u64; 24]; 7];
        for (ms, n) in self.tally.per_hour() {
            let hours = ms.div_euclid(MS_PER_HOUR);
            let days = hours.div_euclid(24);
            // 1970-01-01 was a Thursday: Monday is day 0 three days later.
            let weekday = (days + 3).rem_euclid(7) as usize;
            grid[weekday][hours.rem_euclid(24) as usize] += n;
        }
        grid
    }

    pub(crate) fn snapshot(&self, now_ms: i64) -> Counters {
        let today = now_ms.div_euclid(MS_PER_DAY) * MS_PER_DAY;
        let since = (now_ms.div_euclid(MS_PER_HOUR) - 7 * 24 + 1) * MS_PER_HOUR;
        let transcripts = self.tally.totals();
        Counters {
            messages: transcripts.messages,
            sessions: transcripts.sessions,
            projects: self.tally.projects(),
            messages_today: self.tally.messages_since(today),
            malformed_lines: self.malformed_lines,
            indexed_files: self.indexed_files,
            messages_per_hour: self
                .tally
                .per_hour()
                .filter(|&(h, _)| h >= since)
                .map(|(h, n)| HourCount {
                    hour: ms_to_rfc3339(h),
                    messages: n,
                })
                .collect(),
            tokens_per_day: self
                .tally
                .tokens_by_day_and_model()
                .into_iter()
                .map(|(day, model, t)| TokenDay {
                    day: day.to_string(),
                    model: model.to_string(),
                    input: t.input_tokens,
                    output: t.output_tokens,
                    cache_read: t.cache_read_input_tokens,
                    cache_write: t.cache_creation_input_tokens,
                    cost_usd: prices::cost(model, &t),
                })
                .collect(),
            prices_as_of: prices::PRICES_AS_OF,
            activity: self.activity(),
            transcripts,
        }
    }
}

/// The index's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    /// `transcripts.messages`: user and assistant records, once per uuid.
    pub messages: u64,
    pub sessions: u64,
    /// Project directories (the encoded working directory under a root) holding messages.
    pub projects: u64,
    /// Messages whose own timestamp falls on today's date (UTC).
    pub messages_today: u64,
    pub malformed_lines: u64,
    pub indexed_files: u64,
    /// The last seven days, hours with messages only.
    pub messages_per_hour: Vec<HourCount>,
    /// Token usage per UTC day and model, each API response counted once (its last line).
    pub tokens_per_day: Vec<TokenDay>,
    /// When the price table behind `cost_usd` was checked.
    pub prices_as_of: &'static str,
    /// Messages by weekday (Monday first) and hour (UTC), over all time: 7 rows of 24.
    pub activity: Vec<Vec<u64>>,
    /// The counts of `../shared/corpus/truth.py`, with its definitions.
    pub transcripts: Totals,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HourCount {
    pub hour: String,
    pub messages: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenDay {
    /// `YYYY-MM-DD` as the response's line wrote it; empty when it has no timestamp.
    pub day: String,
    pub model: String,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// An estimate at list prices; `None` for a model the price table does not know.
    pub cost_usd: Option<f64>,
}

pub(crate) fn ms_to_rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
