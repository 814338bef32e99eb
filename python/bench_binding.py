"""Binding overhead of PrefixCache.begin_request + complete_request on a 32K-token request.

Runs the workload of python/bench_binding.cc (one input of 32768 tokens served again and again,
each time with a distinct 16-token output) through the Python binding with NumPy int32 input
(zero copy), then with a Python list (converted on every call), and compares with the same C++
calls timed by build/python/marconi_bench_binding when it exists.

    PYTHONPATH=build/python python3 python/bench_binding.py [iterations]

On the 2-core development machine (shared, so noisy): C++ 5-9 us per begin + complete, Python
with NumPy int32 input 8-12 us (1.0x-1.5x, about 3 us of binding overhead for the two calls and
the handle), Python with a list about 1.4 ms (the list's conversion to int32 on both calls).
"""

import os
import subprocess
import sys
import time

import numpy as np

# python/ (this script's directory) holds the package's sources without the built module: import
# the built package from PYTHONPATH instead.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
import marconi  # noqa: E402

ITERATIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
LENGTH = 32768


def run(as_list, iterations):
    cache = marconi.PrefixCache(model="paper-7b", capacity=None)
    tokens = (np.arange(LENGTH) % 32000).astype(np.int32)
    outputs = [np.arange(1000000 + i * 16, 1000000 + i * 16 + 16, dtype=np.int32)
               for i in range(iterations)]
    if as_list:
        tokens = tokens.tolist()
        outputs = [o.tolist() for o in outputs]
    begin, complete = cache.begin_request, cache.complete_request
    start = time.perf_counter_ns()
    for i in range(iterations):
        h = begin(tokens, float(i))
        complete(h, tokens, outputs[i], float(i))
    return (time.perf_counter_ns() - start) / iterations


def cpp(iterations):
    here = os.path.dirname(os.path.abspath(marconi.__file__))
    exe = os.path.join(here, "..", "marconi_bench_binding")
    if not os.path.exists(exe):
        return None
    out = subprocess.run([exe, str(iterations), str(LENGTH)], check=True, capture_output=True,
                         text=True).stdout
    return float(out)


def best(f, *args, repeats=3):
    return min(f(*args) for _ in range(repeats))


if __name__ == "__main__":
    c = best(cpp, ITERATIONS)
    numpy_ns = best(run, False, ITERATIONS)
    list_ns = best(run, True, max(ITERATIONS // 20, 10))
    print(f"begin_request + complete_request, {LENGTH}-token input, best of 3:")
    if c is not None:
        print(f"  C++                    {c / 1e3:9.1f} us")
    print(f"  Python, NumPy int32    {numpy_ns / 1e3:9.1f} us"
          + (f"   ({numpy_ns / c:.2f}x C++)" if c else ""))
    print(f"  Python, list of int    {list_ns / 1e3:9.1f} us"
          + (f"   ({list_ns / c:.2f}x C++)" if c else ""))
