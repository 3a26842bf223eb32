//! The client's memory of what it sent: per file, the stat it had, its hash, the server's
//! version number and its chunk list. Kept in SQLite so an unchanged file costs a stat and a
//! changed one costs O(changed chunks) to record.

use std::path::Path;

use anyhow::{Context, Result};
use hoover_types::{ChunkId, ChunkRef};
use rusqlite::{params, Connection, OptionalExtension};

/// The stat fields that decide whether a file changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

impl Stat {
    pub fn of(meta: &std::fs::Metadata) -> Stat {
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Stat {
            dev,
            ino,
            size: meta.len(),
            mtime_ns,
        }
    }
}

/// What the client recorded of a file after its last successful push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileState {
    pub stat: Stat,
    pub blake3: [u8; 32],
    pub seq: u64,
    pub chunk_count: u64,
}

/// The client state, served by a thread of its own: SQLite's reads, commits and waits for a
/// lock (`hoover sync` beside `hoover watch` waits up to 10 s) never hold up the async tasks
/// that keep the SSH connection and the watcher going. Each call is one trip to that thread;
/// [`ClientState::call`] does several things in one trip.
pub struct ClientState {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&mut StateDb) + Send>;

impl ClientState {
    /// Opens (creating it when missing) the state at `path`, on its own thread.
    pub async fn open(path: &Path) -> Result<ClientState> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (opened_tx, opened) = tokio::sync::oneshot::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("client-state".into())
            .spawn(move || {
                let mut db = match StateDb::open(&path) {
                    Ok(db) => {
                        let _ = opened_tx.send(Ok(()));
                        db
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                for job in rx {
                    job(&mut db);
                }
            })
            .context("cannot start the client state's thread")?;
        opened
            .await
            .map_err(|_| anyhow::anyhow!("the client state's thread stopped while opening"))??;
        Ok(ClientState { jobs })
    }

    /// Runs `f` on the state's thread and returns what it returns.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut StateDb) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = || anyhow::anyhow!("the client state's thread stopped");
        self.jobs
            .send(Box::new(move |db| {
                let _ = tx.send(f(db));
            }))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    pub async fn get(&self, key: &str) -> Result<Option<FileState>> {
        let key = key.to_string();
        self.call(move |db| db.get(&key)).await
    }

    pub async fn count(&self) -> Result<u64> {
        self.call(|db| db.count()).await
    }

    pub async fn keys(&self) -> Result<Vec<String>> {
        self.call(|db| db.keys()).await
    }

    pub async fn chunks(&self, key: &str) -> Result<Vec<ChunkRef>> {
        let key = key.to_string();
        self.call(move |db| db.chunks(&key)).await
    }

    /// Records pushed versions, all in one transaction.
    pub async fn record(&self, records: Vec<Record>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.call(move |db| db.record(&records)).await
    }

    pub async fn touch(&self, key: &str, stat: Stat) -> Result<()> {
        let key = key.to_string();
        self.call(move |db| db.touch(&key, &stat)).await
    }

    pub async fn forget(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        self.call(move |db| db.forget(&key)).await
    }
}

/// A pushed version to record: the file's new state; keep its first `kept` chunks, then `new`.
pub struct Record {
    pub key: String,
    pub state: FileState,
    pub kept: u64,
    pub new: Vec<ChunkRef>,
}

/// The state's SQLite database, used on the state's thread ([`ClientState::call`]).
pub struct StateDb {
    conn: Connection,
}

impl StateDb {
    fn open(path: &Path) -> Result<StateDb> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the state dir {}", dir.display()))?;
        }
        // Two processes may open the same state at once (`hoover sync` while `hoover watch`
        // runs, or both starting on a new state): SQLite answers the loser of the switch to
        // WAL and of the table set-up with "database is locked" at once, without waiting. So
        // the set-up runs under a file lock beside the database; later writes wait in SQLite.
        let lock_path = path.with_extension("db.lock");
        let setup_lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        setup_lock
            .lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the client state {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS files(
                key TEXT PRIMARY KEY,
                dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL, blake3 BLOB NOT NULL,
                seq INTEGER NOT NULL, chunk_count INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS chunks(
                key TEXT NOT NULL, pos INTEGER NOT NULL, id BLOB NOT NULL, len INTEGER NOT NULL,
                PRIMARY KEY(key, pos)
            ) WITHOUT ROWID;",
        )
        .with_context(|| format!("cannot set up the client state {}", path.display()))?;
        drop(setup_lock);
        Ok(StateDb { conn })
    }

