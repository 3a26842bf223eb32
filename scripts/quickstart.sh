#!/usr/bin/env bash
# The README's quick start, as a newcomer runs it: the documented install command, `hoover up`
# with no transcripts (so with the demo tree), then plain `hoover ls`, `hoover search`,
# `hoover status` and `hoover doctor` from other processes; each must exit 0, and `up` must
# stop cleanly on SIGTERM. scripts/test.sh runs it after the tests.
#
# It differs from the README in three things only, so that it touches nothing of yours: the
# binary goes into a throwaway `--root`, HOME is a throwaway directory, and `up` listens on
# ports the system picks instead of 2222 and 8080. In a clean clone the install is a release
# build from scratch (about seven minutes on two cores); afterwards it reuses target/release.
set -euo pipefail
cd "$(dirname "$0")/.."

readme_cmd='cargo install --locked --path . && hoover up'
grep -qxF "$readme_cmd" README.md || {
  echo "quickstart: README.md no longer gives \`$readme_cmd\`; update this script with it" >&2
  exit 1
}

tmp=$(mktemp -d)
up=
cleanup() {
  [ -n "$up" ] && kill -KILL "$up" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "quickstart: $*" >&2
  echo "quickstart: hoover up said:" >&2
  sed 's/^/  | /' "$tmp/up.log" >&2 || true
  exit 1
}

echo "quickstart: cargo install --locked --path . (into a throwaway root)"
cargo install --locked --path . --root "$tmp/cargo" --quiet
export PATH="$tmp/cargo/bin:$PATH" HOME="$tmp/home" CLAUDE_CONFIG_DIR="$tmp/claude"
unset XDG_CONFIG_HOME XDG_DATA_HOME XDG_STATE_HOME HOOVER_CONFIG HOOVER_SERVER RUST_LOG
mkdir -p "$HOME" "$CLAUDE_CONFIG_DIR/projects"
[ "$(command -v hoover)" = "$tmp/cargo/bin/hoover" ] || fail "the installed hoover is not the one on PATH"
hoover --version

hoover up --ssh-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >/dev/null 2>"$tmp/up.log" &
up=$!

# Waits (up to $1 seconds) until the command in the remaining arguments succeeds.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$up" 2>/dev/null || fail "hoover up exited while waiting for $what"
    [ $SECONDS -lt $deadline ] || fail "no $what after ${seconds}s"
    sleep 0.2
  done
}
wait_for "client settings from hoover up" 120 grep -q 'client settings in' "$tmp/up.log"
searchable() { hoover search borrow checker --json | grep -q '"total":[1-9]'; }
wait_for "searchable demo chats" 120 searchable

for cmd in "ls" "search borrow checker" "status" "doctor"; do
  echo "quickstart: hoover $cmd"
  # shellcheck disable=SC2086 # the words of $cmd are the arguments
  out=$(hoover $cmd 2>&1) || fail "\`hoover $cmd\` exited with $?: $out"
  printf '%s\n' "$out" | head -n 8 | sed 's/^/  | /'
done

kill -TERM "$up"
code=0
wait "$up" || code=$?
up=
[ "$code" -eq 0 ] || fail "hoover up exited with $code on SIGTERM"
echo "quickstart: ok"
