"""marconi: prefix caching for hybrid (attention + SSM) LLMs.

A thin Python layer over the C++ library (the ``_marconi`` extension):

* ``ModelSpec`` (``ModelSpec.preset(name)``, ``ModelSpec.from_config(path)``, ``presets()``):
  a model's KV bytes per token, state bytes per checkpoint and prefill FLOPs.
* ``PrefixCache``: the radix-tree cache; ``begin_request`` / ``complete_request`` per request,
  ``insert``, ``lookup``, ``stats()``, ``set_listener``, ``alpha``, ``check_invariants()``.
* ``simulate(...)``: ``marconi sim`` from Python, one dict per system.
* ``solve_placement(...)`` and the baseline placements: sparse checkpoint placement.
* ``HybridModel``: the CPU reference hybrid model (prefill with state captures, resume).

Token sequences may be lists or NumPy arrays. A one-dimensional C-contiguous ``numpy.int32``
array is used in place, without a copy; anything else (lists, int64 arrays, slices with a step)
is converted once, with ``ValueError`` for values outside int32 and ``TypeError`` for
non-integers. Long calls release the GIL. Errors of the library raise ``ValueError`` (bad
argument, malformed file), ``KeyError`` (unknown name), ``OSError`` (unreadable file),
``NotImplementedError``, or ``ResourceExhaustedError`` (a ``RuntimeError``: the content was
inserted but pinned requests keep the cache over capacity).
"""

import inspect as _inspect
import json as _json

from ._marconi import (  # noqa: F401
    Checkpoint,
    HybridConfig,
    HybridModel,
    ModelSpec,
    PrefixCache,
    Request,
    ResourceExhaustedError,
    Sequence,
    balanced_placement,
    block_placement,
    dyadic_placement,
    parse_bytes,
    placement_cost,
    presets,
    recompute_cost,
    solve_placement,
    sqrt_placement,
)
from . import _marconi

__all__ = [
    "Checkpoint",
    "HybridConfig",
    "HybridModel",
    "ModelSpec",
    "PrefixCache",
    "Request",
    "ResourceExhaustedError",
    "Sequence",
    "SYSTEMS",
    "balanced_placement",
    "block_placement",
    "dyadic_placement",
    "parse_bytes",
    "placement_cost",
    "presets",
    "recompute_cost",
    "simulate",
    "serve",
    "simulate_report",
    "solve_placement",
    "sqrt_placement",
]

SYSTEMS = tuple(_marconi.systems())  # in the order reports list them


def simulate_report(
    trace=None,
    capacity="5GB",
    model="paper-7b",
    systems=None,
    sessions=80,
    sps=None,
    threads=0,
    params=None,
    multiplier=None,
    objective=None,
    recency=None,
    skip_bad_lines=False,
    records=True,
):
    """Like ``simulate``, but returns the whole ``marconi sim --format json`` document (trace,
    model, capacity_bytes, ttft_model, skipped_lines, systems)."""
    out = _marconi._simulate(
        trace=None if trace is None else str(trace),
        capacity=_bytes_arg(capacity, "capacity", "5GB"),
        model=model if isinstance(model, str) else _model_name(model),
        systems=_systems_arg(systems),
        sessions=sessions,
        sps=sps,
        threads=threads,
        set=_set_arg(params),
        multiplier=multiplier,
        objective=objective,
        recency=recency,
        skip_bad_lines=skip_bad_lines,
    )
    report = _json.loads(out.json)
    if records:
        for i, row in enumerate(report["systems"]):
            row["requests_detail"] = out.records(i)
    return report


