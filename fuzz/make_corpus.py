#!/usr/bin/env python3
"""Writes the small seed corpora of fuzz/corpus/<harness>/ (generated here, not copied from any
data set). Run from the repository root: python3 fuzz/make_corpus.py"""
import json
import os
import random
import struct
import subprocess


def write(harness, name, data):
    d = os.path.join("fuzz", "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def line(session, turn, ts, inp, out):
    return json.dumps({"session_id": session, "turn_id": turn, "ts": ts,
                       "num_input_tokens": len(inp), "num_output_tokens": len(out),
                       "input_tokens": inp, "output_tokens": out}, separators=(",", ":"))


# Traces.
one = line("s0", 0, 0.0, [1, 2, 3], [4]) + "\n"
write("fuzz_trace", "one_request", one)
chat = "\n".join([
    line("s0", 0, 0.0, [1, 2, 3, 4], [5, 6]),
    line("s0", 1, 2.5, [1, 2, 3, 4, 5, 6, 7], [8]),
    line(7, 0, 1.25, [1, 2, 9], []),
    "",
    line("s1", 0, 1e-3, [2147483647, -2147483648, 0], [1]),
]) + "\r\n"
write("fuzz_trace", "chat_sessions", chat)
write("fuzz_trace", "bad_lines", one + '{"ts": 1, "input_tokens": []}\n{"input_tokens": [1]}\n'
      '{"ts": 2, "num_input_tokens": 3, "input_tokens": [1, 2]}\n[1, 2]\n{"ts": 1e400}\n')
write("fuzz_trace", "escapes", line("a\"b\\c\u0001\u00e9", 3, 4.0, [5], [6]) + "\n")

# zstd files: real frames (with and without a content size), several frames, a skippable frame,
# a frame header declaring 60 GB.
def zstd(data, *flags):
    return subprocess.run(["zstd", "-q", "-c", *flags], input=data, stdout=subprocess.PIPE,
                          check=True).stdout

write("fuzz_zstd", "trace", zstd(chat.encode()))
write("fuzz_zstd", "no_checksum", zstd(one.encode(), "--no-check"))
write("fuzz_zstd", "streamed", subprocess.run(
    ["sh", "-c", "cat | zstd -q -c --no-content-size"], input=(one * 20).encode(),
    stdout=subprocess.PIPE, check=True).stdout)
write("fuzz_zstd", "two_frames", zstd(b"abc") + zstd(b"x" * 5000))
write("fuzz_zstd", "skippable", struct.pack("<II", 0x184D2A50, 4) + b"skip" + zstd(b"after"))
write("fuzz_zstd", "sixty_gb", bytes([0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x00]) +
      struct.pack("<Q", 60_000_000_000) + bytes([0x01, 0x00, 0x00]))

# config.json, one per family, plus a number too large for a double.
configs = {
    "llama": {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
              "torch_dtype": "bfloat16", "rope_scaling": {"type": "yarn", "factor": 4.0}},
    "mamba2": {"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2,
               "num_heads": 2, "head_dim": 64, "state_size": 16, "n_groups": 1, "expand": 2},
    "jamba": {"model_type": "jamba", "hidden_size": 64, "num_hidden_layers": 4,
              "attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2,
              "expert_layer_offset": 1, "intermediate_size": 128, "mamba_d_state": 16,
              "num_experts": 4, "num_experts_per_tok": 2, "num_attention_heads": 4},
    "nemotron_h": {"model_type": "nemotron_h", "hidden_size": 64,
                   "hybrid_override_pattern": "M-*E", "mamba_num_heads": 2,
                   "mamba_head_dim": 32, "ssm_state_size": 16, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128,
                   "n_routed_experts": 4, "num_experts_per_tok": 2,
                   "moe_intermediate_size": 32},
    "zamba2": {"model_type": "zamba2", "hidden_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 4, "mamba_d_state": 16, "n_mamba_heads": 2,
               "mamba_headdim": 64, "intermediate_size": 128,
               "layers_block_type": ["hybrid", "mamba"]},
    "granite": {"model_type": "granitemoehybrid", "hidden_size": 64,
                "layer_types": ["mamba", "attention"], "num_attention_heads": 4,
                "mamba_n_heads": 2, "mamba_d_head": 64, "mamba_d_state": 16,
                "num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 32},
    "falcon_h1": {"model_type": "falcon_h1", "hidden_size": 64, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "mamba_n_heads": 2, "mamba_d_head": 64,
                  "mamba_d_state": 16, "intermediate_size": 128, "torch_dtype": "float32"},
    "qwen3_next": {"model_type": "qwen3_next", "hidden_size": 64, "num_hidden_layers": 4,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                   "linear_num_key_heads": 2, "linear_num_value_heads": 4,
                   "linear_key_head_dim": 16, "linear_value_head_dim": 16, "num_experts": 8,
                   "num_experts_per_tok": 2, "moe_intermediate_size": 32},
}
for name, c in configs.items():
    write("fuzz_config", name, json.dumps(c, indent=1))
write("fuzz_config", "huge_number", '{"model_type": "llama",\n "rope_theta": 1e400}')

# PrefixCache call sequences: bytes decoded by fuzz_prefix_cache.cc.
rng = random.Random(20261123)
for i, n in enumerate([16, 64, 256, 1024]):
    write("fuzz_prefix_cache", "random%d" % i, bytes(rng.randrange(256) for _ in range(n)))
write("fuzz_prefix_cache", "counting", bytes(range(256)))
