//! `/`: the dashboard: counters, the hour and week charts, the activity heatmap, tokens.

use super::*;

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
    let (size, c, sessions) = blocking(move || {
        let size = store.size().map_err(|e| e.to_string())?;
        let (counters, sessions) = match &index {
            Some(i) => (
                i.counters(),
                i.recent_sessions(15).map_err(|e| e.to_string())?,
            ),
            None => Default::default(),
        };
        Ok((size, counters, sessions))
    })
    .await?;
    let counts = &size.counts;
    let kept = match size.kept_ratio() {
        Some(ratio) => format!("{ratio:.1}x"),
        None => "-".into(),
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
            name: "store_bytes",
            label: "store on disk (packs + version log)",
            value: human_bytes(size.store_bytes()),
        },
        Counter {
            name: "kept_ratio",
            label: "all versions / store on disk",
            value: kept,
        },
    ];
    let mut counters = counters;
    if let Some(copy) = web.copy.as_ref().map(|c| c.status()) {
        counters.push(Counter {
            name: "copy",
            label: "off-site copy",
            value: match (&copy.error, copy.bytes_behind, copy.log_behind) {
                (Some(_), _, _) => "failing: see /api/stats".into(),
                (None, 0, false) => "up to date".into(),
                (None, behind, _) => format!("{} to copy", human_bytes(behind)),
            },
        });
    }
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
