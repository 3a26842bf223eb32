#!/usr/bin/env bash
# The test command: every crate's unit tests and the end-to-end tests of the real binary.
# Needs ../shared beside the project (the transcript corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --all-targets "$@"
