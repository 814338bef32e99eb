#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ with clang (ASan + UBSan) into build-fuzz and runs each
# for N seconds (default 20) over its seed corpus in fuzz/corpus/<harness>/. New inputs go to
# build-fuzz/corpus/<harness>/ (the seed corpus is never modified); a crash leaves its input in
# build-fuzz/artifacts/ and fails the script. Usage: scripts/fuzz.sh [seconds] [harness...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(fuzz_trace fuzz_zstd fuzz_config fuzz_prefix_cache)
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -le 2 ] || jobs=2

echo "== fuzz build (clang, libFuzzer + ASan + UBSan)"
# -Wno-unknown-warning-option: the warning list has GCC-only flags (-Wno-restrict).
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS=-Wno-unknown-warning-option -DMARCONI_FUZZ=ON -DMARCONI_BUILD_BENCH=OFF \
  >/dev/null
cmake --build build-fuzz -j"$jobs" --target "${harnesses[@]}"

mkdir -p build-fuzz/artifacts
for h in "${harnesses[@]}"; do
  echo "== $h: ${seconds}s"
  mkdir -p "build-fuzz/corpus/$h"
  dict=()
  [ -f "fuzz/$h.dict" ] && dict=(-dict="fuzz/$h.dict")
  log="build-fuzz/$h.log"
  # Leaks are checked by the ASan test build; here they would only slow every run down.
  rc=0
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
    "./build-fuzz/fuzz/$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$h-" \
    "${dict[@]}" "build-fuzz/corpus/$h" "fuzz/corpus/$h" >"$log" 2>&1 || rc=$?
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz: $h failed (log $log, input in build-fuzz/artifacts/)"
    exit 1
  fi
done
