"""The engine developer's example (examples/python/scheduler_loop.py) runs and checks itself:
every hit gives the recompute's logits and the engine's slots match the cache's checkpoints."""
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_scheduler_loop_example():
    env = dict(os.environ)
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples/python/scheduler_loop.py"), "--requests", "30"],
        capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("ok")
    assert "evictions 0," not in r.stdout  # the example exercises eviction events
