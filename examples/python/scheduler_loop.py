#!/usr/bin/env python3
"""A minimal engine scheduler loop over marconi's request protocol, driving the CPU reference
hybrid model (attention + Mamba2 layers), to copy into an engine.

Per request: begin_request (lookup, pin) -> restore the pinned state from the engine's own slot
-> prefill in chunks, capturing the planned states and handing each chunk to insert_chunk (which
moves the pin forward) -> the last input token's logits -> decode, capturing what plan_decode
planned -> complete_request with the states captured since the last chunk. The engine keeps its
states in slots named by the payload it gives the cache; the cache's listener events free them.

Every hit is checked against a full recompute of the same input (the logits must match), and at
the end the engine's live slots must be exactly the cache's checkpoints.

    PYTHONPATH=build/python python3 examples/python/scheduler_loop.py [--requests N]
"""
import argparse
import sys

import numpy as np

import marconi


class Slots:
    """The engine's state memory: slot id -> (the sequence holding the KV, its checkpoint)."""

    def __init__(self):
        self.slots = {}
        self.next_id = 1  # 0 means "no payload"

    def store(self, sequence, checkpoint):
        slot = self.next_id
        self.next_id += 1
        self.slots[slot] = (sequence, checkpoint)
        return slot

    def on_event(self, event):
        # "evicted": the cache dropped the state; "not_adopted": it already held that state in
        # another slot. Either way this slot's bytes are free.
        self.slots.pop(event["payload"], None)


def workload(vocab, requests, rng):
    """Chat-like sessions over two shared system prompts; each turn resends the conversation."""
    prompts = [rng.integers(0, vocab, n).astype(np.int32) for n in (96, 160)]
    sessions = [list(prompts[i % 2]) for i in range(6)]
    out = []
    while len(out) < requests:
        s = sessions[int(rng.integers(0, len(sessions)))]
        s += list(rng.integers(0, vocab, int(rng.integers(8, 40))))
        output = list(rng.integers(0, vocab, int(rng.integers(4, 12))))
        out.append((np.array(s, dtype=np.int32), np.array(output, dtype=np.int32)))
        s += output
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--chunk", type=int, default=64, help="prefill chunk (tokens)")
    ap.add_argument("--kernels", default="exact", choices=["exact", "fast"])
    args = ap.parse_args()

    model = marconi.HybridModel(marconi.HybridConfig.tiny())
    spec = model.spec()
    # Room for a few states and their KV, so that evictions happen.
    capacity = 4 * spec.state_bytes_per_checkpoint + 600 * spec.kv_bytes_per_token
    cache = marconi.PrefixCache(model=spec, capacity=capacity, leave_last_token=True)
    slots = Slots()
    cache.set_listener(slots.on_event)

    rng = np.random.default_rng(5)
    worst = 0.0
    for now, (tokens, output) in enumerate(workload(model.config.vocab, args.requests, rng)):
        req = cache.begin_request(tokens, float(now))
        n = len(tokens)
        if req.resume_tokens > 0:
            full, checkpoint = slots.slots[req.resume_payload]
            seq = model.resume(full, checkpoint)
        else:
            seq = model.new_sequence()
        plan = [p for p in req.prefill_checkpoints if p > seq.tokens]
        decode_plan = list(cache.plan_decode(req, len(output)))

        captured, payloads = [], []
        while seq.tokens < n:
            end = min(seq.tokens + args.chunk, n)
            here = [p for p in plan if seq.tokens < p <= end]
            logits, cps = model.prefill(seq, tokens[seq.tokens:end], capture=here,
                                        kernels=args.kernels)
            for cp in cps:
                captured.append(cp.position)
                payloads.append(slots.store(seq, cp))
            if end < n and captured:
                cache.insert_chunk(req, tokens, end, captured, float(now), payloads=payloads)
                captured, payloads = [], []

        # The first output token comes from the last input token's logits: compare with a full
        # recompute of the same input.
        if req.reusable_tokens > 0:
            reference, _ = model.prefill(model.new_sequence(), tokens, kernels=args.kernels)
            diff = float(np.max(np.abs(reference - logits)))
            worst = max(worst, diff)
            if args.kernels == "exact" and diff != 0.0:
                print(f"request {now}: a hit of {req.reusable_tokens} tokens changed the logits "
                      f"by {diff}", file=sys.stderr)
                return 1

        # Decode (teacher-forced here), capturing the planned states.
        for i, token in enumerate(output):
            position = n + i + 1
            _, cps = model.prefill(seq, [int(token)],
                                   capture=[position] if position in decode_plan else None,
                                   kernels=args.kernels)
            for cp in cps:
                captured.append(cp.position)
                payloads.append(slots.store(seq, cp))
        cache.complete_request(req, tokens, output, float(now), captured=captured,
                               payloads=payloads)

    stats = cache.stats()
    print(f"requests {stats['requests']}, token hit rate {100 * stats['token_hit_rate']:.1f}%, "
          f"evictions {stats['evictions']}, largest logit difference on a hit {worst:g}")
    print(f"engine's live slots {len(slots.slots)}, cache's checkpoints {stats['checkpoints']}")
    cache.check_invariants()
    ok = len(slots.slots) == stats["checkpoints"] and stats["hit_tokens"] > 0
    print("ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
