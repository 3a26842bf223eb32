#!/usr/bin/env bash
# Benchmark: what keeping every version costs. Replays real sessions as they grew
# (`../shared/corpus/files`, or REPLAY_SRC), appending whole lines to each file and running
# `hoover sync` after each step, then compares the store (without its search index) with
# `zstd -3` of the final files, and reports the bytes on the wire.
#
#   scripts/bench-versions.sh            # a version per line: step k = the first k lines
#   REPLAY_EVERY=4 scripts/bench-versions.sh     # a sync every 4 lines of every file
#   REPLAY_STEPS=200 scripts/bench-versions.sh   # 200 steps, each a 1/200 of every file
#
# Results go to stdout and to target/bench-versions/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
src="${REPLAY_SRC:-$PWD/../shared/corpus/files}"
steps="${REPLAY_STEPS:-}"
every="${REPLAY_EVERY:-1}"
work="${BENCH_DIR:-$PWD/target/bench-versions}"

cargo build --release -q -p hoover -p hoover-bench
# BENCH_BIN_DIR: the directory of another build's `hoover` to measure (to compare).
hoover="${BENCH_BIN_DIR:-$PWD/target/release}/hoover"
gen="$PWD/target/release/hoover-bench"

rm -rf "$work" && mkdir -p "$work"/{tree,keys,home}
ssh-keygen -q -t ed25519 -N '' -f "$work/keys/client"
cp "$work/keys/client.pub" "$work/keys/authorized_keys"
HOME="$work/home" "$hoover" serve --store "$work/store" --no-index --ssh-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --authorized-keys "$work/keys/authorized_keys" \
  --host-key "$work/keys/host" 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do grep -q 'hoover: listening' "$work/serve.log" && break; sleep 0.05; done
port=$(grep -o 'ssh=127.0.0.1:[0-9]*' "$work/serve.log" | head -1 | cut -d: -f2)
h() { HOME="$work/home" "$hoover" "$@" --server "127.0.0.1:$port" --identity "$work/keys/client" --known-hosts "$work/keys/known_hosts"; }

if [ -n "$steps" ]; then
  last=$steps
  what="$steps steps, each 1/$steps of every file's lines"
else
  last=$(find "$src" -maxdepth 1 -type f -exec sh -c 'wc -l <"$1"' _ {} \; | sort -n | tail -1)
  what="a sync every $every line(s) ($last lines in the longest file)"
fi
echo "bench: replaying $(find "$src" -maxdepth 1 -type f | wc -l) files of $src, $what"
: >"$work/syncs.jsonl"
t0=$(date +%s.%N)
if [ -n "$steps" ]; then every=1; fi
for k in $(seq "$every" "$every" $((last + every - 1))); do
  changed=$("$gen" grow "$src" "$work/tree" "$k" $steps)
  [ "$changed" -gt 0 ] || continue
  h sync --json --source bench --root "r=$work/tree" >>"$work/syncs.jsonl"
done
t1=$(date +%s.%N)
kill $server; wait $server 2>/dev/null || true
# Stopped cleanly, the version log holds everything (no write-ahead log left).
"$hoover" verify --json --store "$work/store" >"$work/verify.json"

python3 - "$work" "$src" "$t0" "$t1" <<'PY'
import json, os, subprocess, sys
work, src, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
syncs = [json.loads(l) for l in open(f"{work}/syncs.jsonl") if l.strip()]
def size(path, allocated=False):
    total = 0
    for root, dirs, files in os.walk(path):
        if root == os.path.join(work, "store") and "index" in dirs:
            dirs.remove("index")
        for f in files:
            st = os.stat(os.path.join(root, f))
            total += st.st_blocks * 512 if allocated else st.st_size
    return total
store = size(f"{work}/store")
disk = size(f"{work}/store", allocated=True)
packs = size(f"{work}/store/packs")
pack_files = sum(len(fs) for _, _, fs in os.walk(f"{work}/store/packs"))
db = sum(os.path.getsize(f"{work}/store/{f}") for f in os.listdir(f"{work}/store") if f.startswith("versions.db"))
finals = [os.path.join(f"{work}/tree", f) for f in sorted(os.listdir(f"{work}/tree"))]
raw = sum(os.path.getsize(f) for f in finals)
z3 = sum(len(subprocess.run(["zstd", "-3", "-c", f], capture_output=True, check=True).stdout) for f in finals)
verify = json.load(open(f"{work}/verify.json"))
versions = sum(s["versions_new"] for s in syncs)
wire = sum(s["wire_bytes_sent"] + s["wire_bytes_received"] for s in syncs)
sent = sum(s["wire_bytes_sent"] for s in syncs)
rows = [
    ("files, final bytes", f"{len(finals)} files, {raw:,} B"),
    ("versions stored (syncs)", f"{versions:,} ({len(syncs)})"),
    ("zstd -3 of the final files (each alone)", f"{z3:,} B"),
    ("store without index", f"{store:,} B = {store / z3:.2f}x zstd -3"),
    ("  packs", f"{packs:,} B in {pack_files:,} files"),
    ("  version log (versions.db)", f"{db:,} B"),
    ("store per version", f"{store / max(versions, 1):,.0f} B"),
    ("on disk (blocks allocated, without index)", f"{disk:,} B = {disk / z3:.2f}x zstd -3"),
    ("bytes on the wire (sent + received)", f"{wire:,} B = {wire / z3:.2f}x zstd -3; sent {sent:,} B"),
    ("replay time (s)", f"{t1 - t0:.1f}"),
    ("verify", "clean" if verify.get("clean") else "PROBLEMS"),
]
out = ["| measure | value |", "|---|---:|"] + [f"| {a} | {b} |" for a, b in rows]
text = "\n".join(out)
print(text)
open(f"{work}/results.md", "w").write(text + "\n")
PY
