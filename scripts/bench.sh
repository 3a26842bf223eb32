#!/usr/bin/env bash
# Benchmark: hoover beside `rsync -az` over OpenSSH's sshd, both on loopback, same corpus.
# Prints initial sync MB/s, no-change re-sync time, and wire bytes (and hoover's new version
# metadata) for appending a 1 KB message line to a 100 MB transcript. Installs rsync and openssh-server when
# missing (needs root for apt). Sizes can be changed: BENCH_BYTES, BENCH_FILES, BIG_BYTES;
# BENCH_SERVE_ARGS adds arguments to `hoover serve` (e.g. --no-index). BENCH_PIN=1 runs each
# server (hoover serve, sshd) on CPU 0 and each client (hoover, rsync) on CPU 1 (`taskset`), as
# if on two machines. Also times restores of the big file's first and latest versions and
# `hoover verify`, and reports the store bytes the append added.
set -euo pipefail
cd "$(dirname "$0")/.."
bytes="${BENCH_BYTES:-1000000000}"
files="${BENCH_FILES:-2000}"
big_bytes="${BIG_BYTES:-100000000}"
work="${BENCH_DIR:-$PWD/target/bench}"
ssh_port="${BENCH_SSHD_PORT:-2022}"

need=()
command -v rsync >/dev/null || need+=(rsync)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# BENCH_BIN_DIR: the directory of the `hoover` and `hoover-bench` to measure (an older build,
# to compare); by default this checkout's, built here.
if [ -n "${BENCH_BIN_DIR:-}" ]; then
  bin_dir="$BENCH_BIN_DIR"
else
  cargo build --release -q -p hoover -p hoover-bench
  bin_dir="$PWD/target/release"
fi
hoover="$bin_dir/hoover"
# The generator is always this checkout's, so that both builds get the same input.
cargo build --release -q -p hoover-bench
gen="$PWD/target/release/hoover-bench"

rm -rf "$work" && mkdir -p "$work"/{src,keys,rsync-dest,home}
if [ "${BENCH_PIN:-0}" = 1 ]; then
  on_server=(taskset -c 0)
  on_client=(taskset -c 1)
else
  on_server=()
  on_client=()
fi
now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

# BENCH_SRC=DIR: the first sync is of a copy of DIR (e.g. ../shared/corpus/files) instead of
# the generated corpus; the big file for the append is then added after it, untimed.
make_big() { mkdir -p "$work/src/big"; "$gen" big "$work/src/big/session.jsonl" "$big_bytes" 2 >/dev/null; }
if [ -n "${BENCH_SRC:-}" ]; then
  echo "bench: a copy of $BENCH_SRC"
  mkdir -p "$work/src/corpus" && cp -r "$BENCH_SRC"/. "$work/src/corpus"
else
  echo "bench: generating $files files, $bytes bytes (seeded)"
  "$gen" gen "$work/src/corpus" "$bytes" "$files" 1 >/dev/null
  make_big
fi
total=$(du -sb "$work/src" | cut -f1)
first_files=$(find "$work/src" -type f | wc -l)

# --- hoover
ssh-keygen -q -t ed25519 -N '' -f "$work/keys/client"
cp "$work/keys/client.pub" "$work/keys/authorized_keys"
HOME="$work/home" "${on_server[@]}" "$hoover" serve --store "$work/store" --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --authorized-keys "$work/keys/authorized_keys" --host-key "$work/keys/host" ${BENCH_SERVE_ARGS:-} 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true; [ -f "$work/sshd.pid" ] && kill "$(cat "$work/sshd.pid")" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do grep -q 'hoover: listening' "$work/serve.log" && break; sleep 0.05; done
port=$(grep -o 'ssh=127.0.0.1:[0-9]*' "$work/serve.log" | head -1 | cut -d: -f2)
h() { HOME="$work/home" "${on_client[@]}" "$hoover" "$@" --server "127.0.0.1:$port" --identity "$work/keys/client" --known-hosts "$work/keys/known_hosts"; }

