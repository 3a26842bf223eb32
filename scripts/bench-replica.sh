#!/usr/bin/env bash
# Benchmark: the off-site copy (`hoover serve --replicate-to`) against a real S3 server on
# loopback (s3s-fs). A first sync of a generated corpus (BENCH_BYTES, 1 GB by default) with the
# copy on: how far behind the copy falls during the sync (polled every half second), how long it
# takes to catch up once the sync is done, the copy's throughput over the whole run; then the
# server's store is thrown away and `hoover recover` rebuilds it from the copy (timed, verified).
# BENCH_SERVE_ARGS adds `hoover serve` arguments (default --no-index).
set -euo pipefail
cd "$(dirname "$0")/.."
bytes="${BENCH_BYTES:-1000000000}"
files="${BENCH_FILES:-2000}"
work="${BENCH_DIR:-$PWD/target/bench-replica}"
command -v s3s-fs >/dev/null || cargo install -q s3s-fs --version 0.14.1 --features binary --locked
cargo build --release -q -p hoover -p hoover-bench
hoover="$PWD/target/release/hoover"
gen="$PWD/target/release/hoover-bench"
rm -rf "$work" && mkdir -p "$work"/{src,keys,home,s3/bench}
now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

echo "bench-replica: generating $files files, $bytes bytes (seeded)"
"$gen" gen "$work/src/corpus" "$bytes" "$files" 1 >/dev/null
total=$(du -sb "$work/src" | cut -f1)

s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3s-fs --host 127.0.0.1 --port "$s3_port" --access-key benchAccessKey --secret-key benchSecretKey0123456789 "$work/s3" >"$work/s3.log" 2>&1 &
s3=$!
export AWS_ACCESS_KEY_ID=benchAccessKey AWS_SECRET_ACCESS_KEY=benchSecretKey0123456789 AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
endpoint="http://127.0.0.1:$s3_port"
url="s3://bench/hoover"

ssh-keygen -q -t ed25519 -N '' -f "$work/keys/client"
cp "$work/keys/client.pub" "$work/keys/authorized_keys"
HOME="$work/home" "$hoover" serve --store "$work/store" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --authorized-keys "$work/keys/authorized_keys" --host-key "$work/keys/host" \
  --replicate-to "$url" --s3-endpoint "$endpoint" ${BENCH_SERVE_ARGS:---no-index} 2>"$work/serve.log" &
server=$!
trap 'kill $server $s3 2>/dev/null || true; kill "${poller:-}" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do grep -q 'hoover: listening' "$work/serve.log" && break; sleep 0.05; done
port=$(grep -o 'ssh=127.0.0.1:[0-9]*' "$work/serve.log" | head -1 | cut -d: -f2)
http=$(grep -o 'http=127.0.0.1:[0-9]*' "$work/serve.log" | head -1 | cut -d: -f2)
copy() { curl -s "http://127.0.0.1:$http/api/stats" | python3 -c 'import json,sys; c=json.load(sys.stdin)["copy"]; print(c["bytes_behind"], int(c["log_behind"]), c["bytes_copied"], int(c["error"] is not None))'; }

# How far behind the copy is, every half second, while the sync runs.
( while true; do echo "$(now) $(copy)"; sleep 0.5; done ) >"$work/lag.txt" 2>/dev/null &
poller=$!
t0=$(now)
HOME="$work/home" "$hoover" sync --json --source bench --root "src=$work/src" --server "127.0.0.1:$port" \
  --identity "$work/keys/client" --known-hosts "$work/keys/known_hosts" >"$work/sync.json"
t1=$(now)
until read -r behind log_behind copied failing < <(copy) && [ "$behind" = 0 ]; do sleep 0.2; done
t2=$(now)
until read -r behind log_behind copied failing < <(copy) && [ "$behind" = 0 ] && [ "$log_behind" = 0 ]; do sleep 0.2; done
t2b=$(now)
kill $poller 2>/dev/null || true
max_behind=$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' "$work/lag.txt")
pack_bytes=$(find "$work/store/packs" -type f -printf '%s\n' | awk '{s += $1} END {print s}')

kill $server; wait $server 2>/dev/null || true
rm -rf "$work/store"
t3=$(now)
"$hoover" recover --from "$url" --s3-endpoint "$endpoint" --store "$work/recovered" --json >"$work/recover.json"
t4=$(now)
python3 - "$work/results.md" <<PY
import json, sys
r = json.load(open("$work/recover.json"))
assert r["clean"], r
sync_s = $(elapsed "$t0" "$t1")
drain_s = $(elapsed "$t1" "$t2")
log_s = $(elapsed "$t1" "$t2b")
whole_s = $(elapsed "$t0" "$t2")
recover_s = $(elapsed "$t3" "$t4")
out = [
  f"| measure | value |", "|---|---:|",
  f"| first sync of {$total / 1e6:,.1f} MB, copy on (s) | {sync_s:.2f} |",
  f"| pack bytes to copy | {$pack_bytes:,} |",
  f"| most bytes the copy was behind during the sync | {$max_behind:,} |",
  f"| every pack byte copied, after the sync ended (s) | {drain_s:.2f} |",
  f"| the log's snapshot too (due within --replicate-every, 60 s, of the first commit after the last one), after the sync ended (s) | {log_s:.2f} |",
  f"| copy throughput, sync start to every pack byte copied (MB/s of packs) | {$pack_bytes / 1e6 / whole_s:.1f} |",
  f"| hoover recover: {r['files']:,} files, {r['versions']:,} versions, {r['pack_bytes']:,} pack bytes, verified (s) | {recover_s:.2f} |",
]
text = "\n".join(out)
print(text)
open(sys.argv[1], "w").write(text + "\n")
PY
