//! The version log in SQLite: schema and queries. See `docs/store.md` for the schema.
//!
//! A version row records `kept`: how many leading chunks it shares with the previous version of
//! the same file. Its own chunks are `entries` rows at positions `kept..chunk_count` tagged with
//! its `seq`. The chunk at position `p` of version `s` is therefore the entry at `p` with the
//! largest `seq <= s`, for `p < chunk_count(s)`: one indexed range scan, and no entry or chunk
//! row is ever updated or deleted, nor a version row but for its held chunk's id, hops and cost
//! (format 9, below; and a growing pack's `size`, its committed length, is updated).
//!
//! Format 7: a version that adds one chunk, its last (an append, nearly always), names it in
//! its own row (`tail`) instead of an `entries` row. When the file's next version keeps that
//! chunk, its entry is written then (tagged with the tail's version's `seq`), so the rule
//! above holds for every position but a version's own tail.
//!
//! Format 8: such a version, when its new chunk is an append's piece that extends the chunk
//! at the same position of the version before, *holds* the piece in its row (where it lies,
//! its kind and cost) and the chunk has no `chunks` row until something names it by id
//! ([`materialize_tail`]). Readers say which version they read, and find it there.
//!
//! Format 9: once a file has a newer version, a held chunk that nothing named by id loses its
//! id from its row (`tail` NULL, [`forget_tail`]): no one can name it any more (a client names
//! a file's latest last chunk), and its bytes are covered by its version's BLAKE3. Readers key
//! it by [`unnamed`], a stand-in derived from its version; a restore names it by hashing it.

use std::path::Path;

