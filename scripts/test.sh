#!/usr/bin/env bash
# Builds and runs every test twice: an optimised build, then an AddressSanitizer +
# UndefinedBehaviorSanitizer build; then the tests that run threads under ThreadSanitizer; then
# the fuzzing harnesses, briefly. Warnings are errors; sources must be clang-formatted.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

echo "== format check"
git ls-files -- '*.h' '*.cc' | xargs clang-format --dry-run --Werror

echo "== release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"
echo "== Python package (pytest)"
# Debian's interpreter (python3-numpy, python3-pytest), as python/CMakeLists.txt chooses it.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if compgen -G "build/python/marconi/_marconi*.so" >/dev/null; then
  PYTHONPATH=build/python "$py" -m pytest -q python/tests
else
  echo "test: the Python package was not built (pybind11-dev or python3-dev missing)" >&2
  exit 1
fi
echo "== benchmark smoke run"
./build/bench/marconi_bench --benchmark_min_time=0.01 >/dev/null

echo "== sanitizer build and tests (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMARCONI_SANITIZE=ON \
  -DMARCONI_BUILD_BENCH=OFF -DMARCONI_BUILD_PYTHON=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

# Only what runs threads (ParallelFor, the alpha tuner's replays, the shared front, the oracle's
# grid, sweeps, tokenisation): the two test binaries holding them, and those tests alone, to keep
# it short.
echo "== thread sanitizer build and threaded tests (TSan)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMARCONI_TSAN=ON \
  -DMARCONI_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j"$jobs" --target marconi_core_tests marconi_sim_tests
# (The engine's tests run no thread of ours; OpenBLAS's pool is not instrumented.) halt_on_error:
# the first race fails the stage.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
./build-tsan/tests/marconi_core_tests --gtest_brief=1 --gtest_filter='ParallelFor.*:AlphaTuner.*:SharedPrefixCache.*'
./build-tsan/tests/marconi_sim_tests --gtest_brief=1 --gtest_filter='Sweep.*:TraceBuilder.*:'\
'Sim.PoliciesKeepTheirOrderOnAContendedMixedWorkload:Sim.DeterministicAcrossRunsAndThreadCounts'

echo "== fuzzing harnesses (clang, libFuzzer; 15 s each)"
bash scripts/fuzz.sh 15
