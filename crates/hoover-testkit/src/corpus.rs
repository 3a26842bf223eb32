//! A seeded generator of Claude Code-like transcripts, for benchmarks and large tests.
//! Same seed, same bytes, on every machine.

use serde_json::json;

/// A small, fast, seeded PRNG (xorshift64*), so corpora are reproducible without a rand dep.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }
}

const WORDS: &[&str] = &[
    "the",
    "function",
    "returns",
    "error",
    "file",
    "test",
    "cargo",
    "build",
    "index",
    "store",
    "chunk",
    "version",
    "server",
    "client",
    "async",
    "tokio",
    "parse",
    "line",
    "json",
    "key",
    "value",
    "struct",
    "impl",
    "trait",
    "module",
    "crate",
    "path",
    "read",
    "write",
    "sync",
    "hash",
    "blake3",
    "zstd",
    "compress",
    "restore",
    "verify",
    "network",
    "socket",
    "retry",
    "timeout",
    "config",
    "option",
    "flag",
    "command",
    "output",
    "input",
    "fix",
    "bug",
    "panic",
    "unwrap",
    "result",
    "match",
    "enum",
    "vector",
    "string",
    "bytes",
    "buffer",
    "stream",
    "snake_case_name",
    "HashMap",
    "src/main.rs",
    "Cargo.toml",
    "let",
    "mut",
    "fn",
    "pub",
];

fn words(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n * 7);
    for i in 0..n {
        if i > 0 {
            s.push(if rng.below(12) == 0 { '\n' } else { ' ' });
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s
}

/// One session's transcript generator: produces lines with a parentUuid chain.
pub struct Session {
    rng: Rng,
    session_id: String,
    parent: Option<String>,
    cwd: String,
    ts_ms: u64,
}

impl Session {
    pub fn new(seed: u64) -> Session {
        let mut rng = Rng::new(seed);
        let session_id = rng.uuid();
        let cwd = format!("/home/dev/src/project-{}", rng.below(40));
        Session {
            rng,
            session_id,
            parent: None,
            cwd,
            ts_ms: 1_760_000_000_000,
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The next line, with its trailing newline.
    pub fn next_line(&mut self) -> String {
        let uuid = self.rng.uuid();
        self.ts_ms += 500 + self.rng.below(30_000);
        let ts = format_ts(self.ts_ms);
        let kind = self.rng.below(10);
        let record = if kind < 3 {
            let n = 5 + self.rng.below(60) as usize;
            json!({
                "parentUuid": self.parent, "isSidechain": false, "userType": "external",
                "cwd": self.cwd, "sessionId": self.session_id, "version": "2.0.55",
                "gitBranch": "main", "type": "user",
                "message": {"role": "user", "content": words(&mut self.rng, n)},
                "uuid": uuid, "timestamp": ts
            })
        } else if kind < 7 {
            let n = 20 + self.rng.below(400) as usize;
            let msg_id = format!("msg_{:016x}", self.rng.next_u64());
            json!({
                "parentUuid": self.parent, "isSidechain": false, "userType": "external",
                "cwd": self.cwd, "sessionId": self.session_id, "version": "2.0.55",
                "gitBranch": "main", "type": "assistant",
                "message": {"id": msg_id, "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [{"type": "text", "text": words(&mut self.rng, n)}],
                    "stop_reason": null,
                    "usage": {"input_tokens": self.rng.below(5000), "output_tokens": self.rng.below(2000),
                        "cache_read_input_tokens": self.rng.below(100_000), "cache_creation_input_tokens": self.rng.below(5000)}},
                "requestId": format!("req_{:016x}", self.rng.next_u64()),
                "uuid": uuid, "timestamp": ts
            })
        } else if kind < 9 {
            let tool_id = format!("toolu_{:016x}", self.rng.next_u64());
            let n = 3 + self.rng.below(20) as usize;
            json!({
                "parentUuid": self.parent, "isSidechain": false, "userType": "external",
                "cwd": self.cwd, "sessionId": self.session_id, "version": "2.0.55",
                "gitBranch": "main", "type": "assistant",
                "message": {"id": format!("msg_{:016x}", self.rng.next_u64()), "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [{"type": "tool_use", "id": tool_id, "name": "Bash",
                        "input": {"command": format!("cargo test {}", words(&mut self.rng, 2)), "description": words(&mut self.rng, n)}}]},
                "uuid": uuid, "timestamp": ts
            })
        } else {
            // A tool result: a long, repetitive output, as real ones are.
            let n = 50 + self.rng.below(1500) as usize;
            json!({
                "parentUuid": self.parent, "isSidechain": false, "userType": "external",
                "cwd": self.cwd, "sessionId": self.session_id, "version": "2.0.55",
                "gitBranch": "main", "type": "user",
                "message": {"role": "user", "content": [{"type": "tool_result",
                    "tool_use_id": format!("toolu_{:016x}", self.rng.next_u64()),
                    "content": words(&mut self.rng, n), "is_error": self.rng.below(10) == 0}]},
                "uuid": uuid, "timestamp": ts
            })
        };
        self.parent = Some(uuid);
        let mut line = record.to_string();
        line.push('\n');
        line
    }

    /// One user message line of `bytes` bytes (or the least a record takes), newline included:
    /// an append of a known size.
    pub fn user_line(&mut self, bytes: usize) -> String {
        let uuid = self.rng.uuid();
        self.ts_ms += 500 + self.rng.below(30_000);
        let record = |content: &str| {
            json!({
                "parentUuid": self.parent, "isSidechain": false, "userType": "external",
                "cwd": self.cwd, "sessionId": self.session_id, "version": "2.0.55",
                "gitBranch": "main", "type": "user",
                "message": {"role": "user", "content": content},
                "uuid": uuid, "timestamp": format_ts(self.ts_ms)
            })
            .to_string()
        };
        let overhead = record("").len() + 1;
        let mut text = String::new();
        while text.len() < bytes.saturating_sub(overhead) {
            text.push_str(WORDS[self.rng.below(WORDS.len() as u64) as usize]);
            text.push(' ');
        }
        text.truncate(bytes.saturating_sub(overhead));
        let mut line = record(&text);
        line.push('\n');
        self.parent = Some(uuid);
        line
    }

    /// Lines until at least `bytes` bytes.
    pub fn bytes(&mut self, bytes: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes + 4096);
        while out.len() < bytes {
            out.extend_from_slice(self.next_line().as_bytes());
        }
        out
    }
}

