//! Helpers for `scripts/bench.sh`, which times hoover beside `rsync -az` over OpenSSH:
//!
//! - `gen DIR BYTES FILES SEED`: a seeded tree of Claude Code-like transcripts.
//! - `big FILE BYTES SEED`: one large transcript.
//! - `append FILE BYTES SEED`: appends about BYTES of new transcript lines.
//! - `meta STORE KEY`: the bytes of version-log rows that the latest version of KEY added.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hoover_testkit::corpus;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> Result<u64> {
        args.get(i)
            .with_context(|| format!("missing argument {i}"))?
            .parse()
            .with_context(|| format!("argument {i} is not a number"))
    };
    match args.first().map(String::as_str) {
        Some("gen") => {
            let files = corpus::write_tree(Path::new(&args[1]), num(4)?, num(3)? as usize, num(2)? as usize);
            println!("{} files", files.len());
        }
        Some("big") => {
            let mut s = corpus::Session::new(num(3)?);
            std::fs::write(&args[1], s.bytes(num(2)? as usize))?;
        }
        Some("append") => {
            // A different seed than the file's own, so the lines are new.
            let mut s = corpus::Session::new(num(3)?);
            let mut out = Vec::new();
            while out.len() < num(2)? as usize {
                out.extend_from_slice(s.next_line().as_bytes());
            }
            let mut f = std::fs::OpenOptions::new().append(true).open(&args[1])?;
            f.write_all(&out)?;
            println!("{}", out.len());
        }
        Some("meta") => {
            let conn = rusqlite::Connection::open(Path::new(&args[1]).join("versions.db"))?;
            let (file_id, seq): (i64, i64) = conn.query_row(
                "SELECT f.id, MAX(v.seq) FROM files f JOIN versions v ON v.file_id = f.id WHERE f.key = ?1",
                [&args[2]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // Logical row bytes: what the version adds to the log, whatever the page layout.
            let version: i64 = conn.query_row(
                "SELECT 8 * 8 + length(blake3) FROM versions WHERE file_id = ?1 AND seq = ?2",
                [file_id, seq],
                |r| r.get(0),
            )?;
            let (entries, entry_bytes): (i64, i64) = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(length(chunk) + 5 * 8), 0) FROM entries WHERE file_id = ?1 AND seq = ?2",
                [file_id, seq],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // Each new entry may also have added a row to the chunk table (id + two lengths).
            let chunk_rows = entries * (32 + 2 * 8);
            println!("{} {} {}", version + entry_bytes + chunk_rows, entries, seq);
        }
        _ => bail!("usage: hoover-bench gen DIR BYTES FILES SEED | big FILE BYTES SEED | append FILE BYTES SEED | meta STORE KEY"),
    }
    Ok(())
}
