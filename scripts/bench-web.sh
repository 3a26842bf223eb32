#!/usr/bin/env bash
# Benchmark of the web page (issue 5) on loopback: write on the laptop → message on an SSE
# client of /api/live (p50, p99 over LIVE_COUNT appends), and the time to serve the dashboard,
# a 5,000-message transcript and a 20,000-line real-shaped session with subagents (p50, p99
# over RENDER_COUNT requests), with a store of about 100 MB of generated transcripts beside
# them. The real-shaped session is the corpus's 2.1 session ef958aa1 (180 lines, six
# subagents under <session>/subagents/) repeated with fresh uuids, each copy chained to the
# one before, until it has 20,000 lines.
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
python3 - "$PWD/../shared/corpus/files" "$work/root/live" <<'PY'
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
prefix = "iansherr__claude-code-log__real_projects~-experiments-worktrees~ef958aa1-0e93-49f0-bb71-150f63befcd1"
main = [json.loads(l) for l in open(os.path.join(src, prefix + ".jsonl")) if l.strip()]
agents = {}
for name in sorted(os.listdir(src)):
    if name.startswith(prefix + "~subagents~agent-"):
        aid = name[len(prefix + "~subagents~agent-"):-len(".jsonl")]
        agents[aid] = [json.loads(l) for l in open(os.path.join(src, name)) if l.strip()]
ID_FIELDS = ("uuid", "parentUuid", "logicalParentUuid", "agentId", "id", "tool_use_id", "sessionId")
def fresh(v, i):
    if isinstance(v, dict):
        return {k: (f"{x}-{i}" if k in ID_FIELDS and isinstance(x, str) and k != "sessionId" else
                    "bench-real" if k == "sessionId" else fresh(x, i)) for k, x in v.items()}
    if isinstance(v, list):
        return [fresh(x, i) for x in v]
    return v
os.makedirs(os.path.join(out, "bench-real", "subagents"), exist_ok=True)
lines, copy, last = 0, 0, None
with open(os.path.join(out, "bench-real.jsonl"), "w") as f:
    while lines < 20000:
        for n, rec in enumerate(main):
            r = fresh(rec, copy)
            if n == 0 and last is not None:
                r["parentUuid"] = last
            f.write(json.dumps(r) + "\n")
            lines += 1
            if isinstance(r.get("uuid"), str) and not r.get("isSidechain"):
                last = r["uuid"]
        for aid, recs in agents.items():
            with open(os.path.join(out, "bench-real", "subagents", f"agent-{aid}-{copy}.jsonl"), "w") as a:
                for rec in recs:
                    a.write(json.dumps(fresh(rec, copy)) + "\n")
                    lines += 1
        copy += 1
print(f"bench-real: {lines} lines in {copy} copies", file=sys.stderr)
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
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$http_port/sessions/bench-real" -o "$work/real.html" && grep -q 'subagent' "$work/real.html" && break
  sleep 0.1
done
read -r r50 r99 < <("$gen" render "$http_port" /sessions/bench-real "$render_count")
real_bytes=$(du -cb "$work/root/live/bench-real.jsonl" "$work/root/live/bench-real" | tail -1 | cut -f1)
real_page=$(stat -c %s "$work/real.html")
messages=$(curl -s "http://127.0.0.1:$http_port/api/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["index"]["messages"])')
echo "store: $total files, $messages messages"
echo "write -> SSE client, p50 ${l50} ms, p99 ${l99} ms (targets 300 / 1000)"
echo "dashboard, p50 ${d50} ms, p99 ${d99} ms (target < 100)"
echo "5,000-message transcript, p50 ${s50} ms, p99 ${s99} ms (target < 100)"
echo "20,000-line real-shaped session with subagents ($real_bytes bytes of transcript, a $real_page-byte page), p50 ${r50} ms, p99 ${r99} ms"
