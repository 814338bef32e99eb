import numpy as np
import pytest

import marconi


def rel_diff(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


@pytest.fixture(scope="module")
def model():
    return marconi.HybridModel(marconi.HybridConfig.tiny())


def prompt(n, vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, n).astype(np.int32)


@pytest.mark.parametrize("kernels", ["fast", "exact"])
def test_resume_gives_the_full_prefill_logits(model, kernels):
    tokens = prompt(90, model.config.vocab)
    full = model.new_sequence()
    logits, cps = model.prefill(full, tokens, capture=[16, 37, 90], kernels=kernels)
    assert full.tokens == 90 and logits.dtype == np.float32
    assert logits.shape == (model.config.vocab,)
    assert [c.position for c in cps] == [16, 37, 90]
    for cp in cps[:2]:
        resumed = model.resume(full, cp)
        assert resumed.tokens == cp.position
        again, _ = model.prefill(resumed, tokens[cp.position:], kernels=kernels)
        if kernels == "exact" or cp.position % model.config.chunk_size == 0:
            assert np.array_equal(again, logits)  # bit-identical (hybrid_model.h)
        else:
            assert rel_diff(logits, again) < 1e-4  # the C++ tests' tolerance


def test_prefill_in_two_steps_and_checkpoint_bytes(model):
    tokens = prompt(64, model.config.vocab, seed=1)
    one = model.new_sequence()
    l1, _ = model.prefill(one, tokens)
    two = model.new_sequence()
    model.prefill(two, tokens[:30])
    l2, cps = model.prefill(two, list(tokens[30:]), capture=[40])
    assert rel_diff(l1, l2) < 1e-4
    data = cps[0].to_bytes()
    assert len(data) >= model.checkpoint_bytes
    assert marconi.Checkpoint.from_bytes(data) == cps[0]
    with pytest.raises(ValueError):
        marconi.Checkpoint.from_bytes(data[:-3])


def test_spec_drives_a_cache(model):
    spec = model.spec()
    assert isinstance(spec, marconi.ModelSpec)
    assert spec.kv_bytes_per_token == model.kv_bytes_per_token
    assert spec.state_bytes_per_checkpoint == model.checkpoint_bytes
    cache = marconi.PrefixCache(model=spec, capacity="8MB")
    t = prompt(50, model.config.vocab)
    cache.complete_request(cache.begin_request(t, 0.0), t, [1], 0.0)
    assert cache.lookup(np.append(t, [1, 2]).astype(np.int32))["reusable_tokens"] == 51


def test_engine_bad_input(model):
    seq = model.new_sequence()
    with pytest.raises(ValueError):
        model.prefill(seq, [], kernels="fast")
    with pytest.raises(ValueError, match="vocabulary"):
        model.prefill(seq, [model.config.vocab + 5])
    with pytest.raises(ValueError):
        model.prefill(seq, [1, 2, 3], capture=[7])
    with pytest.raises(ValueError):
        model.prefill(seq, [1, 2, 3], kernels="quick")
    with pytest.raises(TypeError):
        model.prefill(seq, "abc")
    assert seq.tokens == 0  # unchanged
    other = marconi.HybridModel(marconi.HybridConfig())  # default shape: other state sizes
    s2 = other.new_sequence()
    _, cps = other.prefill(s2, [1, 2, 3, 4], capture=[4])
    full = model.new_sequence()
    model.prefill(full, [1, 2, 3, 4, 5])
    with pytest.raises(ValueError):
        model.resume(full, cps[0])
    bad = marconi.HybridConfig.tiny()
    bad.pattern = "MXA"
    with pytest.raises(ValueError):
        marconi.HybridModel(bad)
    bad = marconi.HybridConfig.tiny()
    bad.d_model = 0
    with pytest.raises(ValueError):
        marconi.HybridModel(bad)


def test_config_is_a_copy(model):
    c = model.config
    c.vocab = 3
    assert model.config.vocab != 3


def test_small_config():
    c = marconi.HybridConfig.small()
    assert c.d_model == 128 and c.pattern == "MMMAMMMA"
