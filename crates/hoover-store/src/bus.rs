//! The commit bus: each committed batch's new versions, told to every subscriber in the order
//! the store committed them. The store is the source of truth; what subscribes (the indexer,
//! the live feed) derives its own view from it, each at its own pace.

use std::sync::Mutex;

use hoover_types::Committed;

/// Told each committed batch's new versions; answers `false` to unsubscribe.
type Subscriber = Box<dyn Fn(&[Committed]) -> bool + Send + Sync>;

#[derive(Default)]
pub(crate) struct CommitBus {
    subscribers: Mutex<Vec<Subscriber>>,
}

impl CommitBus {
    pub(crate) fn subscribe(&self, f: Subscriber) {
        self.lock().push(f);
    }

    /// Tells every subscriber about the new versions of `committed` (none when it added
    /// nothing). Called under the writer's lock, so subscribers hear commits in order.
    pub(crate) fn publish(&self, committed: &[Committed]) {
        let new: Vec<Committed> = committed.iter().filter(|c| c.new).cloned().collect();
        if new.is_empty() {
            return;
        }
        self.lock().retain(|f| f(&new));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