    pub fn get(&self, key: &str) -> Result<Option<FileState>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT dev, ino, size, mtime_ns, blake3, seq, chunk_count FROM files WHERE key = ?1",
            )?
            .query_row([key], |r| {
                let hash: Vec<u8> = r.get(4)?;
                Ok((
                    Stat {
                        dev: r.get::<_, i64>(0)? as u64,
                        ino: r.get::<_, i64>(1)? as u64,
                        size: r.get::<_, i64>(2)? as u64,
                        mtime_ns: r.get(3)?,
                    },
                    hash,
                    r.get::<_, i64>(5)? as u64,
                    r.get::<_, i64>(6)? as u64,
                ))
            })
            .optional()?;
        Ok(row.map(|(stat, hash, seq, chunk_count)| {
            let mut blake3 = [0u8; 32];
            if hash.len() == 32 {
                blake3.copy_from_slice(&hash);
            }
            FileState {
                stat,
                blake3,
                seq,
                chunk_count,
            }
        }))
    }

    /// How many files are recorded.
    pub fn count(&self) -> Result<u64> {
        Ok(self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM files")?
            .query_row([], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Every key recorded, in order.
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key FROM files ORDER BY key")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The chunk list recorded for `key`.
    pub fn chunks(&self, key: &str) -> Result<Vec<ChunkRef>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, len FROM chunks WHERE key = ?1 ORDER BY pos")?;
        let rows = stmt.query_map([key], |r| {
            let id: Vec<u8> = r.get(0)?;
            Ok((id, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, len) = row?;
            let Ok(id) = <[u8; 32]>::try_from(id) else {
                anyhow::bail!("client state: bad chunk id for {key}");
            };
            out.push(ChunkRef {
                id: ChunkId(id),
                len: len as u32,
            });
        }
        Ok(out)
    }

    /// Records pushed versions in one transaction: per file, keeps its first `kept` chunks
    /// and replaces the rest with `new`.
    pub fn record(&mut self, records: &[Record]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for r in records {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO files(key, dev, ino, size, mtime_ns, blake3, seq, chunk_count)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                r.key,
                r.state.stat.dev as i64,
                r.state.stat.ino as i64,
                r.state.stat.size as i64,
                r.state.stat.mtime_ns,
                &r.state.blake3[..],
                r.state.seq as i64,
                r.state.chunk_count as i64
            ])?;
            tx.prepare_cached("DELETE FROM chunks WHERE key = ?1 AND pos >= ?2")?
                .execute(params![r.key, r.kept as i64])?;
            let mut insert =
                tx.prepare_cached("INSERT INTO chunks(key, pos, id, len) VALUES(?1, ?2, ?3, ?4)")?;
            for (i, c) in r.new.iter().enumerate() {
                insert.execute(params![
                    r.key,
                    (r.kept + i as u64) as i64,
                    &c.id.0[..],
                    c.len as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Updates only the stat of a file whose content did not change (e.g. `touch`).
    pub fn touch(&self, key: &str, stat: &Stat) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE files SET dev = ?2, ino = ?3, size = ?4, mtime_ns = ?5 WHERE key = ?1",
            )?
            .execute(params![
                key,
                stat.dev as i64,
                stat.ino as i64,
                stat.size as i64,
                stat.mtime_ns
            ])?;
        Ok(())
    }

    /// Forgets a file, so its next push sends a full chunk list.
    pub fn forget(&self, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM files WHERE key = ?1", [key])?;
        self.conn
            .execute("DELETE FROM chunks WHERE key = ?1", [key])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_openers_of_a_new_state_at_once_all_succeed() {
        // Regression: two `hoover sync` processes starting together on a new state failed
        // about one time in six with "database is locked" (the switch to WAL does not wait).
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        StateDb::open(&path).map(|_| ())
                    })
                })
                .collect();
            for o in openers {
                o.join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
            }
        }
    }
}
