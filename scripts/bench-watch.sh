#!/usr/bin/env bash
# Benchmark of `hoover watch` on loopback: write-to-durable latency (p50, p99) over steady
# appends, agent CPU per appended KB on a 100 MB transcript against a full re-hash, idle CPU over
# 60 s, and resident memory while watching 5,000 files. Linux only (/proc).
# Sizes: WATCH_FILES (5000), BIG_BYTES (100 MB), APPENDS (200), INTERVAL_MS (200), IDLE_SECS (60).
# BENCH_BIN_DIR measures another build's hoover (the generator is always this checkout's).
set -euo pipefail
cd "$(dirname "$0")/.."
files="${WATCH_FILES:-5000}"
big_bytes="${BIG_BYTES:-100000000}"
appends="${APPENDS:-200}"
interval="${INTERVAL_MS:-200}"
idle="${IDLE_SECS:-60}"
work="${BENCH_DIR:-$PWD/target/bench-watch}"
cargo build --release -q -p hoover -p hoover-bench
# BENCH_BIN_DIR: the directory of another build's `hoover` to measure (to compare).
hoover="${BENCH_BIN_DIR:-$PWD/target/release}/hoover"
gen="$PWD/target/release/hoover-bench"
rm -rf "$work" && mkdir -p "$work"/{keys,home,root/big}
"$gen" gen "$work/root/many" $((files * 2000)) "$files" 5 >/dev/null
"$gen" big "$work/root/big/session.jsonl" "$big_bytes" 6
ssh-keygen -q -t ed25519 -N '' -f "$work/keys/client"
cp "$work/keys/client.pub" "$work/keys/authorized_keys"
HOME="$work/home" "$hoover" serve --store "$work/store" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --authorized-keys "$work/keys/authorized_keys" --host-key "$work/keys/host" 2>"$work/serve.log" &
server=$!
trap 'kill $server $agent 2>/dev/null || true' EXIT
agent=""
for _ in $(seq 1 200); do grep -q 'hoover: listening' "$work/serve.log" && break; sleep 0.05; done
ssh_port=$(grep -o 'ssh=127.0.0.1:[0-9]*' "$work/serve.log" | head -1 | cut -d: -f2)
http_port=$(grep -o 'http=127.0.0.1:[0-9]*' "$work/serve.log" | head -1 | cut -d: -f2)
HOME="$work/home" RUST_LOG=warn "$hoover" watch --server "127.0.0.1:$ssh_port" --identity "$work/keys/client" \
  --known-hosts "$work/keys/known_hosts" --source bench --root "c=$work/root" \
  --status-file "$work/agent.json" 2>"$work/watch.log" &
agent=$!
total=$(find "$work/root" -name '*.jsonl' | wc -l)
t0=$(date +%s.%N)
"$gen" wait-versions "$http_port" "$total"
t1=$(date +%s.%N)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
sleep 2
c0=$(ticks $agent); sleep "$idle"; c1=$(ticks $agent)
idle_cpu=$(echo "($c1 - $c0) / 100" | bc -l)
packs_du0=$(du -sB1 "$work/store/packs" | cut -f1); packs_n0=$(find "$work/store/packs" -type f | wc -l)
c0=$(ticks $agent)
read -r p50 p99 appended < <("$gen" latency "$http_port" "$work/root/big/session.jsonl" "$appends" "$interval" 99)
c1=$(ticks $agent)
append_cpu=$(echo "($c1 - $c0) / 100" | bc -l)
packs_du1=$(du -sB1 "$work/store/packs" | cut -f1); packs_n1=$(find "$work/store/packs" -type f | wc -l)
read -r rehash _ < <("$gen" rehash "$work/root/big/session.jsonl")
per_kb=$(echo "$append_cpu / ($appended / 1024)" | bc -l)
rehash_per_append=$rehash
python3 - "$work/results.md" <<PY
import sys
appends = $appends
per_append = $append_cpu / appends
lines = [
 "| measure | value | target |",
 "|---|---:|---|",
 f"| initial catch-up of $total files ($(du -sm "$work/root" | cut -f1) MB) (s) | {$t1 - $t0:.2f} | |",
 f"| write → durable on the server, p50 (ms) | $p50 | < 150 |",
 f"| write → durable on the server, p99 (ms) | $p99 | < 500 |",
 f"| agent CPU per append of ~{$appended / appends / 1024:.1f} KB to a 100 MB file (ms) | {per_append * 1000:.2f} | |",
 f"| agent CPU per appended KB (ms) | {$per_kb * 1000:.3f} | |",
 f"| full re-read + cut + hash of the 100 MB file (ms CPU) | {$rehash * 1000:.0f} | |",
 f"| full re-hash / agent CPU per appended KB | {($rehash / $per_kb) if $per_kb > 0 else float('inf'):.0f}x | >= 100x |",
 f"| full re-hash / agent CPU per append (~{$appended / appends / 1024:.1f} KB) | {($rehash / per_append) if per_append > 0 else float('inf'):.0f}x | |",
 f"| packs on disk per append (bytes allocated; pack files added) | {($packs_du1 - $packs_du0) / appends:,.0f} ({$packs_n1 - $packs_n0}) | |",
 f"| idle agent CPU over ${idle} s (s) | {$idle_cpu:.2f} | < 0.1 |",
 f"| agent resident memory watching $total files (MB) | {$rss_kb / 1024:.1f} | < 60 |",
]
text = "\n".join(lines)
print(text)
open(sys.argv[1], "w").write(text + "\n")
PY
