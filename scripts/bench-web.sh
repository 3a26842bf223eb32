#!/usr/bin/env bash
# Benchmark of the web page (issue 5) on loopback: write on the laptop → message on an SSE
# client of /api/live (p50, p99 over LIVE_COUNT appends), and the time to serve the dashboard
# and a 5,000-message transcript (p50, p99 over RENDER_COUNT requests), with a store of about
# 100 MB of generated transcripts beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
live_count="${LIVE_COUNT:-100}"
render_count="${RENDER_COUNT:-50}"
work="${BENCH_DIR:-$PWD/target/bench-web}"
cargo build --release -q -p hoover -p hoover-bench
hoover="$PWD/target/release/hoover"
gen="$PWD/target/release/hoover-bench"
rm -rf "$work" && mkdir -p "$work"/{keys,home,root/live}
"$gen" gen "$work/root/many" 100000000 500 3 >/dev/null
python3 - "$work/root/live/bench-5000.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    parent = None
    for i in range(5000):
        uuid = f"00000000-0000-4000-8000-{i:012d}"
        role = "user" if i % 2 == 0 else "assistant"
        text = f"message {i} of the long session: " + "some words about the build, the tests and the fix " * 4
        rec = {"type": role, "sessionId": "bench-5000", "uuid": uuid, "parentUuid": parent,
               "cwd": "/home/dev/src/long", "timestamp": f"2025-06-01T10:{(i // 60) % 60:02d}:{i % 60:02d}Z",
               "message": {"role": role, "content": text}}
        f.write(json.dumps(rec) + "\n")
        parent = uuid
PY
: > "$work/root/live/probe.jsonl"
ssh-keygen -q -t ed25519 -N '' -f "$work/keys/client"
cp "$work/keys/client.pub" "$work/keys/authorized_keys"
HOME="$work/home" "$hoover" serve --store "$work/store" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --authorized-keys "$work/keys/authorized_keys" --host-key "$work/keys/host" 2>"$work/serve.log" &
server=$!
agent=""
trap 'kill $server $agent 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do grep -q 'hoover: listening' "$work/serve.log" && break; sleep 0.05; done
ssh_port=$(grep -o 'ssh=127.0.0.1:[0-9]*' "$work/serve.log" | cut -d: -f2)
http_port=$(grep -o 'http=127.0.0.1:[0-9]*' "$work/serve.log" | cut -d: -f2)
HOME="$work/home" RUST_LOG=warn "$hoover" watch --server "127.0.0.1:$ssh_port" --identity "$work/keys/client" \
  --known-hosts "$work/keys/known_hosts" --source bench --root "c=$work/root" 2>"$work/watch.log" &
agent=$!
total=$(find "$work/root" -name '*.jsonl' | wc -l)
"$gen" wait-versions "$http_port" "$total"
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$http_port/api/search?q=session:bench-5000&limit=1" | grep -q '"total":5000' && break
  sleep 0.1
done
read -r l50 l99 < <("$gen" live-latency "$http_port" "$work/root/live/probe.jsonl" "$live_count" 300)
read -r d50 d99 < <("$gen" render "$http_port" / "$render_count")
read -r s50 s99 < <("$gen" render "$http_port" /sessions/bench-5000 "$render_count")
messages=$(curl -s "http://127.0.0.1:$http_port/api/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["index"]["messages"])')
echo "store: $total files, $messages messages"
echo "write -> SSE client, p50 ${l50} ms, p99 ${l99} ms (targets 300 / 1000)"
echo "dashboard, p50 ${d50} ms, p99 ${d99} ms (target < 100)"
echo "5,000-message transcript, p50 ${s50} ms, p99 ${s99} ms (target < 100)"
