#!/usr/bin/env bash
# Benchmark of the search index (issue 4): indexing throughput, index size and query latency on
# a generated corpus (SEARCH_BYTES, default 1 GB) beside `rg` over the same files, then the
# commit window: a fresh word appended to a watched transcript, timed from its version arriving
# on the server to a hit from GET /api/search (SEARCHABLE_COUNT appends, default 50).
# Needs ripgrep (apt-get install ripgrep).
set -euo pipefail
cd "$(dirname "$0")/.."
bytes="${SEARCH_BYTES:-1000000000}"
count="${SEARCHABLE_COUNT:-50}"
work="${BENCH_DIR:-$PWD/target/bench-search}"
command -v rg >/dev/null || { echo "bench-search: needs ripgrep (apt-get install ripgrep)" >&2; exit 1; }
cargo build --release -q -p hoover -p hoover-bench
hoover="$PWD/target/release/hoover"
gen="$PWD/target/release/hoover-bench"
mkdir -p "$work"
"$gen" search "$work" "$bytes" | tee "$work/index.txt"

live="$work/live"
rm -rf "$live" && mkdir -p "$live"/{keys,home,root}
: > "$live/root/session.jsonl"
ssh-keygen -q -t ed25519 -N '' -f "$live/keys/client"
cp "$live/keys/client.pub" "$live/keys/authorized_keys"
HOME="$live/home" "$hoover" serve --store "$live/store" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --authorized-keys "$live/keys/authorized_keys" --host-key "$live/keys/host" 2>"$live/serve.log" &
server=$!
agent=""
trap 'kill $server $agent 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do grep -q 'hoover: listening' "$live/serve.log" && break; sleep 0.05; done
ssh_port=$(grep -o 'ssh=127.0.0.1:[0-9]*' "$live/serve.log" | cut -d: -f2)
http_port=$(grep -o 'http=127.0.0.1:[0-9]*' "$live/serve.log" | cut -d: -f2)
HOME="$live/home" RUST_LOG=warn "$hoover" watch --server "127.0.0.1:$ssh_port" --identity "$live/keys/client" \
  --known-hosts "$live/keys/known_hosts" --source bench --root "c=$live/root" 2>"$live/watch.log" &
agent=$!
"$gen" wait-versions "$http_port" 0
read -r a50 a99 w50 w99 < <("$gen" searchable "$http_port" "$live/root/session.jsonl" "$count" 300)
echo "version arrival -> searchable: p50 ${a50} ms, p99 ${a99} ms (target < 2000)"
echo "write -> searchable:           p50 ${w50} ms, p99 ${w99} ms"