def simulate(*args, **kwargs):
    """Replays a trace (a JSONL path, plain or .zst; default: the built-in synthetic workload of
    ``sessions`` sessions) through each system and returns one dict per system, with the fields
    of ``marconi sim --format json`` (system, params, token_hit_rate, ttft_ms_p95, tuning_rounds,
    ...)
    and ``requests_detail``: per-request NumPy columns (index, session_id, turn_id, ts,
    input_tokens, hit_tokens, attention_hit_tokens, ttft_ms), unless ``records=False``.

    ``systems``: "all", a comma-separated string or a list of names from ``SYSTEMS``; by default
    the systems ``marconi sim`` runs by default (vanilla, today's engines, the paper's baselines,
    Marconi and the oracle).
    ``capacity``: bytes as an int or a string ("5GB", "1.5GiB", "inf"). ``sps``: re-time
    sessions to start at this rate. ``threads``: 0 = all cores. ``params``: system parameters
    as ``marconi sim --set`` takes them, e.g. ``{"vllm+.block_size": 64}``. ``multiplier``, ``objective``
    ("hit" or "flops") and ``recency`` ("inverse-requests" or "linear-time") configure the alpha
    tuner and FLOP-aware eviction as ``marconi sim``'s options do. Runs without the GIL.
    """
    return simulate_report(*args, **kwargs)["systems"]


# The same options as simulate_report, shown by help() and inspect.signature.
simulate.__signature__ = _inspect.signature(simulate_report)


def serve(
    trace=None,
    budget=None,
    model="paper-7b",
    systems=None,
    sessions=80,
    sps=None,
    threads=0,
    params=None,
    device="H100-80GB",
    max_running=256,
    token_budget=8192,
    chunk=2048,
    slo="ttft=2s,tpot=100ms",
    closed_loop=False,
    replicas=1,
    router="round-robin",
    skip_bad_lines=False,
):
    """Serves a trace under load, as ``marconi sim --serving --format json`` does (the serving
    model of docs/serving.md: continuous batching on ``device``, running requests and the cache
    sharing one memory budget, today's engines in their own pools), and returns that document
    (trace, model, device, device_spec, budget_bytes, ..., and ``systems``: one dict per system
    and router with ttft_ms_p50/p95, queue_ms_p95, tpot_ms_p50, e2e_ms_p95, throughput_tok_s,
    goodput_req_s, preemptions, rejected, peak memory by use, ...).

    ``device``: a preset ("A100-40GB", "H100-80GB", "H200") or a path to a device profile (a .json
    file). ``budget``: bytes as an int or a string ("40GB", "inf"); by default the device's memory
    after the weights. ``router``: a router name, several comma-separated, or "all".
    ``systems``, ``sessions``, ``sps``, ``threads`` and ``params`` as for ``simulate``. Runs
    without the GIL.
    """
    out = _marconi._serve(
        trace=None if trace is None else str(trace),
        budget=None if budget is None else _bytes_arg(budget, "budget", "40GB"),
        model=model if isinstance(model, str) else _model_name(model),
        systems=_systems_arg(systems),
        sessions=sessions,
        sps=sps,
        threads=threads,
        set=_set_arg(params),
        device=str(device),
        max_running=max_running,
        token_budget=token_budget,
        chunk=chunk,
        slo=slo,
        closed_loop=closed_loop,
        replicas=replicas,
        router=router,
        skip_bad_lines=skip_bad_lines,
    )
    return _json.loads(out)


def _systems_arg(systems):
    """`systems` of simulate and serve as the library takes it: comma-separated names."""
    if systems is None:
        return _marconi.default_systems()
    if isinstance(systems, str):
        return systems
    systems = list(systems)
    if not all(isinstance(s, str) for s in systems):
        raise TypeError("systems must be 'all', a comma-separated string or a list of names")
    return ",".join(systems)


def _bytes_arg(value, name, example):
    """A size in bytes, as an int or a string such as '5GB', as the library takes it."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} must be an int (bytes) or a string such as '{example}'")
    return str(value)


def _set_arg(params):
    """`params` ({'vllm+.block_size': 64}) as marconi sim's --set items."""
    if params is None:
        return []
    if not isinstance(params, dict):
        raise TypeError("params must be a dict such as {'vllm+.block_size': 64}")
    return [f"{k}={v}" for k, v in params.items()]


def _model_name(model):
    if isinstance(model, ModelSpec):
        if model.name in presets():
            return model.name
        raise ValueError(
            "simulate takes a preset name or a config.json path; this ModelSpec is neither"
        )
    raise TypeError("model must be a preset name, a config.json path or a preset ModelSpec")
