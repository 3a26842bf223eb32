#!/usr/bin/env bash
# Runs each fuzz target for FUZZ_SECONDS (default 60) with libFuzzer, the way `cargo fuzz run`
# does (nightly, SanitizerCoverage), without needing cargo-fuzz installed. The corpus starts
# from fuzz/regressions/<target>; a crash stops the run, and its input (in
# target/fuzz/artifacts/<target>/) belongs in fuzz/regressions/<target>/, where
# `scripts/test.sh` replays it forever after. Prints libFuzzer's execution counts.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
targets=(frame message transcript_line)
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the coverage flags off build scripts and proc macros.
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
cargo +nightly build --release -q --manifest-path fuzz/Cargo.toml --target-dir target/fuzz/build --target "$host"
for t in "${targets[@]}"; do
  corpus="target/fuzz/corpus/$t"
  artifacts="target/fuzz/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/regressions/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "== fuzz $t for ${seconds}s"
  if ! target/fuzz/build/"$host"/release/"$t" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 2>"target/fuzz/$t.log"; then
    tail -n 40 "target/fuzz/$t.log" >&2
    echo "fuzz: $t crashed; the input is in $artifacts/: copy it to fuzz/regressions/$t/ and fix" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "target/fuzz/$t.log" | tail -n 1)
  echo "$t: ${runs:-0} inputs run, no crash"
  mkdir -p target/tmp/reliability
  printf '{"target":"%s","seconds":%s,"executions":%s,"crashes":0}\n' "$t" "$seconds" "${runs:-0}" \
    > "target/tmp/reliability/fuzz-$t.json"
done