use hoover_types::{ChunkId, ChunkRef, Key, VersionInfo};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::{FileSummary, Result, StoreCounts, StoreError, VersionAt};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions(
    file_id INTEGER NOT NULL REFERENCES files(id),
    seq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blake3 BLOB NOT NULL,
    mtime_ns INTEGER NOT NULL,
    received_at_ns INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    kept INTEGER NOT NULL,
    tail BLOB,
    tail_pack INTEGER,
    tail_offset INTEGER,
    tail_len INTEGER,
    tail_stored INTEGER,
    tail_kind INTEGER,
    tail_hops INTEGER,
    tail_cost INTEGER,
    PRIMARY KEY(file_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries(
    file_id INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    offset INTEGER NOT NULL,
    len INTEGER NOT NULL,
    PRIMARY KEY(file_id, pos, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deletions(
    file_id INTEGER NOT NULL,
    after_seq INTEGER NOT NULL,
    at_ns INTEGER NOT NULL,
    received_at_ns INTEGER NOT NULL,
    PRIMARY KEY(file_id, after_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packs(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    size INTEGER
);
CREATE TABLE IF NOT EXISTS chunks(
    id BLOB PRIMARY KEY,
    pack INTEGER NOT NULL REFERENCES packs(id),
    offset INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    kind INTEGER NOT NULL DEFAULT 0,
    hops INTEGER NOT NULL DEFAULT 1,
    cost INTEGER,
    base BLOB,
    held_file INTEGER,
    held_seq INTEGER
) WITHOUT ROWID;
";

/// Format 1 to 2: chunks become pieces, each with a kind and what reading it costs (its base
/// is named in its pack record, just before its frame).
/// The columns' defaults say what every format-1 chunk is (a piece that stands alone), so no
/// row is rewritten; `cost` NULL means the chunk's own length.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE chunks ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chunks ADD COLUMN hops INTEGER NOT NULL DEFAULT 1;
ALTER TABLE chunks ADD COLUMN cost INTEGER;
UPDATE meta SET value = '2' WHERE name = 'format';
";

/// Format 3 adds two piece kinds (appends, code 3; grouped, code 4, whose rows name their
/// group's frame) and changes no table: old rows mean what they meant.
const MIGRATE_2_TO_3: &str = "
UPDATE meta SET value = '3' WHERE name = 'format';
";

/// Format 4 lets a group hold up to 8 MiB (`hoover_types::MAX_GROUP_BYTES`, 1 MiB before) and
/// a chunk's read decode up to 10 MiB (`crate::MAX_DECODE_BYTES`, 2 MiB before). No table
/// changes: every format-3 piece is within the new bounds.
const MIGRATE_3_TO_4: &str = "
UPDATE meta SET value = '4' WHERE name = 'format';
";

/// Format 5 lets small batches be appended to the newest pack instead of each taking a file:
/// a pack's row records its committed length (`size`). Packs of older formats have none
/// (NULL): each is its file's whole length, and no batch is appended to one.
const MIGRATE_4_TO_5: &str = "
ALTER TABLE packs ADD COLUMN size INTEGER;
UPDATE meta SET value = '5' WHERE name = 'format';
";

/// Format 6 writes compact pack records: a piece's record names its base only (not the chunk
/// itself, nor an appending piece's context); the flag `crate::piece::COMPACT` on a chunk
/// row's kind code says which records are. No table changes: old rows, without the flag, name
/// full records, which read as before.
const MIGRATE_5_TO_6: &str = "
UPDATE meta SET value = '6' WHERE name = 'format';
";

/// Format 7: a version whose one new chunk is its last names it in its row (`tail`), and has
/// no `entries` row for it until the next version keeps it. Older versions have none (NULL):
/// their chunks are all entries, read as before.
const MIGRATE_6_TO_7: &str = "
ALTER TABLE versions ADD COLUMN tail BLOB;
UPDATE meta SET value = '7' WHERE name = 'format';
";

/// Format 8: an append's last chunk is held by its version row (where its piece lies, how it
/// decodes, what reading it costs) and has no `chunks` row until something names it by id
/// (the next version keeps it, a piece is stored on it, another version names it); that row
/// then says which version held it (`held_file`, `held_seq`: its base is found through the
/// version before). Older rows have none (NULL): their tails have `chunks` rows, read as
/// before. And a piece's pack record is *bare*, without its base's id, which its `chunks` row
/// names instead (`base`; `crate::piece::BARE` on its kind code): a held piece needs none.
const MIGRATE_7_TO_8: &str = "
ALTER TABLE versions ADD COLUMN tail_pack INTEGER;
ALTER TABLE versions ADD COLUMN tail_offset INTEGER;
ALTER TABLE versions ADD COLUMN tail_len INTEGER;
ALTER TABLE versions ADD COLUMN tail_stored INTEGER;
ALTER TABLE versions ADD COLUMN tail_kind INTEGER;
ALTER TABLE versions ADD COLUMN tail_hops INTEGER;
ALTER TABLE versions ADD COLUMN tail_cost INTEGER;
ALTER TABLE chunks ADD COLUMN base BLOB;
ALTER TABLE chunks ADD COLUMN held_file INTEGER;
ALTER TABLE chunks ADD COLUMN held_seq INTEGER;
UPDATE meta SET value = '8' WHERE name = 'format';
";

/// Format 9: a held chunk of a version that is no longer its file's latest, and that has no
/// `chunks` row, has no id in its row (`tail` NULL): see [`forget_tail`]. Rows written before
/// keep theirs, which is as valid; nothing else changed.
const MIGRATE_8_TO_9: &str = "
UPDATE meta SET value = '9' WHERE name = 'format';
";

/// The format the version log says it has.
pub(crate) fn format(conn: &Connection) -> Result<u32> {
    let value: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE name = 'format'", [], |r| {
            r.get(0)
        })
        .optional()?;
    value
        .as_deref()
        .unwrap_or("1")
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("the version log names format {value:?}")))
}

/// Brings a version log of an older format to this one, in one transaction (so a writer
/// killed midway leaves the old format, which the next open migrates again).
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32> {
    let from = format(conn)?;
    if from < crate::STORE_FORMAT_VERSION {
        let tx = conn.transaction()?;
        if from < 2 {
            tx.execute_batch(MIGRATE_1_TO_2)?;
        }
        if from < 3 {
            tx.execute_batch(MIGRATE_2_TO_3)?;
        }
        if from < 4 {
            tx.execute_batch(MIGRATE_3_TO_4)?;
        }
        if from < 5 {
            tx.execute_batch(MIGRATE_4_TO_5)?;
        }
        if from < 6 {
            tx.execute_batch(MIGRATE_5_TO_6)?;
        }
        if from < 7 {
            tx.execute_batch(MIGRATE_6_TO_7)?;
        }
        if from < 8 {
            tx.execute_batch(MIGRATE_7_TO_8)?;
        }
        tx.execute_batch(MIGRATE_8_TO_9)?;
        tx.commit()?;
    }
    Ok(from)
}

/// The page size of a new version log. Half SQLite's default: its rows are small (a version is
/// about 80 bytes), and each of its ten tables and indexes ends in a partly filled page, half
/// the slack; measured on the every-line replay of the real sessions, 20 KB less of 606 KB
/// (`docs/benchmarks.md`), and a commit rewrites half the bytes per page it touches.
const PAGE_SIZE: i64 = 2048;

pub(crate) fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(_, _) => StoreError::Corrupt(format!(
            "cannot open the version log {}: {e}",
            path.display()
        )),
        other => StoreError::Db(other),
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Only a new, empty file takes it (before WAL mode writes its header); a log made with
    // another page size keeps its own.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let fresh: bool = conn.query_row(
        "SELECT NOT EXISTS(SELECT 1 FROM sqlite_schema WHERE name = 'chunks')",
        [],
        |r| r.get(0),
    )?;
    if fresh {
        conn.execute_batch(SCHEMA)?;
    }
    conn.execute(
        "INSERT OR IGNORE INTO meta(name, value) VALUES('format', ?1)",
        [crate::STORE_FORMAT_VERSION.to_string()],
    )?;
    // A name for this store, so that clients can tell a new store from the one they synced to.
    let seed = format!(
        "{}/{}/{}",
        crate::now_ns(),
        std::process::id(),
        path.display()
    );
    let id = blake3::hash(seed.as_bytes()).to_hex()[..32].to_string();
    conn.execute(
        "INSERT OR IGNORE INTO meta(name, value) VALUES('store_id', ?1)",
        [id],
    )?;
    Ok(conn)
}

/// Opens a second connection to a version log [`open`] set up, for reads only: in WAL mode
/// its reads see every committed transaction and never wait for the writer's commit (and its
/// fsync).
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Opens a version log this process cannot write (a backup copy, a read-only mount), as an
/// immutable database: nothing is locked or created beside it. Refused when a write-ahead log
/// beside it holds changes, which an immutable reader would not see.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(StoreError::ReadOnlyWithLog(wal));
    }
    // A URI, so that `immutable` can be said: its path needs `%`, `?` and `#` escaped.
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(&uri, flags).map_err(|e| {
        StoreError::Corrupt(format!(
            "cannot open the version log {} read-only: {e}",
            path.display()
        ))
    })
}

