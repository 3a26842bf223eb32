#!/usr/bin/env bash
# Type-checks the whole workspace for the laptop this is built for, a Mac (aarch64-apple-darwin):
# `cargo check`, no linking. C dependencies (zstd, SQLite, ring) compile with zig's clang.
# Needs: `rustup target add aarch64-apple-darwin` and `pip install ziglang` (.ci/run does both).
set -euo pipefail
cd "$(dirname "$0")/.."
here="$PWD/scripts"
export CC_aarch64_apple_darwin="$here/zig-cc-macos.sh"
export CXX_aarch64_apple_darwin="$here/zig-cc-macos.sh"
export AR_aarch64_apple_darwin="$here/zig-ar.sh"
# A warning in macOS-only code (FSEvents, launchd, doctor's Local Network check) fails it, as
# clippy's -D warnings does on Linux.
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"
exec cargo check --workspace --all-targets --target aarch64-apple-darwin "$@"
