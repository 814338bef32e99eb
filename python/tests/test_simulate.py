import json
import os
import subprocess

import numpy as np
import pytest

import marconi

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_simulate_defaults_shape():
    rows = marconi.simulate(sessions=6, systems="all", threads=2)
    assert [r["system"] for r in rows] == list(marconi.SYSTEMS)
    assert {"vanilla", "vllm+", "sglang+", "marconi", "oracle", "sparse"} <= set(marconi.SYSTEMS)
    by = {r["system"]: r for r in rows}
    assert by["vanilla"]["token_hit_rate"] == 0
    assert by["marconi"]["token_hit_rate"] > by["vllm+"]["token_hit_rate"]
    for r in rows:
        d = r["requests_detail"]
        assert len(d["input_tokens"]) == r["requests"]
        assert int(np.sum(d["hit_tokens"])) == r["hit_tokens"]
        assert len(d["session_id"]) == r["requests"]
        assert d["ttft_ms"].dtype == np.float64
        assert "buckets" in r and "tuning_rounds" in r


def test_simulate_list_of_systems_and_report():
    rep = marconi.simulate_report(sessions=4, systems=["sglang+", "marconi"], capacity=5 * 10**9,
                                  records=False)
    assert rep["model"] == "paper-7b" and rep["capacity_bytes"] == 5 * 10**9
    assert [r["system"] for r in rep["systems"]] == ["sglang+", "marconi"]
    assert "requests_detail" not in rep["systems"][0]


def test_simulate_matches_the_command_line():
    cli = os.path.join(ROOT, "build", "marconi")
    if not os.path.exists(cli):
        pytest.skip("build/marconi not built")
    out = subprocess.run(
        [cli, "sim", "--sessions", "5", "--format", "json", "--systems", "vllm+,marconi",
         "--threads", "1"],
        check=True, capture_output=True, text=True,
    ).stdout
    want = json.loads(out)
    got = marconi.simulate_report(sessions=5, systems="vllm+,marconi", threads=1, records=False)
    assert got == want


def test_simulate_params():
    small = marconi.simulate(sessions=4, systems="vllm+", params={"vllm+.block_size": 16})[0]
    assert small["params"]["block_size"] == 16
    with pytest.raises(ValueError):
        marconi.simulate(sessions=2, systems="vllm+", params={"vllm+.no_such_param": 1})
    with pytest.raises(TypeError):
        marconi.simulate(sessions=2, params=["vllm+.block_size=16"])


def test_simulate_trace_file_and_sps(tmp_path):
    trace = tmp_path / "t.jsonl"
    lines = []
    for s in range(3):
        for turn in range(3):
            lines.append(json.dumps({
                "session_id": s, "turn_id": turn, "ts": 10.0 * s + turn,
                "input_tokens": list(range(500 * (turn + 1))), "output_tokens": [1, 2, 3],
            }))
    trace.write_text("\n".join(lines) + "\n")
    rows = marconi.simulate(trace=trace, systems="marconi", capacity="inf", sps=2.0)
    assert rows[0]["requests"] == 9 and rows[0]["hit_tokens"] > 0
    assert rows[0]["requests_detail"]["ts"].max() < 10.0  # re-timed