/// The pack batches are appended to: the newest, when it has a committed length (format 5)
/// under `target`. Its id, name and committed length.
pub(crate) fn growing_pack(conn: &Connection, target: u64) -> Result<Option<(i64, String, u64)>> {
    let newest: Option<(i64, String, Option<i64>)> = conn
        .query_row(
            "SELECT id, name, size FROM packs ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(newest.and_then(|(id, name, size)| {
        let size = size? as u64;
        (size < target).then_some((id, name, size))
    }))
}

/// Every recorded pack, with its committed length where the log records one (format 5); the
/// others' lengths are their files'.
pub(crate) fn packs(conn: &Connection) -> Result<Vec<(String, Option<u64>)>> {
    let sql = if format(conn)? >= 5 {
        "SELECT name, size FROM packs"
    } else {
        "SELECT name, NULL FROM packs"
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.map(|n| n as u64)))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The names of all recorded packs.
pub(crate) fn pack_names(conn: &Connection) -> Result<std::collections::HashSet<String>> {
    let mut stmt = conn.prepare("SELECT name FROM packs")?;
    let names = stmt.query_map([], |r| r.get(0))?;
    Ok(names.collect::<rusqlite::Result<_>>()?)
}

const VERSION_COLUMNS: &str = "seq, size, blake3, mtime_ns, received_at_ns, chunk_count";

/// How a version row stores its modification time (format 9): as how long before it was
/// received (`-(received - mtime) - 1`, never positive), which a live watcher's versions keep
/// in 4 bytes where the time itself takes 8; a modification time after the receipt (the
/// client's clock ahead of the server's) is stored as it is, always positive then. Rows of
/// older formats hold the time itself, positive too. A time more than 292 years before the
/// receipt is stored as that long before it.
pub(crate) fn stored_mtime(mtime_ns: i64, received_at_ns: i64) -> i64 {
    match received_at_ns.checked_sub(mtime_ns) {
        Some(before) if before >= 0 => -before - 1,
        Some(_) if mtime_ns > 0 => mtime_ns,
        // Ahead of a receipt at or before 1970 (a clock far off): as close as it can be said.
        Some(_) => 0,
        None => i64::MIN,
    }
}

/// The modification time a version row stores ([`stored_mtime`]).
fn mtime_of(stored: i64, received_at_ns: i64) -> i64 {
    if stored < 0 {
        received_at_ns.saturating_add(stored).saturating_add(1)
    } else {
        stored
    }
}

fn version_from_row(row: &Row<'_>) -> rusqlite::Result<VersionInfo> {
    let hash: Vec<u8> = row.get(2)?;
    let mut blake3 = [0u8; 32];
    if hash.len() == 32 {
        blake3.copy_from_slice(&hash);
    }
    Ok(VersionInfo {
        seq: row.get::<_, i64>(0)? as u64,
        size: row.get::<_, i64>(1)? as u64,
        blake3,
        mtime_ns: mtime_of(row.get(3)?, row.get(4)?),
        received_at_ns: row.get(4)?,
        chunk_count: row.get::<_, i64>(5)? as u64,
    })
}

pub(crate) fn file_id(conn: &Connection, key: &Key) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM files WHERE key = ?1")?
        .query_row([key.as_str()], |r| r.get(0))
        .optional()?)
}

pub(crate) fn file_id_or_create(conn: &Connection, key: &Key) -> Result<i64> {
    if let Some(id) = file_id(conn, key)? {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO files(key, source) VALUES(?1, ?2)")?
        .execute(params![key.as_str(), key.source()])?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn version(conn: &Connection, file_id: i64, seq: u64) -> Result<Option<VersionInfo>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE file_id = ?1 AND seq = ?2"
        ))?
        .query_row(params![file_id, seq as i64], version_from_row)
        .optional()?)
}

pub(crate) fn latest_by_id(conn: &Connection, file_id: i64) -> Result<Option<VersionInfo>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM versions WHERE file_id = ?1 ORDER BY seq DESC LIMIT 1"
        ))?
        .query_row([file_id], version_from_row)
        .optional()?)
}

pub(crate) fn latest(conn: &Connection, key: &Key) -> Result<Option<VersionInfo>> {
    match file_id(conn, key)? {
        Some(id) => latest_by_id(conn, id),
        None => Ok(None),
    }
}

pub(crate) fn versions(conn: &Connection, key: &Key) -> Result<Vec<VersionInfo>> {
    let Some(id) = file_id(conn, key)? else {
        return Ok(Vec::new());
    };
    versions_by_id(conn, id)
}

