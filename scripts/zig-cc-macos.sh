#!/usr/bin/env bash
# A C compiler for aarch64-apple-darwin on Linux, for `scripts/check-macos.sh`: zig's clang
# with macOS headers (the `ziglang` Python package). The cc crate adds `--target=…` and
# `-arch …`, which zig spells its own way (`-target aarch64-macos`); they are dropped here.
set -euo pipefail
args=()
skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case "$a" in
    --target=*) ;;
    -arch) skip=1 ;;
    *) args+=("$a") ;;
  esac
done
exec python3 -m ziglang cc -target aarch64-macos "${args[@]}"