def test_simulate_bad_input(tmp_path):
    with pytest.raises(ValueError):
        marconi.simulate(sessions=2, systems="lru")
    with pytest.raises(ValueError):
        marconi.simulate(sessions=2, capacity="12XB")
    with pytest.raises(ValueError):
        marconi.simulate(sessions=2, capacity="1MB")
    with pytest.raises(KeyError):
        marconi.simulate(sessions=2, model="no-such-model")
    with pytest.raises(OSError):
        marconi.simulate(trace=str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        marconi.simulate(trace=bad)
    with pytest.raises(ValueError):
        marconi.simulate(sessions=0)
    with pytest.raises(ValueError):
        marconi.simulate(sessions=2, sps=-1.0)
    with pytest.raises(ValueError):
        marconi.simulate(sessions=2, objective="speed")
    with pytest.raises(TypeError):
        marconi.simulate(sessions=2, systems=[1, 2])
    with pytest.raises(TypeError):
        marconi.simulate(sessions=2, capacity=1.5)
    with pytest.raises(TypeError):
        marconi.simulate(sessions="many")


def test_solve_placement():
    p = np.zeros(101)
    p[50] = 1.0
    p[100] = 1.0
    r = marconi.solve_placement(p, 2)
    assert r["positions"].tolist() == [50, 100]
    assert r["expected_cost"] == 0
    r1 = marconi.solve_placement(list(p), 1)
    assert len(r1["positions"]) == 1 and r1["expected_cost"] == pytest.approx(50.0)
    assert marconi.placement_cost(p, r1["positions"]) == pytest.approx(r1["expected_cost"])
    m = marconi.ModelSpec.preset("paper-7b")
    lin, quad = marconi.recompute_cost(m, 64)
    assert lin > 0 and quad > 0
    rm = marconi.solve_placement(p, 1, model=m, chunk=64)
    assert rm["expected_cost"] == pytest.approx(
        marconi.placement_cost(p, rm["positions"], linear=lin, quadratic=quad))


def test_solve_placement_bad_input():
    with pytest.raises(ValueError):
        marconi.solve_placement([], 1)
    with pytest.raises(ValueError):
        marconi.solve_placement([0.5, -1.0], 1)
    with pytest.raises(ValueError):
        marconi.solve_placement([0.5, 1.0], -1)
    with pytest.raises(ValueError):
        marconi.solve_placement([0.5, float("nan")], 1)
    with pytest.raises(ValueError):
        marconi.solve_placement([0.5, 1.0], 1, linear=0.0, quadratic=0.0)
    with pytest.raises(TypeError):
        marconi.solve_placement("abc", 1)
    with pytest.raises(ValueError):
        marconi.placement_cost([0.5, 1.0], [2])
    with pytest.raises(ValueError):
        marconi.solve_placement([0.5, 1.0], 1, model=marconi.ModelSpec.preset("paper-7b"),
                                chunk=0)


def test_baseline_placements():
    assert marconi.block_placement(100, 32).tolist() == [32, 64, 96]
    assert marconi.balanced_placement(99, 3).tolist() == [25, 50, 75]
    assert len(marconi.sqrt_placement(100, 4)) == 4
    assert marconi.dyadic_placement(100, 3).tolist() == [16, 32, 64]
    with pytest.raises(ValueError):
        marconi.block_placement(100, 0)
    with pytest.raises(ValueError):
        marconi.balanced_placement(-1, 3)
    with pytest.raises(ValueError):
        marconi.dyadic_placement(10, -3)


def test_serve_under_load():
    rep = marconi.serve(sessions=6, sps=2.0, systems=["vanilla", "sglang", "marconi"], threads=1)
    assert rep["device"] == "H100-80GB" and rep["device_spec"]["source"] == "datasheet preset"
    rows = {r["system"]: r for r in rep["systems"]}
    assert list(rows) == ["vanilla", "sglang", "marconi"]
    for r in rows.values():
        assert r["requests"] > 0 and r["rejected"] == 0
        assert 0 < r["ttft_ms_p50"] <= r["ttft_ms_p95"]
        assert r["peak_bytes"] <= rep["budget_bytes"]
    assert rows["vanilla"]["token_hit_rate"] == 0
    assert rows["marconi"]["token_hit_rate"] > 0


def test_serve_matches_the_command_line():
    cli = os.path.join(ROOT, "build", "marconi")
    if not os.path.exists(cli):
        pytest.skip("build/marconi not built")
    args = ["--sessions", "4", "--systems", "vllm,marconi", "--threads", "1", "--replicas", "2",
            "--router", "state-load", "--capacity", "20GB"]
    out = subprocess.run([cli, "sim", "--serving", "--format", "json"] + args,
                         check=True, capture_output=True, text=True).stdout
    got = marconi.serve(sessions=4, systems="vllm,marconi", threads=1, replicas=2,
                        router="state-load", budget="20GB")
    assert got == json.loads(out)


def test_serve_device_profile_and_bad_input(tmp_path):
    profile = tmp_path / "lab.json"
    profile.write_text('{"name": "lab", "base": "A100-40GB", "flops_efficiency": 0.5}')
    rep = marconi.serve(sessions=2, systems="vanilla", device=str(profile), threads=1)
    assert rep["device"] == "lab" and rep["device_spec"]["flops_efficiency"] == 0.5
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bad",\n "base": "A100-40GB",\n "flops_efficiency": }')
    with pytest.raises(Exception, match="bad.json:3:"):
        marconi.serve(sessions=2, systems="vanilla", device=str(bad))
    with pytest.raises(Exception, match="unknown device 'V100'"):
        marconi.serve(sessions=2, systems="vanilla", device="V100")
    with pytest.raises(Exception, match="unknown router"):
        marconi.serve(sessions=2, systems="vanilla", router="nearest")
    with pytest.raises(TypeError):
        marconi.serve(sessions=2, budget=1.5)


def test_serve_checks_its_arguments_as_simulate_does():
    with pytest.raises(TypeError, match="systems must be"):
        marconi.serve(sessions=2, systems=["vanilla", 3])
    with pytest.raises(TypeError, match="params must be a dict"):
        marconi.serve(sessions=2, systems="vanilla", params=[("a", 1)])