fn format_ts(ms: u64) -> String {
    // Civil-from-days (Howard Hinnant), to avoid a date dependency.
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

/// Writes a tree of `files` session transcripts totalling about `total_bytes` under `dir`, in
/// project subdirectories. Sizes are skewed: a few large sessions, many small ones.
pub fn write_tree(
    dir: &std::path::Path,
    seed: u64,
    files: usize,
    total_bytes: usize,
) -> Vec<std::path::PathBuf> {
    let mut rng = Rng::new(seed);
    let weights: Vec<u64> = (0..files).map(|_| 1 + rng.below(100).pow(2)).collect();
    let sum: u64 = weights.iter().sum();
    let mut paths = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        let size = (total_bytes as u128 * *w as u128 / sum as u128) as usize;
        let mut session = Session::new(seed.wrapping_mul(1000).wrapping_add(i as u64));
        let project = dir.join(format!("-home-dev-src-project-{}", i % 17));
        std::fs::create_dir_all(&project).expect("create project dir");
        let path = project.join(format!("{}.jsonl", session.session_id()));
        std::fs::write(&path, session.bytes(size.max(200))).expect("write transcript");
        paths.push(path);
    }
    paths
}

/// New work for one round of a fault test: a new session of `new_bytes` named after `round`,
/// and `append_bytes` appended to each of two existing files picked by `rng`. Sessions are
/// seeded from `seed`, so each round's content is its own.
pub fn grow(
    dir: &std::path::Path,
    rng: &mut Rng,
    round: u64,
    seed: u64,
    new_bytes: usize,
    append_bytes: usize,
) {
    use std::io::Write;
    std::fs::write(
        dir.join(format!("new-{round}.jsonl")),
        Session::new(seed + round * 3).bytes(new_bytes),
    )
    .expect("write a new session");
    let old = crate::files_under(dir);
    for k in 0..2 {
        let target = &old[rng.below(old.len() as u64) as usize];
        std::fs::OpenOptions::new()
            .append(true)
            .open(target)
            .and_then(|mut f| {
                f.write_all(&Session::new(seed + round * 3 + 1 + k).bytes(append_bytes))
            })
            .expect("append to a session");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        assert_eq!(Session::new(4).bytes(10_000), Session::new(4).bytes(10_000));
        assert_ne!(Session::new(4).bytes(10_000), Session::new(5).bytes(10_000));
    }

    #[test]
    fn lines_are_json_objects() {
        let mut s = Session::new(1);
        for _ in 0..50 {
            let line = s.next_line();
            let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
            assert!(v.get("uuid").is_some());
        }
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000Z");
    }
}
