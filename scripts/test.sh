#!/usr/bin/env bash
# Builds and runs every test twice: an optimised build, then an AddressSanitizer +
# UndefinedBehaviorSanitizer build, then runs the fuzzing harnesses briefly. Warnings are errors;
# sources must be clang-formatted.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

echo "== format check"
git ls-files -- '*.h' '*.cc' | xargs clang-format --dry-run --Werror

echo "== release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"
echo "== benchmark smoke run"
./build/bench/marconi_bench --benchmark_min_time=0.01 >/dev/null

echo "== sanitizer build and tests (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMARCONI_SANITIZE=ON \
  -DMARCONI_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

echo "== fuzzing harnesses (clang, libFuzzer; 15 s each)"
bash scripts/fuzz.sh 15
