//! The live feed: the messages of each newly committed version, to every subscriber
//! (`GET /api/live`, Server-Sent Events). A thread of its own hears of each commit from the
//! store's commit bus and reads the new lines ([`follow`]), whether or not the server keeps an
//! index, and without waiting for the indexer. What it reads is bounded: the end of what each
//! version added, and [`BATCH_BUDGET`] bytes of each committed batch; a bulk copy (a first
//! sync's batches, [`BULK_BYTES`]) is not read at all.
//!
//! Each event has an id that only grows (it starts from the server's start time, so ids also
//! grow across restarts). The last [`RING`] events are kept, so a client that reconnects with
//! the last id it saw gets exactly the events after it: no gap, no duplicate.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hoover_index::live::{ReadFrom, LIVE_WINDOW};
use hoover_index::{Added, IndexOptions, LiveReader, VersionMeta};
use hoover_store::Store;
use hoover_types::Key;
use tokio::sync::broadcast;

/// Events kept for clients that reconnect.
pub const RING: usize = 10_000;

/// One message on the live feed.
#[derive(Debug)]
pub struct LiveEvent {
    pub id: u64,
    pub message: Added,
    /// `message` as JSON, encoded once for every subscriber.
    pub json: String,
}

/// The feed. Cheap to clone.
#[derive(Clone)]
pub struct LiveFeed {
    inner: Arc<Inner>,
}

struct Inner {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    /// The recent events, and the next id; one lock orders publishing and subscribing.
    state: Mutex<(VecDeque<Arc<LiveEvent>>, u64)>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveFeed {
    pub fn new() -> LiveFeed {
        let start_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let (tx, _) = broadcast::channel(1024);
        LiveFeed {
            inner: Arc::new(Inner {
                tx,
                state: Mutex::new((VecDeque::new(), start_ms * 1000)),
            }),
        }
    }

    /// Publishes messages, oldest first.
    pub fn publish(&self, messages: Vec<Added>) {
        if messages.is_empty() {
            return;
        }
        let mut state = self.inner.state.lock().expect("live feed lock");
        for message in messages {
            let id = state.1;
            state.1 += 1;
            let mut value = serde_json::to_value(&message).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("id".into(), id.into());
            }
            let event = Arc::new(LiveEvent {
                id,
                json: value.to_string(),
                message,
            });
            if state.0.len() == RING {
                state.0.pop_front();
            }
            state.0.push_back(event.clone());
            // No subscribers is fine: the ring keeps the event.
            let _ = self.inner.tx.send(event);
        }
    }

    /// Events after `after` that are still kept, and a receiver for every later one.
    pub fn subscribe(
        &self,
        after: Option<u64>,
    ) -> (Vec<Arc<LiveEvent>>, broadcast::Receiver<Arc<LiveEvent>>) {
        let state = self.inner.state.lock().expect("live feed lock");
        let rx = self.inner.tx.subscribe();
        let backlog = match after {
            Some(after) => state.0.iter().filter(|e| e.id > after).cloned().collect(),
            None => Vec::new(),
        };
        (backlog, rx)
    }

    /// Kept events after `after` (to catch up after falling behind).
    pub fn since(&self, after: u64) -> Vec<Arc<LiveEvent>> {
        let state = self.inner.state.lock().expect("live feed lock");
        state.0.iter().filter(|e| e.id > after).cloned().collect()
    }

    /// The newest events, oldest first, at most `n`.
    pub fn recent(&self, n: usize) -> Vec<Arc<LiveEvent>> {
        let state = self.inner.state.lock().expect("live feed lock");
        let skip = state.0.len().saturating_sub(n);
        state.0.iter().skip(skip).cloned().collect()
    }
}

/// The nice value of the live feed's thread: below ingest, and above the indexer's, so that the
/// page does not wait behind indexing. An idle machine makes no difference.
const LIVE_NICE: i32 = 10;

/// The most new bytes the feed reads of one committed batch: the newest versions' (`hoover
/// watch` commits a message or a few at a time).
pub const BATCH_BUDGET: u64 = LIVE_WINDOW;
/// A batch that adds more than this is a bulk copy (a first sync commits batches of many MB),
/// history rather than conversation as it happens: the feed does not read it, as it does not
/// replay what the store held when the server started.
pub const BULK_BYTES: u64 = 8 << 20;

