//! Helpers for `scripts/bench.sh`, which times hoover beside `rsync -az` over OpenSSH:
//!
//! - `gen DIR BYTES FILES SEED`: a seeded tree of Claude Code-like transcripts.
//! - `big FILE BYTES SEED`: one large transcript.
//! - `append FILE BYTES SEED`: appends one user message line of BYTES bytes.
//! - `meta STORE KEY`: the bytes of version-log rows that the latest version of KEY added.
//!
//! and for `scripts/bench-versions.sh`, which replays real sessions as they grew (issue 14):
//!
//! - `grow SRC DST STEP [STEPS]`: brings each file of SRC to its state at step STEP in DST by
//!   appending whole lines: with STEPS, the first `ceil(lines * STEP / STEPS)` lines of each
//!   file (a replay in STEPS steps); without, the first STEP lines (a version per line). Prints
//!   how many files changed.
//!
//! and for `scripts/bench-watch.sh`, which measures `hoover watch`:
//!
//! - `wait-versions HTTP_PORT N`: waits until the server holds at least N versions.
//! - `latency HTTP_PORT FILE COUNT INTERVAL_MS SEED`: appends a line every INTERVAL_MS and times
//!   each until the server's version count goes up (the version is committed, so durable);
//!   prints p50 and p99 in ms and the bytes appended.
//! - `rehash FILE`: CPU seconds of reading, cutting and hashing FILE whole, which is what the
//!   agent would pay per change without its append path.
//!
//! and for the search index (issue 4):
//!
//! - `search DIR BYTES`: indexing throughput, index size, query latency and the ratio to `rg`
//!   (see `search.rs`).
//! - `searchable HTTP_PORT FILE COUNT INTERVAL_MS`: appends a message with a fresh word to a
//!   watched FILE, COUNT times; prints p50 and p99 (ms) of version arrival → searchable, then
//!   of write → searchable.
//!
//! and for the web page (issue 5, `scripts/bench-web.sh`):
//!
//! - `live-latency HTTP_PORT FILE COUNT INTERVAL_MS`: appends a message to a watched FILE and
//!   times it until it arrives on an `/api/live` (SSE) connection; prints p50 and p99 in ms.
//! - `render HTTP_PORT PATH COUNT`: times COUNT requests of PATH; prints p50 and p99 in ms.

mod search;

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hoover_testkit::corpus;

/// The server's version count, from `GET /healthz`.
fn versions(port: u16) -> Result<u64> {
    let (_, body) = hoover_testkit::http_get(port, "/healthz")?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    v["versions"]
        .as_u64()
        .context("no version count in /healthz")
}

/// This process's user + system CPU time, from /proc (Linux).
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// What a full re-read costs the agent: content-defined cuts, a BLAKE3 per chunk, and a BLAKE3
/// of the whole file.
fn cut_and_hash(data: &[u8]) -> usize {
    let mut cuts = 0;
    let mut mix = 0u8;
    for c in fastcdc::v2020::FastCDC::new(data, 8 * 1024, 32 * 1024, 128 * 1024) {
        mix ^= blake3::hash(&data[c.offset..c.offset + c.length]).as_bytes()[0];
        cuts += 1;
    }
    mix ^= blake3::hash(data).as_bytes()[0];
    // Use the hashes, so that none of the work can be optimised away.
    std::hint::black_box(mix);
    cuts
}

