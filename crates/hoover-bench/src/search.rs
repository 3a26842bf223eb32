//! `hoover-bench search DIR BYTES`: the index benchmark of issue 4.
//!
//! Writes a seeded corpus of about BYTES of Claude Code-like JSONL under `DIR/corpus` (1 MB
//! sessions; one line in 40 carries a rare token `xq<6 digits>`), indexes it with the real
//! index writer (the server's code path minus reading from the store), then times searches for
//! rare words, common words and phrases, and the same searches with `rg` over the raw files.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use hoover_index::{Index, IndexOptions, SearchRequest, VersionMeta};
use hoover_testkit::corpus::{Rng, Session};
use hoover_testkit::files_under;

const FILE_BYTES: usize = 1 << 20;

fn du(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                du(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Writes the corpus; returns the rare tokens it planted.
fn write_corpus(dir: &Path, bytes: u64) -> Result<Vec<String>> {
    let mut rng = Rng::new(7);
    let mut rare = Vec::new();
    let files = (bytes as usize).div_ceil(FILE_BYTES);
    for i in 0..files {
        let mut s = Session::new(1000 + i as u64);
        let project = dir.join(format!("project-{}", i % 40));
        std::fs::create_dir_all(&project)?;
        let mut out = Vec::with_capacity(FILE_BYTES + 65536);
        let mut n = 0u64;
        while out.len() < FILE_BYTES {
            let mut line = s.next_line();
            n += 1;
            if n.is_multiple_of(40) {
                if let Some(at) = line
                    .find("\"text\":\"")
                    .map(|i| i + 8)
                    .or_else(|| line.find("\"content\":\"").map(|i| i + 11))
                {
                    let token = format!("xq{:06}", rng.below(1_000_000));
                    line.insert_str(at, &format!("{token} "));
                    if rare.len() < 200 {
                        rare.push(token);
                    }
                }
            }
            out.extend_from_slice(line.as_bytes());
        }
        std::fs::write(project.join(format!("{}.jsonl", s.session_id())), &out)?;
    }
    Ok(rare)
}

pub fn run(dir: &Path, bytes: u64) -> Result<()> {
    let corpus = dir.join("corpus");
    let index_dir = dir.join("index");
    let _ = std::fs::remove_dir_all(&index_dir);
    let rare = if corpus.exists() && du(&corpus) >= bytes {
        // Regenerate the token list only (same seed, same corpus).
        let tmp = dir.join("tokens");
        let _ = std::fs::remove_dir_all(&tmp);
        let t = write_corpus(&tmp, 40 * FILE_BYTES as u64)?;
        std::fs::remove_dir_all(&tmp)?;
        t
    } else {
        let _ = std::fs::remove_dir_all(&corpus);
        write_corpus(&corpus, bytes)?
    };
    let files = files_under(&corpus);
    let raw: u64 = files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    // Drop the page cache's advantage for neither side: both read warm files.
    let _ = Command::new("cat").args(&files).output();

    let (index, mut writer, _) = Index::open(&index_dir, IndexOptions::default())?;
    let started = Instant::now();
    let mut last_commit = Instant::now();
    for f in &files {
        let data = std::fs::read(f)?;
        let key = format!("bench/c/{}", f.strip_prefix(&corpus)?.display());
        let meta = VersionMeta {
            key: &key,
            seq: 1,
            size: data.len() as u64,
            mtime_ms: 0,
        };
        writer.add_version(&meta, false, [Ok::<_, std::io::Error>(data)])?;
        // As the server's catch-up does: a commit every BULK_COMMIT_INTERVAL.
        if last_commit.elapsed() >= hoover_index::BULK_COMMIT_INTERVAL {
            writer.commit()?;
            last_commit = Instant::now();
        }
    }
    writer.commit()?;
    let index_secs = started.elapsed().as_secs_f64();
    writer.finish()?;
    let merged_secs = started.elapsed().as_secs_f64();
    let size = du(&index_dir);
    let counters = index.counters();
    println!(
        "corpus: {:.0} MB in {} files, {} messages",
        raw as f64 / 1e6,
        files.len(),
        counters.messages
    );
    println!(
        "indexing: {index_secs:.1} s to searchable = {:.1} MB/s; {merged_secs:.1} s with merges = {:.1} MB/s",
        raw as f64 / 1e6 / index_secs,
        raw as f64 / 1e6 / merged_secs
    );
    println!(
        "index size: {:.0} MB = {:.2} of raw",
        size as f64 / 1e6,
        size as f64 / raw as f64
    );

    // Reopen, as a server would after a restart, and warm up.
    drop(index);
    let (index, _writer, _) = Index::open(&index_dir, IndexOptions::default())?;
    let common = [
        "error", "tokio", "unwrap", "test", "retry", "buffer", "stream", "config", "socket",
        "panic",
    ];
    let phrases = [
        "\"error test\"",
        "\"cargo test\"",
        "\"retry timeout\"",
        "\"read write\"",
        "\"hash zstd\"",
        "\"cargo test error\"",
        "\"cargo test retry\"",
    ];
    let search = |q: &str| -> Result<(f64, u64)> {
        let t = Instant::now();
        let r = index.search(&SearchRequest {
            query: q.to_string(),
            limit: 20,
            ..Default::default()
        })?;
        Ok((t.elapsed().as_secs_f64() * 1000.0, r.total))
    };
    for q in common.iter().chain(&phrases) {
        search(q)?;
    }
    let report = |name: &str, queries: Vec<String>| -> Result<Vec<(String, f64)>> {
        let mut times = Vec::new();
        let mut per_query = Vec::new();
        for round in 0..5 {
            for q in &queries {
                let (ms, total) = search(q)?;
                if round == 0 && total == 0 {
                    eprintln!("warning: {q:?} found nothing");
                }
                times.push(ms);
                if round == 4 {
                    per_query.push((q.clone(), ms));
                    if name != "rare" {
                        println!("  {q:<16} {total:>8} matches");
                    }
                }
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<8} queries: p50 {:.2} ms, p99 {:.2} ms ({} runs)",
            pct(&times, 0.5),
            pct(&times, 0.99),
            times.len()
        );
        Ok(per_query)
    };
    let rare_q = report("rare", rare.iter().take(100).cloned().collect())?;
    let common_q = report("common", common.iter().map(|s| s.to_string()).collect())?;
    let phrase_q = report("phrase", phrases.iter().map(|s| s.to_string()).collect())?;

    // The same searches with ripgrep over the raw files (warm cache), a few of each kind.
    let rg = |pattern: &str| -> Result<f64> {
        let t = Instant::now();
        let out = Command::new("rg")
            .args(["-c", "-F", "-i", "--no-messages", pattern])
            .arg(&corpus)
            .output()
            .context("run rg (apt-get install ripgrep)")?;
        anyhow::ensure!(out.status.code().is_some(), "rg was killed");
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let mut ratios = Vec::new();
    for (kind, list) in [
        ("rare", &rare_q),
        ("common", &common_q),
        ("phrase", &phrase_q),
    ] {
        for (q, ms) in list.iter().take(3) {
            let pattern = q.trim_matches('"');
            let rg_ms = rg(pattern)?;
            ratios.push(rg_ms / ms);
            println!(
                "  {kind:<7} {q:<16} index {ms:>7.2} ms   rg {rg_ms:>8.1} ms   {:>6.0}x",
                rg_ms / ms
            );
        }
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "index vs rg: median {:.0}x faster, worst {:.0}x",
        pct(&ratios, 0.5),
        ratios[0]
    );
    Ok(())
}