pub(crate) fn versions_by_id(conn: &Connection, file_id: i64) -> Result<Vec<VersionInfo>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM versions WHERE file_id = ?1 ORDER BY seq"
    ))?;
    let rows = stmt.query_map([file_id], version_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Which tail columns a version log has: none (format 6 and older, opened only to read: every
/// chunk is an entry), the last chunk's id (format 7), or its id and its piece (format 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tails {
    None,
    Named,
    Held,
}

impl Tails {
    pub(crate) fn of_format(format: u32) -> Tails {
        match format {
            ..=6 => Tails::None,
            7 => Tails::Named,
            _ => Tails::Held,
        }
    }
}

/// The chunk a version names in its own row as its last (format 7).
#[derive(Clone, Debug)]
pub(crate) struct Tail {
    /// `None`: a held chunk whose row no longer names it (format 9, [`forget_tail`]).
    pub(crate) id: Option<ChunkId>,
    /// Its position: the version's last.
    pub(crate) pos: u64,
    /// Where it starts in the version: the version's size less its length.
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// Its piece, when the row holds it (format 8: an append whose last chunk has no `chunks`
    /// row, or had none when it was committed).
    pub(crate) piece: Option<HeldPiece>,
}

/// An append's last chunk as its version row holds it (format 8): where its piece lies, how it
/// decodes and what reading it costs, the columns of a `chunks` row.
#[derive(Clone, Debug)]
pub(crate) struct HeldPiece {
    pub(crate) pack: String,
    pub(crate) offset: u64,
    pub(crate) stored_len: u64,
    /// The piece kind's code, as in `chunks.kind`.
    pub(crate) kind: i64,
    pub(crate) hops: u32,
    pub(crate) cost: u64,
}

/// The chunk version `seq` names in its own row as its last (`None` before format 7, or when
/// the version added more than one chunk), with its length (from its row, or from its `chunks`
/// row, read in the same query) and, in format 8, the piece its row holds.
pub(crate) fn version_tail(
    conn: &Connection,
    tails: Tails,
    file_id: i64,
    seq: u64,
) -> Result<Option<Tail>> {
    // Its id, the version's chunk count and size, its length (NULL: no chunk row), and the
    // piece the row holds: pack id and name, offset, stored length, kind, hops, cost.
    type TailRow = (
        Option<Vec<u8>>,
        i64,
        i64,
        Option<i64>,
        Option<(i64, Option<String>, i64, i64, i64, i64, i64)>,
    );
    let sql = match tails {
        Tails::None => return Ok(None),
        Tails::Named => {
            "SELECT v.tail, v.chunk_count, v.size, c.raw_len,
                    NULL, NULL, NULL, NULL, NULL, NULL, NULL
             FROM versions v LEFT JOIN chunks c ON c.id = v.tail
             WHERE v.file_id = ?1 AND v.seq = ?2"
        }
        Tails::Held => {
            "SELECT v.tail, v.chunk_count, v.size, COALESCE(v.tail_len, c.raw_len),
                    v.tail_pack, p.name, v.tail_offset, v.tail_stored, v.tail_kind, v.tail_hops,
                    v.tail_cost
             FROM versions v LEFT JOIN chunks c ON c.id = v.tail
                  LEFT JOIN packs p ON p.id = v.tail_pack
             WHERE v.file_id = ?1 AND v.seq = ?2"
        }
    };
    let row: Option<TailRow> = conn
        .prepare_cached(sql)?
        .query_row(params![file_id, seq as i64], |r| {
            let piece = match r.get::<_, Option<i64>>(4)? {
                Some(pack_id) => Some((
                    pack_id,
                    r.get(5)?,
                    r.get::<_, Option<i64>>(6)?.unwrap_or(-1),
                    r.get::<_, Option<i64>>(7)?.unwrap_or(-1),
                    r.get::<_, Option<i64>>(8)?.unwrap_or(-1),
                    r.get::<_, Option<i64>>(9)?.unwrap_or(-1),
                    r.get::<_, Option<i64>>(10)?.unwrap_or(-1),
                )),
                None => None,
            };
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, piece))
        })
        .optional()?;
    let (id, count, size, len, piece) = match row {
        // A row that names no last chunk and holds no piece: its chunks are all entries.
        None | Some((None, _, _, _, None)) => return Ok(None),
        Some(row) => row,
    };
    let what = || format!("file {file_id} version {seq}: its last chunk");
    let id = id.map(|id| chunk_id(id, what)).transpose()?;
    let shown = || id.map_or_else(|| "(unnamed)".to_string(), |id| id.to_string());
    // A damaged or hostile log (a copy being recovered) is refused, not trusted to subtract.
    if count < 1 || size < 0 {
        return Err(StoreError::Corrupt(format!(
            "file {file_id} version {seq}: names a last chunk but has {count} chunks"
        )));
    }
    let Some(len) = len else {
        return Err(StoreError::Corrupt(format!(
            "file {file_id} version {seq}: its last chunk {} is not recorded",
            shown()
        )));
    };
    if len < 1 || len > size {
        return Err(StoreError::Corrupt(format!(
            "file {file_id} version {seq}: its last chunk is {len} bytes, the version {size}"
        )));
    }
    // A row that forgot its chunk's id forgot what reading the chunk costs too (format 9): no
    // piece is stored on it, and a reader is held to the bounds anyway. Read as the bounds.
    let piece = match piece {
        Some((pack, name, offset, stored, kind, -1, -1)) if id.is_none() => Some((
            pack,
            name,
            offset,
            stored,
            kind,
            crate::piece::MAX_HOPS as i64,
            crate::piece::MAX_DECODE_BYTES as i64,
        )),
        piece => piece,
    };
    let piece = match piece {
        None => None,
        Some((_, Some(pack), offset, stored, kind, hops, cost))
            if offset >= 0 && stored >= 0 && kind >= 0 && hops >= 1 && cost >= 0 =>
        {
            Some(HeldPiece {
                pack,
                offset: offset as u64,
                stored_len: stored as u64,
                kind,
                hops: hops.min(u32::MAX as i64) as u32,
                cost: cost as u64,
            })
        }
        Some(_) => {
            return Err(StoreError::Corrupt(format!(
                "{}: the piece its version row holds is not whole (or its pack is not recorded)",
                what()
            )))
        }
    };
    if id.is_none() && piece.is_none() {
        return Err(StoreError::Corrupt(format!(
            "{}: its row neither names it nor holds its piece",
            what()
        )));
    }
    Ok(Some(Tail {
        id,
        pos: count as u64 - 1,
        offset: (size - len) as u64,
        len: len as u64,
        piece,
    }))
}

