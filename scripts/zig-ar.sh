#!/usr/bin/env bash
# The archiver that goes with scripts/zig-cc-macos.sh.
exec python3 -m ziglang ar "$@"
