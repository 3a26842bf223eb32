#!/usr/bin/env bash
# The test command: every crate's unit tests and the end-to-end tests of the real binary, then
# the README's quick start as a newcomer runs it (scripts/quickstart.sh: `cargo install`, then
# `hoover up` and plain client commands). Arguments go to `cargo test`, and then only the tests
# run (for example `scripts/test.sh --test up`).
# Needs ../shared beside the project (the transcript corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets "$@"
if [ $# -eq 0 ]; then
  bash scripts/quickstart.sh
fi