/// The latest version of every file whose row holds its last chunk's piece (format 8): what
/// a new piece that extends a file's last chunk names as its base, by id.
pub(crate) fn held_tips(conn: &Connection) -> Result<Vec<(ChunkId, i64, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT v.tail, v.file_id, v.seq FROM versions v
         JOIN (SELECT file_id, MAX(seq) AS seq FROM versions GROUP BY file_id) m
           ON m.file_id = v.file_id AND m.seq = v.seq
         WHERE v.tail_pack IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Option<Vec<u8>>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, file_id, seq) = row?;
        let id = chunk_id(id.unwrap_or_default(), || {
            format!("file {file_id} version {seq}, its file's latest: its last chunk (unnamed)")
        })?;
        out.push((id, file_id, seq as u64));
    }
    Ok(out)
}

/// Gives the last chunk version `seq` holds in its row a `chunks` row (the same columns, and
/// the version), so that it can be named by id; nothing when it has one already or the row
/// holds no piece. Its base stays where it was: at its position in the version before (a
/// held chunk too, perhaps), which is why the row names the version. `id` is the chunk's, as
/// whoever names it knows it (the writer's record of the file's latest last chunk, or the
/// row): a row that forgot it (format 9: a newer version was committed meanwhile, in a batch
/// that raced this one) is given it back.
pub(crate) fn materialize_tail(
    conn: &Connection,
    file_id: i64,
    seq: u64,
    id: &ChunkId,
) -> Result<()> {
    // A row that forgot the id is named again first (its hops and cost, forgotten with it,
    // taken as the bounds); then the row, naming it, gives the `chunks` row.
    conn.prepare_cached(
        "UPDATE versions SET tail = ?3, tail_hops = COALESCE(tail_hops, ?4),
                             tail_cost = COALESCE(tail_cost, ?5)
         WHERE file_id = ?1 AND seq = ?2 AND tail IS NULL AND tail_pack IS NOT NULL",
    )?
    .execute(params![
        file_id,
        seq as i64,
        &id.0[..],
        crate::piece::MAX_HOPS,
        crate::piece::MAX_DECODE_BYTES as i64
    ])?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO chunks(id, pack, offset, raw_len, stored_len, kind, hops, cost,
                                          held_file, held_seq)
             SELECT tail, tail_pack, tail_offset, tail_len, tail_stored, tail_kind, tail_hops,
                    tail_cost, file_id, seq
             FROM versions WHERE file_id = ?1 AND seq = ?2 AND tail_pack IS NOT NULL
                             AND tail = ?3",
    )?
    .execute(params![file_id, seq as i64, &id.0[..]])?;
    Ok(())
}

/// Format 9: when version `seq` of a file is committed, the version before forgets its last
/// chunk's id if its row holds the chunk and nothing gave it a `chunks` row (the new version
/// did not keep it, no piece or version named it). Only the writer's record of each file's
/// latest last chunk is named by clients; an older one is read through its version, keyed by
/// [`unnamed`], and its bytes are checked by its version's BLAKE3. Its hops and cost go too
/// (only a piece stored on a chunk needs them, and none is stored on a chunk no one can name).
/// About 36 bytes a version.
pub(crate) fn forget_tail(conn: &Connection, file_id: i64, seq: u64) -> Result<()> {
    let Some(before) = seq.checked_sub(1).filter(|s| *s > 0) else {
        return Ok(());
    };
    conn.prepare_cached(
        "UPDATE versions SET tail = NULL, tail_hops = NULL, tail_cost = NULL
         WHERE file_id = ?1 AND seq = ?2 AND tail_pack IS NOT NULL AND tail IS NOT NULL
           AND NOT EXISTS(SELECT 1 FROM chunks c WHERE c.id = versions.tail)",
    )?
    .execute(params![file_id, before as i64])?;
    Ok(())
}

/// The key a held chunk whose row no longer names it is read by (format 9): derived from its
/// version, never a BLAKE3 of bytes (a reader that finds it takes no name to check the bytes
/// against), and never stored or sent: [`crate::Store::version_frames`] names such a chunk
/// by hashing it.
pub(crate) fn unnamed((file_id, seq): VersionAt) -> ChunkId {
    let mut h = blake3::Hasher::new_derive_key(
        "hoover store 2026-12-03 a held chunk its row no longer names",
    );
    h.update(&file_id.to_le_bytes());
    h.update(&seq.to_le_bytes());
    ChunkId(*h.finalize().as_bytes())
}

/// A chunk id as the log stores it (32 bytes in a sound log).
pub(crate) fn chunk_id(id: Vec<u8>, what: impl FnOnce() -> String) -> Result<ChunkId> {
    let id: [u8; 32] = id
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{}: chunk id is not 32 bytes", what())))?;
    Ok(ChunkId(id))
}

