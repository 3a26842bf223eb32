#!/usr/bin/env bash
# Benchmark of what expensive pages cost the rest of the server (issue 11), on loopback:
# - the server's peak memory while four clients download one DOWNLOAD_MB version at once
#   (downloads stream; before, each loaded the whole version);
# - /healthz's latency while three diffs of two 30,000-line versions that differ on every line
#   compute at once (diffs run on the blocking pool with a 2 s deadline; before, they ran on
#   the async runtime and held up everything else).
# Prints the figures and their ratios; docs/benchmarks.md records them.
set -euo pipefail
cd "$(dirname "$0")/.."
download_mb="${DOWNLOAD_MB:-512}"
work="${BENCH_DIR:-$PWD/target/bench-bounds}"
cargo build --release -q -p hoover
hoover="${HOOVER_BIN:-$PWD/target/release/hoover}"
rm -rf "$work" && mkdir -p "$work"/{keys,home,root/p}
python3 - "$work/root/p" "$download_mb" <<'PY'
import json, os, sys
root, mb = sys.argv[1], int(sys.argv[2])
line = json.dumps({"type": "user", "message": {"role": "user", "content": "x" * 900}}) + "\n"
with open(os.path.join(root, "big.jsonl"), "w") as f:
    for _ in range(mb * 1024 * 1024 // len(line)):
        f.write(line)
with open(os.path.join(root, "diff.jsonl"), "w") as f:
    for i in range(30000):
        f.write(json.dumps({"n": i, "t": f"a-{(i * 7919) % 30011}"}) + "\n")
PY
ssh-keygen -q -t ed25519 -N '' -f "$work/keys/client"
cp "$work/keys/client.pub" "$work/keys/authorized_keys"
HOME="$work/home" "$hoover" serve --no-index --store "$work/store" --ssh-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --authorized-keys "$work/keys/authorized_keys" \
  --host-key "$work/keys/host" 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do grep -q 'hoover: listening' "$work/serve.log" && break; sleep 0.05; done
ssh_port=$(grep -o 'ssh=127.0.0.1:[0-9]*' "$work/serve.log" | cut -d: -f2)
http_port=$(grep -o 'http=127.0.0.1:[0-9]*' "$work/serve.log" | cut -d: -f2)
sync() {
  HOME="$work/home" "$hoover" sync --server "127.0.0.1:$ssh_port" --identity "$work/keys/client" \
    --known-hosts "$work/keys/known_hosts" --source bench --root "c=$work/root" >/dev/null 2>&1
}
sync
python3 - "$work/root/p/diff.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(30000):
        f.write(json.dumps({"n": i, "t": f"b-{(i * 7919) % 30011}"}) + "\n")
PY
sync
python3 - "$server" "$http_port" "$download_mb" <<'PY'
import sys, threading, time, urllib.request
pid, port, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
base = f"http://127.0.0.1:{port}"

def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

def fetch(path, out=None):
    with urllib.request.urlopen(base + path, timeout=600) as r:
        n = 0
        while True:
            piece = r.read(1 << 20)
            if not piece:
                break
            n += len(piece)
        if out is not None:
            out.append(n)

def while_running(threads, probe):
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads):
        samples.append(probe())
    for t in threads:
        t.join()
    return samples

idle = rss_mb()
sizes = []
started = time.time()
peak = max(while_running(
    [threading.Thread(target=fetch, args=("/download/1/bench/c/p/big.jsonl", sizes)) for _ in range(4)],
    lambda: (time.sleep(0.02), rss_mb())[1]))
took = time.time() - started
assert len(sizes) == 4 and all(s == sizes[0] for s in sizes), sizes
print(f"4 downloads of {sizes[0] / 1e6:.0f} MB at once: server RSS {idle:.0f} MB idle, {peak:.0f} MB peak "
      f"(+{peak - idle:.0f} MB, {(peak - idle) / (4 * sizes[0] / 2**20):.3f} of the bytes served), {took:.1f} s")

def healthz_ms():
    t = time.time()
    fetch("/healthz")
    return (time.time() - t) * 1000

alone = sorted(healthz_ms() for _ in range(50))
started = time.time()
during = sorted(while_running(
    [threading.Thread(target=fetch, args=("/diff/bench/c/p/diff.jsonl?a=1&b=2",)) for _ in range(3)],
    healthz_ms))
took = time.time() - started
print(f"/healthz alone: p50 {alone[len(alone) // 2]:.1f} ms, max {alone[-1]:.1f} ms")
print(f"/healthz during 3 diffs of 30,000 changed lines ({took:.1f} s for the three): "
      f"p50 {during[len(during) // 2]:.1f} ms, max {during[-1]:.1f} ms over {len(during)} requests")
PY
