#!/usr/bin/env bash
# The test command: every crate's unit tests and the end-to-end tests of the real binary, then
# the README's quick start as a newcomer runs it (scripts/quickstart.sh: `cargo install`, then
# `hoover up` and plain client commands). Arguments go to `cargo test`, and then only the tests
# run (for example `scripts/test.sh --test up`).
# Needs ../shared beside the project (the transcript corpus), and installs s3s-fs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/replica.rs copies stores to a real S3 server on loopback: s3s-fs (the newest release
# that builds with Rust 1.95), installed once into ~/.cargo/bin.
command -v s3s-fs >/dev/null || [ -n "${HOOVER_S3S_FS:-}" ] \
  || cargo install -q s3s-fs --version 0.14.1 --features binary --locked
cargo test --workspace --all-targets "$@"
if [ $# -eq 0 ]; then
  bash scripts/quickstart.sh
fi