/// Chunks at positions `from..to` of version `seq`, with their byte offsets. `tails`: which
/// tail columns the log has (a format-6 log opened to be read has none, and every chunk in it
/// is an entry).
pub(crate) fn chunks_in_range(
    conn: &Connection,
    tails: Tails,
    file_id: i64,
    seq: u64,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, ChunkRef)>> {
    // The version's last chunk, when its row names it and the range reaches it.
    let tail = version_tail(conn, tails, file_id, seq)?.filter(|t| to > t.pos);
    let entries_to = tail.as_ref().map_or(to, |t| t.pos);
    // SQLite takes the bare columns of a MAX() aggregate from the row holding the maximum.
    let mut stmt = conn.prepare_cached(
        "SELECT pos, MAX(seq), chunk, offset, len FROM entries
         WHERE file_id = ?1 AND seq <= ?2 AND pos >= ?3 AND pos < ?4
         GROUP BY pos ORDER BY pos",
    )?;
    let rows = stmt.query_map(
        params![file_id, seq as i64, from as i64, entries_to as i64],
        |r| {
            let id: Vec<u8> = r.get(2)?;
            Ok((
                r.get::<_, i64>(0)?,
                id,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    let mut expect = from;
    for row in rows {
        let (pos, id, offset, len) = row?;
        let id = chunk_id(id, || format!("file {file_id} position {pos}"))?;
        if pos as u64 != expect {
            return Err(StoreError::Corrupt(format!(
                "file {file_id} version {seq}: chunk position {expect} is missing"
            )));
        }
        expect += 1;
        out.push((
            offset as u64,
            ChunkRef {
                id,
                len: len as u32,
            },
        ));
    }
    if let Some(t) = tail.filter(|t| from <= t.pos) {
        if expect != t.pos {
            return Err(StoreError::Corrupt(format!(
                "file {file_id} version {seq}: its chunks do not reach its last one"
            )));
        }
        expect += 1;
        out.push((
            t.offset,
            ChunkRef {
                id: t.id.unwrap_or_else(|| unnamed((file_id, seq))),
                len: t.len as u32,
            },
        ));
    }
    if expect != to {
        return Err(StoreError::Corrupt(format!(
            "file {file_id} version {seq}: has {} of chunks {from}..{to}",
            expect - from
        )));
    }
    Ok(out)
}

/// When version `seq` (the file's latest) names its last chunk in its row and the next
/// version keeps that chunk (`kept` is past it), writes its `entries` row, tagged `seq`: from
/// then on the rule "the entry with the largest seq" finds it for every later version. A
/// chunk the row holds (format 8) gets its `chunks` row too: the entry names it by id.
pub(crate) fn keep_tail(
    conn: &Connection,
    tails: Tails,
    file_id: i64,
    seq: u64,
    kept: u64,
) -> Result<()> {
    let Some(t) = version_tail(conn, tails, file_id, seq)?.filter(|t| kept > t.pos) else {
        return Ok(());
    };
    // The file's latest version's row always names its last chunk (only older ones forget).
    let Some(id) = t.id else {
        return Err(StoreError::Corrupt(format!(
            "file {file_id} version {seq}, its latest: its row does not name its last chunk"
        )));
    };
    conn.prepare_cached(
        "INSERT INTO entries(file_id, pos, seq, chunk, offset, len) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        file_id,
        t.pos as i64,
        seq as i64,
        &id.0[..],
        t.offset as i64,
        t.len as i64
    ])?;
    match t.piece {
        Some(_) => materialize_tail(conn, file_id, seq, &id),
        None => Ok(()),
    }
}

/// The byte length of the first `kept` chunks of version `seq`.
pub(crate) fn prefix_bytes(
    conn: &Connection,
    tails: Tails,
    file_id: i64,
    seq: u64,
    kept: u64,
) -> Result<u64> {
    if kept == 0 {
        return Ok(0);
    }
    let chunks = chunks_in_range(conn, tails, file_id, seq, kept - 1, kept)?;
    let (offset, chunk) = chunks[0];
    Ok(offset + chunk.len as u64)
}

pub(crate) fn list(
    conn: &Connection,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<FileSummary>> {
    // Keys are compared as text; `prefix || char(0x10FFFF)` bounds the prefix range. Doctor
    // probes are listed only when the prefix names them.
    let upper = format!("{prefix}\u{10FFFF}");
    let probes = if prefix.starts_with(hoover_types::PROBE_SOURCE) {
        ""
    } else {
        PROBE_PATTERN
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT f.key, (SELECT COUNT(*) FROM versions c WHERE c.file_id = f.id),
                {cols}
         FROM files f JOIN versions v ON v.file_id = f.id
         WHERE f.key >= ?1 AND f.key < ?2 AND f.key > ?3 AND f.key NOT LIKE ?5
           AND v.seq = (SELECT MAX(seq) FROM versions m WHERE m.file_id = f.id)
         ORDER BY f.key LIMIT ?4",
        cols = VERSION_COLUMNS
            .split(", ")
            .map(|c| format!("v.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))?;
    let rows = stmt.query_map(
        params![prefix, upper, after.unwrap_or(""), limit as i64, probes],
        |r| {
            let key: String = r.get(0)?;
            let count: i64 = r.get(1)?;
            // Re-read the version columns at an offset of two.
            let hash: Vec<u8> = r.get(4)?;
            let mut blake3 = [0u8; 32];
            if hash.len() == 32 {
                blake3.copy_from_slice(&hash);
            }
            Ok((
                key,
                count as u64,
                VersionInfo {
                    seq: r.get::<_, i64>(2)? as u64,
                    size: r.get::<_, i64>(3)? as u64,
                    blake3,
                    mtime_ns: mtime_of(r.get(5)?, r.get(6)?),
                    received_at_ns: r.get(6)?,
                    chunk_count: r.get::<_, i64>(7)? as u64,
                },
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (key, versions, latest) = row?;
        let key = Key::new(key).map_err(|e| StoreError::Corrupt(format!("stored key: {e}")))?;
        out.push(FileSummary {
            key,
            versions,
            latest,
        });
    }
    Ok(out)
}

/// `LIKE` pattern of doctor probes' keys (`_` and `%` do not occur in the source name).
pub(crate) const PROBE_PATTERN: &str = ".hoover-probe/%";

pub(crate) fn counts(conn: &Connection) -> Result<StoreCounts> {
    // Format 8: an append's last chunk held by its version row, not (yet) a `chunks` row.
    let held = match format(conn)? >= 8 {
        true => conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(tail_len), 0), COALESCE(SUM(tail_stored), 0)
             FROM versions v
             WHERE tail_pack IS NOT NULL AND NOT EXISTS(SELECT 1 FROM chunks c WHERE c.id = v.tail)",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)),
        )?,
        false => (0, 0, 0),
    };
    let one = |sql: &str| -> Result<u64> {
        Ok(conn.query_row(sql, [PROBE_PATTERN], |r| r.get::<_, i64>(0))? as u64)
    };
    let none =
        |sql: &str| -> Result<u64> { Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
    // Files and versions leave out doctor probes; chunks are what is on disk.
    Ok(StoreCounts {
        files: one("SELECT COUNT(*) FROM files WHERE key NOT LIKE ?1")?,
        versions: one(
            "SELECT COUNT(*) FROM versions v JOIN files f ON f.id = v.file_id
             WHERE f.key NOT LIKE ?1",
        )?,
        chunks: none("SELECT COUNT(*) FROM chunks")? + held.0,
        chunk_raw_bytes: none("SELECT COALESCE(SUM(raw_len), 0) FROM chunks")? + held.1,
        chunk_stored_bytes: none("SELECT COALESCE(SUM(stored_len), 0) FROM chunks")? + held.2,
        // Counted by the store: older packs' lengths are their files'.
        pack_bytes: 0,
        version_bytes: one(
            "SELECT COALESCE(SUM(v.size), 0) FROM versions v JOIN files f ON f.id = v.file_id
             WHERE f.key NOT LIKE ?1",
        )?,
        latest_bytes: one(
            "SELECT COALESCE(SUM(v.size), 0) FROM versions v JOIN files f ON f.id = v.file_id
             WHERE f.key NOT LIKE ?1
               AND v.seq = (SELECT MAX(seq) FROM versions m WHERE m.file_id = v.file_id)",
        )?,
    })
}

/// The store's random name (see `Store::id`).
pub(crate) fn store_id(conn: &Connection) -> Result<String> {
    Ok(
        conn.query_row("SELECT value FROM meta WHERE name = 'store_id'", [], |r| {
            r.get(0)
        })?,
    )
}

/// When the newest version was received (ns since the epoch), if there is one.
pub(crate) fn newest_received(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row("SELECT MAX(received_at_ns) FROM versions", [], |r| r.get(0))?)
}

/// A committed chunk's row: its name, where its frame lies, how it is stored and what reading
/// it costs.
pub(crate) struct ChunkRow {
    /// As stored (32 bytes in a sound log).
    pub id: Vec<u8>,
    pub pack: String,
    pub offset: u64,
    pub stored_len: u64,
    pub raw_len: u64,
    /// The piece kind's code.
    pub kind: i64,
    /// Pieces read and bytes decoded to read it.
    pub hops: u32,
    pub cost: u64,
    /// The version whose row held it before it got this row (format 8).
    pub held_by: Option<VersionAt>,
    /// Its base, when its record does not name it (format 8: a bare record).
    pub base: Option<Vec<u8>>,
}

/// The columns of a [`ChunkRow`], from `chunks c JOIN packs p`. A format-1 log (`pieces`
/// false, opened only to read) has no piece columns: every chunk in it stands alone; one
/// before format 8 no `held_` columns.
fn chunk_columns(pieces: bool, tails: Tails) -> &'static str {
    match (pieces, tails) {
        (true, Tails::Held) => {
            "c.id, p.name, c.offset, c.stored_len, c.raw_len, c.kind, c.hops, COALESCE(c.cost, c.raw_len),
             c.held_file, c.held_seq, c.base"
        }
        (true, _) => {
            "c.id, p.name, c.offset, c.stored_len, c.raw_len, c.kind, c.hops, COALESCE(c.cost, c.raw_len),
             NULL, NULL, NULL"
        }
        (false, _) => {
            "c.id, p.name, c.offset, c.stored_len, c.raw_len, 0, 1, c.raw_len, NULL, NULL, NULL"
        }
    }
}

fn chunk_from_row(r: &Row<'_>) -> rusqlite::Result<ChunkRow> {
    Ok(ChunkRow {
        id: r.get(0)?,
        pack: r.get(1)?,
        offset: r.get::<_, i64>(2)? as u64,
        stored_len: r.get::<_, i64>(3)? as u64,
        raw_len: r.get::<_, i64>(4)? as u64,
        kind: r.get(5)?,
        hops: r.get::<_, i64>(6)? as u32,
        cost: r.get::<_, i64>(7)? as u64,
        held_by: match (r.get::<_, Option<i64>>(8)?, r.get::<_, Option<i64>>(9)?) {
            (Some(file_id), Some(seq)) => Some((file_id, seq as u64)),
            _ => None,
        },
        base: r.get(10)?,
    })
}

/// A committed chunk's row.
pub(crate) fn chunk(
    conn: &Connection,
    id: &ChunkId,
    pieces: bool,
    tails: Tails,
) -> Result<Option<ChunkRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {} FROM chunks c JOIN packs p ON p.id = c.pack WHERE c.id = ?1",
            chunk_columns(pieces, tails)
        ))?
        .query_row([&id.0[..]], chunk_from_row)
        .optional()?)
}

/// Every committed chunk's row, in pack order.
pub(crate) fn chunks_in_pack_order(
    conn: &Connection,
    pieces: bool,
    tails: Tails,
) -> Result<Vec<ChunkRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {} FROM chunks c JOIN packs p ON p.id = c.pack ORDER BY c.pack, c.offset",
        chunk_columns(pieces, tails)
    ))?;
    let rows = stmt.query_map([], chunk_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Which of `ids` are committed.
pub(crate) fn has_chunks(conn: &Connection, ids: &[ChunkId]) -> Result<Vec<bool>> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM chunks WHERE id = ?1")?;
    ids.iter().map(|id| Ok(stmt.exists([&id.0[..]])?)).collect()
}

/// A committed chunk's raw length.
pub(crate) fn chunk_len(conn: &Connection, id: &ChunkId) -> Result<Option<u64>> {
    let len = conn
        .prepare_cached("SELECT raw_len FROM chunks WHERE id = ?1")?
        .query_row([&id.0[..]], |r| r.get::<_, i64>(0))
        .optional()?;
    Ok(len.map(|n| n as u64))
}

/// Records a file's deletion after version `after_seq`; false when it is recorded already.
pub(crate) fn record_deletion(
    conn: &Connection,
    file_id: i64,
    after_seq: u64,
    at_ns: i64,
    received_at_ns: i64,
) -> Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO deletions(file_id, after_seq, at_ns, received_at_ns) VALUES(?1, ?2, ?3, ?4)",
        )?
        .execute(rusqlite::params![file_id, after_seq as i64, at_ns, received_at_ns])?;
    Ok(added > 0)
}