/// Starts the thread that puts the new messages of every version `writer` commits from now on
/// onto `feed`, reading them through `reader` (a store opened to read, so that its reads never
/// hold a lock the writer waits for). The thread ends when `writer` is dropped.
pub fn follow(writer: &Store, reader: Store, feed: LiveFeed, options: IndexOptions) {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<(Key, u64)>>();
    crate::indexing::on_new_chats(writer, move |new| tx.send(new).is_ok());
    let spawned = std::thread::Builder::new()
        .name("live".into())
        .spawn(move || {
            crate::indexing::lower_priority(LIVE_NICE);
            let mut lines = LiveReader::new(options);
            for batch in rx {
                if let Err(e) = read_batch(&reader, &mut lines, &feed, batch) {
                    tracing::warn!("the live feed cannot read a committed batch: {e}; its messages are not shown live");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the live feed's thread: {e}; the live page will not update");
    }
}

/// A version to read, and from where.
struct Planned {
    key: Key,
    seq: u64,
    size: u64,
    mtime_ns: i64,
    from: ReadFrom,
    /// The bytes it added.
    new: u64,
}

/// Publishes the new messages of one committed batch, its newest versions first in line for
/// the [`BATCH_BUDGET`], unless it is a bulk copy ([`BULK_BYTES`]); the versions left out are
/// not followed (their files' next versions are read as files never seen).
fn read_batch(
    store: &Store,
    lines: &mut LiveReader,
    feed: &LiveFeed,
    batch: Vec<(Key, u64)>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut plans = Vec::new();
    let mut added = 0u64;
    for (key, seq) in batch.into_iter().rev() {
        if added > BULK_BYTES {
            lines.forget(key.as_str());
            continue;
        }
        if let Some(plan) = plan(store, lines, key, seq)? {
            added += plan.new;
            plans.push(plan);
        }
    }
    if added > BULK_BYTES {
        for p in &plans {
            lines.forget(p.key.as_str());
        }
        return Ok(());
    }
    let mut budget = BATCH_BUDGET;
    plans.retain(|p| {
        let keep = budget > 0;
        budget = budget.saturating_sub(p.size - p.from.offset);
        if !keep {
            lines.forget(p.key.as_str());
        }
        keep
    });
    for p in plans.into_iter().rev() {
        let meta = VersionMeta {
            key: p.key.as_str(),
            seq: p.seq,
            size: p.size,
            mtime_ms: p.mtime_ns / 1_000_000,
        };
        match store.read_range(&p.key, p.seq, p.from.offset, None) {
            Ok(pieces) => feed.publish(lines.read_version(&meta, p.from, pieces)?),
            Err(e) => {
                lines.forget(p.key.as_str());
                tracing::warn!("the live feed cannot read {} version {}: {e}", p.key, p.seq);
            }
        }
    }
    Ok(())
}

/// Where to read version `seq` of `key`: after the lines of the version followed before when
/// it extends that one; else, when it extends the previous version, from its start if it is
/// small (its lines counted) or after the previous version's bytes; else from the start. Never
/// more than the last [`LIVE_WINDOW`] bytes.
fn plan(
    store: &Store,
    lines: &LiveReader,
    key: Key,
    seq: u64,
) -> Result<Option<Planned>, Box<dyn std::error::Error>> {
    let Some(info) = store.version(&key, seq)? else {
        return Ok(None);
    };
    let (from, new) = match lines.followed(key.as_str()) {
        Some(f)
            if f.seq + 1 == seq
                && info.size >= f.size
                && store.extends_previous(&key, seq, f.done)? =>
        {
            (
                ReadFrom::new_bytes(f.done, f.lines, info.size),
                info.size - f.done,
            )
        }
        _ => {
            let previous = match seq {
                1 => None,
                _ => store.version(&key, seq - 1)?,
            };
            match previous {
                // Small enough to read whole: its lines counted, those after the previous
                // version's bytes shown.
                Some(p)
                    if info.size <= LIVE_WINDOW
                        && info.size >= p.size
                        && store.extends_previous(&key, seq, p.size)? =>
                {
                    let from = ReadFrom {
                        show_after: p.size,
                        ..ReadFrom::START
                    };
                    (from, info.size - p.size)
                }
                Some(p) if info.size >= p.size && store.extends_previous(&key, seq, p.size)? => {
                    // Lines start after the previous version's last newline: read from its
                    // last byte, mid-line, so that a complete last line is skipped whole.
                    let mut from = ReadFrom::new_bytes(p.size.saturating_sub(1), None, info.size);
                    from.mid_line = from.offset > 0;
                    from.lines = from.lines.filter(|_| from.offset == 0);
                    (from, info.size - p.size)
                }
                _ => (ReadFrom::new_bytes(0, Some(0), info.size), info.size),
            }
        }
    };
    Ok(Some(Planned {
        key,
        seq,
        size: info.size,
        mtime_ns: info.mtime_ns,
        from,
        new,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> Added {
        Added {
            message: hoover_index::StoredMessage {
                key: "k".into(),
                role: "user".into(),
                text: text.into(),
                ..Default::default()
            },
            truncated: false,
        }
    }

    #[test]
    fn a_reconnect_resumes_after_its_last_id_without_gaps_or_duplicates() {
        let feed = LiveFeed::new();
        feed.publish(vec![msg("a"), msg("b")]);
        let (backlog, mut rx) = feed.subscribe(None);
        assert!(backlog.is_empty());
        feed.publish(vec![msg("c")]);
        let c = rx.try_recv().unwrap();
        assert_eq!(c.message.message.text, "c");
        let first = feed.recent(10)[0].id;
        let (backlog, _rx) = feed.subscribe(Some(first));
        let texts: Vec<&str> = backlog
            .iter()
            .map(|e| e.message.message.text.as_str())
            .collect();
        assert_eq!(texts, vec!["b", "c"]);
        assert!(backlog.windows(2).all(|w| w[0].id < w[1].id));
        assert!(c.json.contains("\"id\":"));
    }
}