# CPU seconds the server has used: all its threads (`/proc/PID/stat`), or those named $1.
server_cpu() {
  if [ -z "${1:-}" ]; then
    awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$server/stat"
  else
    for task in /proc/"$server"/task/*; do
      if [ "$(cat "$task/comm" 2>/dev/null)" = "$1" ]; then cat "$task/stat"; fi
    done | awk -v t="$(getconf CLK_TCK)" '{s += $14 + $15} END {printf "%.2f", s / t}'
  fi
}
sync 2>/dev/null || true
t0=$(now); h sync --json --source bench --root "src=$work/src" >"$work/h1.json"; t1=$(now)
h_initial=$(elapsed "$t0" "$t1")
cpu_total=$(server_cpu); cpu_live=$(server_cpu live); cpu_indexer=$(server_cpu indexer)
t0=$(now); h sync --json --source bench --root "src=$work/src" >"$work/h2.json"; t1=$(now)
h_nochange=$(elapsed "$t0" "$t1")
# The same files again under another source (a reinstalled laptop): every chunk is on the
# server already, so nothing should be compressed or sent.
t0=$(now); h sync --json --source again --root "src=$work/src" >"$work/h2b.json"; t1=$(now)
h_again=$(elapsed "$t0" "$t1")
if [ -n "${BENCH_SRC:-}" ]; then
  make_big
  h sync --json --source bench --root "src=$work/src" >/dev/null
fi
cp "$work/src/big/session.jsonl" "$work/big-before.jsonl"
pack_bytes() { find "$work/store/packs" -type f -printf '%s\n' | awk '{s += $1} END {print s}'; }
packs_before=$(pack_bytes)
"$gen" append "$work/src/big/session.jsonl" 1024 77 >/dev/null
cp "$work/src/big/session.jsonl" "$work/big-after.jsonl"
t0=$(now); h sync --json --source bench --root "src=$work/src" >"$work/h3.json"; t1=$(now)
h_append_time=$(elapsed "$t0" "$t1")
h_append_wire=$(python3 -c "import json;d=json.load(open('$work/h3.json'));print(d['wire_bytes_sent']+d['wire_bytes_received'])")
h_append_stored=$(( $(pack_bytes) - packs_before ))
read -r h_meta h_entries _ < <("$gen" meta "$work/store" "bench/src/big/session.jsonl")
t0=$(now); h restore bench/src/big/session.jsonl -o "$work/restored-latest" >/dev/null; t1=$(now)
h_restore_latest=$(elapsed "$t0" "$t1")
cmp "$work/restored-latest" "$work/big-after.jsonl"
t0=$(now); h restore bench/src/big/session.jsonl --version 1 -o "$work/restored-first" >/dev/null; t1=$(now)
h_restore_first=$(elapsed "$t0" "$t1")
cmp "$work/restored-first" "$work/big-before.jsonl"
kill $server; wait $server 2>/dev/null || true
t0=$(now); "$hoover" verify --json --store "$work/store" >"$work/verify.json"; t1=$(now)
h_verify=$(elapsed "$t0" "$t1")
h_verify_bytes=$(python3 -c "import json;d=json.load(open('$work/verify.json'));assert d['clean'];print(d['bytes_checked'])")
h_initial_wire=$(python3 -c "import json;d=json.load(open('$work/h1.json'));print(d['wire_bytes_sent']+d['wire_bytes_received'])")

# --- rsync -az over OpenSSH
if [ -n "${BENCH_SRC:-}" ]; then
  rm -r "$work/src/big"
else
  cp "$work/big-before.jsonl" "$work/src/big/session.jsonl"
fi
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/keys/sshd_host"
cp "$work/keys/client.pub" "$work/keys/sshd_authorized"
chmod 600 "$work/keys/sshd_authorized"
cat >"$work/sshd_config" <<CONF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $work/keys/sshd_host
AuthorizedKeysFile $work/keys/sshd_authorized
PidFile $work/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
CONF
"${on_server[@]}" /usr/sbin/sshd -f "$work/sshd_config" -E "$work/sshd.log"
for _ in $(seq 1 100); do [ -f "$work/sshd.pid" ] && break; sleep 0.05; done
rs() { "${on_client[@]}" rsync -az --stats -e "ssh -p $ssh_port -i $work/keys/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR" "$work/src/" "127.0.0.1:$work/rsync-dest/"; }
sync 2>/dev/null || true
t0=$(now); rs >"$work/r1.txt"; t1=$(now); r_initial=$(elapsed "$t0" "$t1")
t0=$(now); rs >"$work/r2.txt"; t1=$(now); r_nochange=$(elapsed "$t0" "$t1")
if [ -n "${BENCH_SRC:-}" ]; then
  mkdir -p "$work/src/big" && cp "$work/big-before.jsonl" "$work/src/big/session.jsonl"
  rs >/dev/null
fi
cp "$work/big-after.jsonl" "$work/src/big/session.jsonl"
t0=$(now); rs >"$work/r3.txt"; t1=$(now); r_append_time=$(elapsed "$t0" "$t1")
r_sent=$(grep 'Total bytes sent' "$work/r3.txt" | tr -dc 0-9)
r_recv=$(grep 'Total bytes received' "$work/r3.txt" | tr -dc 0-9)
r_append_wire=$((r_sent + r_recv))
r_initial_wire=$(( $(grep 'Total bytes sent' "$work/r1.txt" | tr -dc 0-9) + $(grep 'Total bytes received' "$work/r1.txt" | tr -dc 0-9) ))

mb=$(echo "$total / 1000000" | bc -l)
python3 - "$work/results.md" <<PY
import sys
rows = [
 ("initial sync, $(printf %.1f "$mb") MB, $first_files files (s)", $h_initial, $r_initial),
 ("initial sync (MB/s)", $mb / $h_initial, $mb / $r_initial),
 ("initial sync: bytes on the wire", $h_initial_wire, $r_initial_wire),
 ("no-change re-sync (s)", $h_nochange, $r_nochange),
 ("append 1 KB to a $(($big_bytes / 1000000)) MB file: time (s)", $h_append_time, $r_append_time),
 ("append 1 KB: bytes on the wire", $h_append_wire, $r_append_wire),
]
out = ["| measure | hoover | rsync -az | hoover / rsync |", "|---|---:|---:|---:|"]
for name, h, r in rows:
    fmt = (lambda x: f"{x:,.0f}") if "bytes" in name else (lambda x: f"{x:.2f}")
    out.append(f"| {name} | {fmt(h)} | {fmt(r)} | {h / r:.2f} |")
out.append("")
out.append(f"hoover serve's CPU when the first sync was done: {$cpu_total:.2f} s, of which the live feed's thread {$cpu_live:.2f} s and the indexer's {$cpu_indexer:.2f} s.")
out.append(f"hoover, the same files under another source (every chunk already stored): {$h_again:.2f} s.")
out.append(f"hoover version metadata added by the 1 KB append: $h_meta bytes ($h_entries new chunk entries); pack bytes it added: $h_append_stored.")
out.append(f"hoover restore of the {$big_bytes // 1000000} MB file: latest version {$h_restore_latest:.2f} s, first version {$h_restore_first:.2f} s; hoover verify: {$h_verify:.2f} s for {$h_verify_bytes / 1e6:,.0f} MB of versions ({$h_verify_bytes / 1e6 / $h_verify:,.0f} MB/s).")
text = "\n".join(out)
print(text)
open(sys.argv[1], "w").write(text + "\n")
PY
