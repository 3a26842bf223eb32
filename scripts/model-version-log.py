#!/usr/bin/env python3
"""What a version costs in the version log, for the log as it is (format 5) and for candidate
designs, over a version per line of every file of a directory:

    target/release/hoover-bench pieces DIR chain 9 65536 EVENTS.jsonl
    python3 scripts/model-version-log.py EVENTS.jsonl [WORKDIR]

`hoover-bench pieces` models the store's pieces (cuts, kinds, frame lengths) and writes each
version as a JSON line; this builds each candidate schema in SQLite, inserting in the replay's
commit order (step k = line k of every file), and reports the log's size and the pack record
headers per version. Hashes and timestamps are random or made up at realistic magnitudes; the
model of today's format comes within 6% of the log `scripts/bench-versions.sh` measures
(docs/benchmarks.md, "Store format 5")."""
import json, sqlite3, sys, os
WORK = sys.argv[2] if len(sys.argv) > 2 else "target/model-version-log"
os.makedirs(WORK, exist_ok=True)
events = [json.loads(l) for l in open(sys.argv[1])]
events.sort(key=lambda e: (e["s"], e["f"]))
T0 = 1_764_600_000_000_000_000
HDR = {0: 32+4+4+1+32+32, 1: 32+4+4+1+32, 2: 32+4+4+1}  # model kinds: 0 extension (appends, in context), 1 follows, 2 alone
def run(name, schema, insert, headers):
    path = os.path.join(WORK, name.replace(" ", "-") + ".db")
    if os.path.exists(path): os.remove(path)
    db = sqlite3.connect(path)
    db.executescript(schema)
    state = {}
    step = None
    for e in events:
        if e["s"] != step:
            if step is not None: db.commit()
            step = e["s"]
        insert(db, e, state)
    db.commit()
    db.close()
    size = os.path.getsize(path)
    hdr = sum(headers(c) for e in events for c in e["new"] if len(c) == 4)
    frames = sum(c[3] for e in events for c in e["new"] if len(c) == 4)
    n = len(events)
    print(f"{name:>10}: log {size:>9,} B ({size/n:5.0f} B/version), pack headers {hdr:>8,} B ({hdr/n:4.0f}), frames {frames:,}; fixed {(size+hdr)/n:5.0f} B/version; total {(size+hdr+frames):,}")

def ts(e): return T0 + e["s"] * 7_000_000_000 + e["f"] * 1_000_003

# A: format 5 as it is.
A = """
CREATE TABLE files(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, source TEXT NOT NULL);
CREATE TABLE versions(file_id INTEGER NOT NULL, seq INTEGER NOT NULL, size INTEGER NOT NULL, blake3 BLOB NOT NULL,
  mtime_ns INTEGER NOT NULL, received_at_ns INTEGER NOT NULL, chunk_count INTEGER NOT NULL, kept INTEGER NOT NULL,
  PRIMARY KEY(file_id, seq)) WITHOUT ROWID;
CREATE TABLE entries(file_id INTEGER NOT NULL, pos INTEGER NOT NULL, seq INTEGER NOT NULL, chunk BLOB NOT NULL,
  offset INTEGER NOT NULL, len INTEGER NOT NULL, PRIMARY KEY(file_id, pos, seq)) WITHOUT ROWID;
CREATE TABLE packs(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, size INTEGER);
CREATE TABLE chunks(id BLOB PRIMARY KEY, pack INTEGER NOT NULL, offset INTEGER NOT NULL, raw_len INTEGER NOT NULL,
  stored_len INTEGER NOT NULL, kind INTEGER NOT NULL DEFAULT 0, hops INTEGER NOT NULL DEFAULT 1, cost INTEGER) WITHOUT ROWID;
INSERT INTO packs(name, size) VALUES('0123456789abcdef0123456789abcdef', 0);
"""
def key(e): return f"bench/r/{e['f']:03d}-0a1b2c3d-4e5f-6789-abcd-ef0123456789.jsonl"
def file_id(db, e, state):
    if e["f"] not in state:
        db.execute("INSERT INTO files(key, source) VALUES(?, 'bench')", (key(e),))
        state[e["f"]] = db.execute("SELECT last_insert_rowid()").fetchone()[0]
    return state[e["f"]]