/// A file's recorded deletions, oldest first.
pub(crate) fn deletions(conn: &Connection, file_id: i64) -> Result<Vec<hoover_types::Deletion>> {
    let mut stmt = conn.prepare_cached(
        "SELECT after_seq, at_ns FROM deletions WHERE file_id = ?1 ORDER BY after_seq",
    )?;
    let rows = stmt.query_map([file_id], |r| {
        Ok(hoover_types::Deletion {
            after_seq: r.get::<_, i64>(0)? as u64,
            at_ns: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every source (the first part of the keys) with its totals, by name; doctor probes left out.
pub(crate) fn sources(conn: &Connection) -> Result<Vec<crate::SourceSummary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT substr(f.key, 1, instr(f.key, '/') - 1) AS source,
                COUNT(DISTINCT f.id), COUNT(*), SUM(v.size), MAX(v.received_at_ns)
         FROM files f JOIN versions v ON v.file_id = f.id
         WHERE f.key NOT LIKE ?1
         GROUP BY source ORDER BY source",
    )?;
    let rows = stmt.query_map([PROBE_PATTERN], |r| {
        Ok(crate::SourceSummary {
            name: r.get(0)?,
            files: r.get::<_, i64>(1)? as u64,
            versions: r.get::<_, i64>(2)? as u64,
            version_bytes: r.get::<_, i64>(3)? as u64,
            last_received_ns: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many leading chunks of the version before version `seq` it keeps.
pub(crate) fn kept(conn: &Connection, file_id: i64, seq: u64) -> Result<Option<u64>> {
    let kept: Option<i64> = conn
        .prepare_cached("SELECT kept FROM versions WHERE file_id = ?1 AND seq = ?2")?
        .query_row(rusqlite::params![file_id, seq as i64], |r| r.get(0))
        .optional()?;
    Ok(kept.map(|k| k as u64))
}

#[cfg(test)]
mod tests {
    use super::{mtime_of, open, stored_mtime, PAGE_SIZE};

    #[test]
    fn a_new_log_takes_the_small_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |c: &rusqlite::Connection| -> i64 {
            c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
        };
        let new = dir.path().join("new.db");
        assert_eq!(page_size(&open(&new).unwrap()), PAGE_SIZE);
        assert_eq!(page_size(&open(&new).unwrap()), PAGE_SIZE);
        // A log made before (SQLite's default pages) opens with them, its rows intact.
        let old = dir.path().join("old.db");
        {
            let c = rusqlite::Connection::open(&old).unwrap();
            c.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t VALUES (7);")
                .unwrap();
        }
        let c = open(&old).unwrap();
        assert_eq!(page_size(&c), 4096);
        let x: i64 = c.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 7);
    }

    #[test]
    fn a_modification_time_reads_back_as_it_was_stored() {
        let received = 1_764_700_000_123_456_789i64;
        for mtime in [
            received,
            received - 1,
            received - 106_000_000,
            received - 86_400_000_000_000 * 400,
            received + 1,
            received + 5_000_000_000,
            0,
            1,
            -1,
            -1_000_000_000_000_000_000,
            received - i64::MAX,
        ] {
            let stored = stored_mtime(mtime, received);
            assert_eq!(mtime_of(stored, received), mtime, "{mtime}");
        }
        // A live watcher's version: received a fraction of a second after the write, stored
        // in 4 bytes (SQLite keeps an integer in 1, 2, 3, 4, 6 or 8).
        let stored = stored_mtime(received - 106_000_000, received);
        assert!(stored < 0 && stored >= i32::MIN as i64);
        // Older rows hold the time itself, which is positive.
        assert_eq!(mtime_of(received, received + 10), received);
        // Times further back than the stored difference can say are clamped, not wrapped.
        assert_eq!(
            mtime_of(stored_mtime(i64::MIN, received), received),
            received.saturating_add(i64::MIN).saturating_add(1)
        );
    }
}