/// Subscribes to `/api/live` and sends each event's data line down the channel.
fn subscribe_live(port: u16) -> Result<std::sync::mpsc::Receiver<String>> {
    use std::io::BufRead;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Chunk-size lines and event lines arrive alike; only `data:` lines matter here.
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(data) = line.strip_prefix("data:") {
                if tx.send(data.to_string()).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

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
            // One user message of BYTES bytes, from a different seed than the file's own.
            let mut s = corpus::Session::new(num(3)?);
            let out = s.user_line(num(2)? as usize).into_bytes();
            let mut f = std::fs::OpenOptions::new().append(true).open(&args[1])?;
            f.write_all(&out)?;
            println!("{}", out.len());
        }
        Some("grow") => {
            let (src, dst) = (Path::new(&args[1]), Path::new(&args[2]));
            let step = num(3)?;
            let steps = args.get(4).map(|_| num(4)).transpose()?;
            std::fs::create_dir_all(dst)?;
            let mut changed = 0;
            for entry in std::fs::read_dir(src)? {
                let entry = entry?;
                if !entry.file_type()?.is_file() {
                    continue;
                }
                let data = std::fs::read(entry.path())?;
                let lines: Vec<&[u8]> = data.split_inclusive(|b| *b == b'\n').collect();
                let n = lines.len() as u64;
                let want = match steps {
                    Some(steps) => (n * step).div_ceil(steps.max(1)),
                    None => step,
                }
                .min(n) as usize;
                let len: usize = lines[..want].iter().map(|l| l.len()).sum();
                let path = dst.join(entry.file_name());
                let have = std::fs::metadata(&path).map(|m| m.len() as usize).unwrap_or(0);
                if len > have {
                    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
                    f.write_all(&data[have..len])?;
                    changed += 1;
                }
            }
            println!("{changed}");
        }
        Some("pieces") => {
            // A model of the store's pieces under a policy, over a version per line of every
            // file of SRC: `pieces SRC POLICY LEVEL WINDOW` with POLICY solo (each chunk
            // alone), chain (extensions of the previous tail knowing the WINDOW bytes of the
            // file before them, as format 3's appending pieces do, else against the chunk
            // before) or chain-base (extensions knowing only their base chunk, as format 2's).
            // With a fifth argument, each version is written there as a JSON line (file, seq,
            // size, kept chunks, and its chunks after them: id, length, and for a newly stored
            // piece its kind and frame length), for models of the version log.
            let policy = args[2].clone();
            let level = num(3)? as i32;
            let window = num(4)? as usize;
            let mut events = match args.get(5) {
                Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
                None => None,
            };
            let compress_window = |prefix: &[u8], data: &[u8], level: i32| {
                use zstd::zstd_safe::{CCtx, CParameter};
                let mut cctx = CCtx::create();
                cctx.set_parameter(CParameter::CompressionLevel(level)).unwrap();
                cctx.set_parameter(CParameter::WindowLog(24)).unwrap();
                if !prefix.is_empty() { cctx.ref_prefix(prefix).unwrap(); }
                let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
                cctx.compress2(&mut out, data).unwrap();
                out
            };
            struct Piece {
                cost: usize,
                hops: u32,
                data: Vec<u8>,
            }
            let mut stored: std::collections::HashMap<[u8; 32], Piece> = Default::default();
            let (mut bytes, mut pieces, mut ext, mut ctx, mut solo, mut versions) = (0usize, 0, 0, 0, 0, 0);
            let started = std::time::Instant::now();
            let mut by_kind = [0usize; 3];
            let mut raw_kind = [0usize; 3];
            let mut names: Vec<_> = std::fs::read_dir(&args[1])?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .collect();
            names.sort();
            for (file_no, path) in names.iter().enumerate() {
                let all = std::fs::read(path)?;
                let mut prev_last: Option<(u64, [u8; 32], usize)> = None;
                let mut prev_refs = Vec::new();
                let mut end = 0;
                let mut seq = 0;
                for line in all.split_inclusive(|b| *b == b'\n') {
                    end += line.len();
                    let data = &all[..end];
                    versions += 1;
                    seq += 1;
                    let cuts = hoover_chunk::cut(data, 0);
                    let refs: Vec<_> = cuts.iter().map(|c| c.chunk_ref()).collect();
                    let kept = hoover_chunk::common_prefix(&prev_refs, &refs);
                    let mut listed: Vec<serde_json::Value> = Vec::new();
                    for (i, c) in cuts.iter().enumerate() {
                        if stored.contains_key(&c.id.0) {
                            if i >= kept {
                                listed.push(serde_json::json!([c.id.to_string(), c.len]));
                            }
                            continue;
                        }
                        let bytes_of = c.slice(data);
                        let mut choice = None;
                        if policy.starts_with("chain") {
                            if let Some((off, pid, plen)) = prev_last {
                                if off == c.offset && plen < c.len as usize {
                                    let p = &stored[&pid];
                                    if p.data[..] == bytes_of[..plen] && p.cost + c.len as usize - plen <= 1 << 20 && p.hops < 256 {
                                        let at = c.offset as usize + plen;
                                        let mut from = at.saturating_sub(window);
                                        if policy == "chain-base" {
                                            from = from.max(c.offset as usize);
                                        }
                                        let frame = compress_window(&data[from..at], &bytes_of[plen..], level);
                                        choice = Some((frame.len(), p.cost + c.len as usize - plen, p.hops + 1, 0));
                                    }
                                }
                            }
                            if choice.is_none() && i > 0 {
                                let p = &stored[&cuts[i - 1].id.0];
                                if p.cost + c.len as usize <= 1 << 20 && p.hops < 256 {
                                    let at = c.offset as usize;
                                    let frame = compress_window(&data[at.saturating_sub(window)..at], bytes_of, level);
                                    choice = Some((frame.len(), p.cost + c.len as usize, p.hops + 1, 1));
                                }
                            }
                        }
                        let (len, cost, hops, kind) = choice.unwrap_or_else(|| {
                            (hoover_chunk::compress_against(&[], bytes_of, level).len(), c.len as usize, 1, 2)
                        });
                        match kind { 0 => ext += 1, 1 => ctx += 1, _ => solo += 1 }
                        listed.push(serde_json::json!([c.id.to_string(), c.len, kind, len]));
                        by_kind[kind] += len;
                        raw_kind[kind] += c.len as usize;
                        bytes += len;
                        pieces += 1;
                        stored.insert(c.id.0, Piece { cost, hops, data: bytes_of.to_vec() });
                    }
                    prev_last = cuts.last().map(|c| (c.offset, c.id.0, c.len as usize));
                    if let Some(out) = events.as_mut() {
                        let event = serde_json::json!({"f": file_no, "s": seq, "size": end, "kept": kept, "count": refs.len(), "new": listed});
                        writeln!(out, "{event}")?;
                    }
                    prev_refs = refs;
                }
            }
            if let Some(mut out) = events {
                out.flush()?;
            }
            println!("{policy} level {level}: {versions} versions, {pieces} pieces ({ext} extensions, {ctx} against the chunk before, {solo} alone), {bytes} bytes of frames, {:.1} s; frame bytes by kind {by_kind:?}, raw chunk bytes by kind {raw_kind:?}", started.elapsed().as_secs_f64());
        }
        Some("piece-speed") => {
            // How fast and how small a first sync's pieces are, by level and window:
            // `piece-speed FILE`.
            let data = std::fs::read(&args[1])?;
            let cuts = hoover_chunk::cut(&data, 0);
            for (level, window) in [(1, 0), (3, 0), (1, 16 << 10), (3, 16 << 10), (1, 64 << 10), (3, 64 << 10), (-1, 64 << 10)] {
                let started = std::time::Instant::now();
                let mut total = 0;
                for (i, c) in cuts.iter().enumerate() {
                    let prefix = if i > 0 { cuts[i - 1].slice(&data) } else { &[][..] };
                    let prefix = &prefix[prefix.len().saturating_sub(window)..];
                    let prefix = if window == 0 { &[][..] } else { prefix };
                    total += hoover_chunk::compress_against(prefix, c.slice(&data), level).len();
                }
                let secs = started.elapsed().as_secs_f64();
                println!("level {level:>2} window {:>3} KiB: {:>6.1} MB/s, {:.3} of raw", window >> 10, data.len() as f64 / secs / 1e6, total as f64 / data.len() as f64);
            }
            // One zstd stream per chain of chunks (restarted every 768 KiB), flushed at each chunk
            // boundary: a chunk's piece is the stream's bytes since the last flush.
            for level in [1, 3] {
                use zstd::zstd_safe::{CCtx, DCtx, CParameter, DParameter, InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective as EndDirective};
                let mut cctx = CCtx::create();
                let started = std::time::Instant::now();
                let mut pieces: Vec<Vec<u8>> = Vec::new();
                let mut starts = Vec::new();
                let mut chain = usize::MAX;
                for c in &cuts {
                    let bytes = c.slice(&data);
                    if chain + bytes.len() > 768 << 10 {
                        cctx.reset(zstd::zstd_safe::ResetDirective::SessionOnly).unwrap();
                        cctx.set_parameter(CParameter::CompressionLevel(level)).unwrap();
                        cctx.set_parameter(CParameter::WindowLog(20)).unwrap();
                        chain = 0;
                        starts.push(pieces.len());
                    }
                    chain += bytes.len();
                    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(bytes.len()) + 64);
                    let mut input = InBuffer::around(bytes);
                    let mut output = OutBuffer::around(&mut out);
                    loop {
                        let left = cctx.compress_stream2(&mut output, &mut input, EndDirective::ZSTD_e_flush).unwrap();
                        if left == 0 && input.pos() == bytes.len() {
                            break;
                        }
                    }
                    pieces.push(out);
                }
                let secs = started.elapsed().as_secs_f64();
                let total: usize = pieces.iter().map(Vec::len).sum();
                // Decode every chain, checking the bytes.
                let started = std::time::Instant::now();
                let mut dctx = DCtx::create();
                let mut restored = Vec::with_capacity(data.len());
                for (i, p) in pieces.iter().enumerate() {
                    if starts.contains(&i) {
                        dctx.reset(zstd::zstd_safe::ResetDirective::SessionOnly).unwrap();
                        dctx.set_parameter(DParameter::WindowLogMax(20)).unwrap();
                    }
                    let want = cuts[i].len as usize;
                    let mut out = vec![0u8; want];
                    let mut input = InBuffer::around(p);
                    let mut output = OutBuffer::around(&mut out[..]);
                    while input.pos() < p.len() {
                        dctx.decompress_stream(&mut output, &mut input).unwrap();
                    }
                    assert_eq!(output.pos(), want);
                    restored.extend_from_slice(&out);
                }
                let dsecs = started.elapsed().as_secs_f64();
                assert!(restored == data);
                println!("stream level {level:>2}, flush per chunk: {:>6.1} MB/s, {:.3} of raw, decode {:>6.1} MB/s", data.len() as f64 / secs / 1e6, total as f64 / data.len() as f64, data.len() as f64 / dsecs / 1e6);
            }
            let started = std::time::Instant::now();
            let whole = zstd::bulk::compress(&data, 3)?;
            println!("whole file, level 3: {:>6.1} MB/s, {:.3} of raw", data.len() as f64 / started.elapsed().as_secs_f64() / 1e6, whole.len() as f64 / data.len() as f64);
        }
        Some("meta") => {
            let conn = rusqlite::Connection::open(Path::new(&args[1]).join("versions.db"))?;
            let (file_id, seq): (i64, i64) = conn.query_row(
                "SELECT f.id, MAX(v.seq) FROM files f JOIN versions v ON v.file_id = f.id WHERE f.key = ?1",
                [&args[2]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // Logical row bytes: what the version adds to the log, whatever the page layout.
            // A version that adds one chunk names it in its row (format 7), not in an entry;
            // an older store (an older build's, to compare) has no such column.
            let has_tail: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('versions') WHERE name = 'tail'",
                [],
                |r| r.get(0),
            )?;
            let tail = if has_tail { "tail" } else { "NULL" };
            // Format 8: the row may hold the chunk's piece (seven integers), not a chunk row.
            let has_held: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('versions') WHERE name = 'tail_pack'",
                [],
                |r| r.get(0),
            )?;
            let held = if has_held { "tail_pack IS NOT NULL" } else { "0" };
            let (version, tails, held): (i64, i64, i64) = conn.query_row(
                &format!(
                    "SELECT 8 * 8 + length(blake3) + COALESCE(length({tail}), 0) + 7 * 8 * ({held}),
                            {tail} IS NOT NULL, {held}
                     FROM versions WHERE file_id = ?1 AND seq = ?2"
                ),
                [file_id, seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let (entries, entry_bytes): (i64, i64) = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(length(chunk) + 5 * 8), 0) FROM entries WHERE file_id = ?1 AND seq = ?2",
                [file_id, seq],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // Each new chunk may also have added a row to the chunk table (id + two lengths).
            let chunks = entries + tails;
            let chunk_rows = (chunks - held) * (32 + 2 * 8);
            println!("{} {} {}", version + entry_bytes + chunk_rows, chunks, seq);
        }
        Some("wait-versions") => {
            let port = num(1)? as u16;
            let want = num(2)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
            while versions(port)? < want {
                if std::time::Instant::now() > deadline {
                    bail!("timed out waiting for {want} versions");
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Some("latency") => {
            let port = num(1)? as u16;
            let path = Path::new(&args[2]);
            let count = num(3)?;
            let interval = std::time::Duration::from_millis(num(4)?);
            let mut session = corpus::Session::new(num(5)?);
            let mut latencies = Vec::new();
            let mut appended = 0u64;
            for _ in 0..count {
                let before = versions(port)?;
                let line = session.next_line();
                let started = std::time::Instant::now();
                std::fs::OpenOptions::new().append(true).open(path)?.write_all(line.as_bytes())?;
                appended += line.len() as u64;
                let deadline = started + std::time::Duration::from_secs(30);
                while versions(port)? <= before {
                    if std::time::Instant::now() > deadline {
                        bail!("an append did not reach the server within 30 s");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                if let Some(rest) = interval.checked_sub(started.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            latencies.sort_by(|a, b| a.total_cmp(b));
            let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
            println!("{:.1} {:.1} {appended}", pct(0.5), pct(0.99));
        }
        Some("searchable") => {
            let port = num(1)? as u16;
            let path = Path::new(&args[2]);
            let count = num(3)?;
            let interval = std::time::Duration::from_millis(num(4)?);
            let (mut arrive, mut write) = (Vec::new(), Vec::new());
            for i in 0..count {
                let token = format!("fresh{i:06}q{}", std::process::id());
                let line = format!(
                    "{{\"type\":\"user\",\"sessionId\":\"bench\",\"uuid\":\"{token}\",\"timestamp\":\"2025-06-01T10:00:00Z\",\"message\":{{\"role\":\"user\",\"content\":\"{token} arrives\"}}}}\n"
                );
                let before = versions(port)?;
                let started = std::time::Instant::now();
                std::fs::OpenOptions::new().append(true).open(path)?.write_all(line.as_bytes())?;
                let deadline = started + std::time::Duration::from_secs(30);
                while versions(port)? <= before {
                    if std::time::Instant::now() > deadline {
                        bail!("an append did not reach the server within 30 s");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                let arrived = started.elapsed();
                loop {
                    let (_, body) = hoover_testkit::http_get(port, &format!("/api/search?q={token}&limit=1"))?;
                    let v: serde_json::Value = serde_json::from_str(&body)?;
                    if v["total"].as_u64().unwrap_or(0) > 0 {
                        break;
                    }
                    if std::time::Instant::now() > deadline {
                        bail!("{token} was not searchable within 30 s: {body}");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                let found = started.elapsed();
                arrive.push((found - arrived).as_secs_f64() * 1000.0);
                write.push(found.as_secs_f64() * 1000.0);
                if let Some(rest) = interval.checked_sub(started.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            for v in [&mut arrive, &mut write] {
                v.sort_by(|a, b| a.total_cmp(b));
            }
            let pct = |v: &[f64], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
            println!(
                "{:.0} {:.0} {:.0} {:.0}",
                pct(&arrive, 0.5),
                pct(&arrive, 0.99),
                pct(&write, 0.5),
                pct(&write, 0.99)
            );
        }
        Some("live-latency") => {
            let port = num(1)? as u16;
            let path = Path::new(&args[2]);
            let count = num(3)?;
            let interval = std::time::Duration::from_millis(num(4)?);
            let events = subscribe_live(port)?;
            let mut latencies = Vec::new();
            for i in 0..count {
                let uuid = format!("lat-{i}-{}", std::process::id());
                let line = format!(
                    "{{\"type\":\"user\",\"sessionId\":\"bench-live\",\"uuid\":\"{uuid}\",\"timestamp\":\"2025-06-01T10:00:00Z\",\"message\":{{\"role\":\"user\",\"content\":\"live latency probe {i}\"}}}}\n"
                );
                let started = std::time::Instant::now();
                std::fs::OpenOptions::new().append(true).open(path)?.write_all(line.as_bytes())?;
                loop {
                    let data = events
                        .recv_timeout(std::time::Duration::from_secs(30))
                        .context("no live event within 30 s")?;
                    if data.contains(&uuid) {
                        break;
                    }
                }
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                if let Some(rest) = interval.checked_sub(started.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            latencies.sort_by(|a, b| a.total_cmp(b));
            let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
            println!("{:.1} {:.1}", pct(0.5), pct(0.99));
        }
        Some("render") => {
            let port = num(1)? as u16;
            let count = num(3)? as usize;
            let mut times = Vec::new();
            for _ in 0..count {
                let started = std::time::Instant::now();
                let (status, body) = hoover_testkit::http_get(port, &args[2])?;
                if status != 200 {
                    bail!("GET {} answered {status}: {body}", args[2]);
                }
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
            println!("{:.1} {:.1}", pct(0.5), pct(0.99));
        }
        Some("search") => {
            search::run(Path::new(&args[1]), num(2)?)?;
        }
        Some("rehash") => {
            let started = cpu_seconds()?;
            let data = std::fs::read(&args[1])?;
            let cuts = cut_and_hash(&data);
            println!("{:.4} {cuts}", cpu_seconds()? - started);
        }
        _ => bail!("usage: hoover-bench gen DIR BYTES FILES SEED | big FILE BYTES SEED | append FILE BYTES SEED | meta STORE KEY | search DIR BYTES | searchable HTTP_PORT FILE COUNT INTERVAL_MS | live-latency HTTP_PORT FILE COUNT INTERVAL_MS | render HTTP_PORT PATH COUNT"),
    }
    Ok(())
}