pack_at = [14]
def insert_a(db, e, state):
    fid = file_id(db, e, state)
    db.execute("INSERT INTO versions VALUES(?,?,?,?,?,?,?,?)", (fid, e["s"], e["size"], os.urandom(32), ts(e) - 5_000_000, ts(e), e["count"], e["kept"]))
    off = 0
    for i, c in enumerate(e["new"]):
        db.execute("INSERT INTO entries VALUES(?,?,?,?,?,?)", (fid, e["kept"] + i, e["s"], bytes.fromhex(c[0]), off, c[1]))
        if len(c) == 4:
            db.execute("INSERT OR IGNORE INTO chunks VALUES(?,?,?,?,?,?,?,?)", (bytes.fromhex(c[0]), 1, pack_at[0], c[1], c[3], [3,2,0][c[2]], 3, c[1] * 2))
            pack_at[0] += c[3] + 50
        off += c[1]
run("A format 5", A, insert_a, lambda c: HDR[c[2]])

# C: an append is not a chunk. A version whose new last chunk extends the previous version's last
# chunk (model kind 0) keeps that tail in its own row: where its frame lies; no entries row, no
# chunks row, no id (the version's BLAKE3 covers it; the file's latest tail id is kept per file
# for Have). Its pack record header: raw and stored length (u32 each) and the kind.
C = A.replace("kept INTEGER NOT NULL,\n  PRIMARY KEY", "kept INTEGER NOT NULL, tail_pack INTEGER, tail_offset INTEGER, tail_stored INTEGER,\n  PRIMARY KEY") \
     .replace("source TEXT NOT NULL);", "source TEXT NOT NULL, tail BLOB);")
def insert_c(db, e, state):
    fid = file_id(db, e, state)
    new = e["new"]
    tail = None
    if new and len(new[-1]) == 4 and new[-1][2] == 0:
        tail = new[-1]
        new = new[:-1]
    row = (fid, e["s"], e["size"], os.urandom(32), ts(e) - 5_000_000, ts(e), e["count"], e["kept"])
    if tail:
        db.execute("INSERT INTO versions VALUES(?,?,?,?,?,?,?,?,?,?,?)", row + (1, pack_at[0], tail[3]))
        pack_at[0] += tail[3] + 9
    else:
        db.execute("INSERT INTO versions VALUES(?,?,?,?,?,?,?,?,NULL,NULL,NULL)", row)
    off = 0
    for i, c in enumerate(new):
        db.execute("INSERT INTO entries VALUES(?,?,?,?,?,?)", (fid, e["kept"] + i, e["s"], bytes.fromhex(c[0]), off, c[1]))
        if len(c) == 4:
            db.execute("INSERT OR IGNORE INTO chunks VALUES(?,?,?,?,?,?,?,?)", (bytes.fromhex(c[0]), 1, pack_at[0], c[1], c[3], [3,2,0][c[2]], 3, c[1] * 2))
            pack_at[0] += c[3] + 50
        off += c[1]
    db.execute("UPDATE files SET tail = ? WHERE id = ?", (bytes.fromhex(e["new"][-1][0]) if e["new"] else None, fid))
def hdr_c(c): return 9 if c[2] == 0 else HDR[c[2]]
run("C tails", C, insert_c, hdr_c)

# C2: C with a leaner version row: the commit time once per batch (a `batches` row; the version
# names its batch), the modification time as its distance before the commit.
C2 = C.replace("mtime_ns INTEGER NOT NULL, received_at_ns INTEGER NOT NULL,", "mtime_before INTEGER NOT NULL, batch INTEGER NOT NULL,") \
      + "CREATE TABLE batches(id INTEGER PRIMARY KEY, received_at_ns INTEGER NOT NULL);"
def insert_c2(db, e, state):
    if state.get("step") != e["s"]:
        db.execute("INSERT INTO batches(received_at_ns) VALUES(?)", (ts(e),))
        state["step"], state["batch"] = e["s"], db.execute("SELECT last_insert_rowid()").fetchone()[0]
    real = db.execute
    class Shim:
        def execute(self, sql, args=()):
            if sql.startswith("INSERT INTO versions"):
                args = list(args)
                args[4], args[5] = 5_000_000, state["batch"]
            return real(sql, args)
    insert_c(Shim(), e, state)
run("C2 tails, lean row", C2, insert_c2, hdr_c)
