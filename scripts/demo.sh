#!/usr/bin/env bash
# Runs the main job locally on loopback: a server with a fresh store, then a sync of your
# Claude Code transcripts (or, when there are none, the demo transcripts in ../shared/corpus),
# then a listing. Everything lives under target/demo; nothing else on the machine is touched.
# Until `hoover up` exists, this is the one-command tour.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin="$PWD/target/release/hoover"
demo="${HOOVER_DEMO_DIR:-$PWD/target/demo}"
ssh_port="${HOOVER_DEMO_SSH_PORT:-2222}"
http_port="${HOOVER_DEMO_HTTP_PORT:-8080}"
rm -rf "$demo" && mkdir -p "$demo"
ssh-keygen -q -t ed25519 -N '' -C hoover-demo -f "$demo/id_ed25519"
cp "$demo/id_ed25519.pub" "$demo/authorized_keys"

"$bin" serve --store "$demo/store" --ssh-listen "127.0.0.1:$ssh_port" \
  --http-listen "127.0.0.1:$http_port" --authorized-keys "$demo/authorized_keys" \
  --host-key "$demo/host_key" 2>"$demo/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q 'hoover: listening' "$demo/serve.log" 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$demo/serve.log"; exit 1; }
  sleep 0.1
done

projects="${CLAUDE_CONFIG_DIR:-$HOME/.claude}/projects"
if [ -d "$projects" ] && [ -n "$(find "$projects" -name '*.jsonl' -print -quit 2>/dev/null)" ]; then
  root="claude=$projects"
else
  root="claude=$PWD/../shared/corpus/files"
  echo "demo: no transcripts in $projects; syncing the demo corpus instead"
fi
client=(--server "127.0.0.1:$ssh_port" --identity "$demo/id_ed25519" --known-hosts "$demo/known_hosts")
"$bin" sync "${client[@]}" --root "$root"
"$bin" ls "${client[@]}" | head -20
echo
echo "demo: server running (ssh 127.0.0.1:$ssh_port, http http://127.0.0.1:$http_port/healthz); try:"
echo "  $bin versions ${client[*]} KEY"
echo "  $bin restore ${client[*]} KEY -o /tmp/restored.jsonl"
echo "  $bin verify --store $demo/store"
echo "demo: press Ctrl-C to stop"
wait $server
