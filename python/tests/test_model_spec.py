import pytest

import marconi


def test_presets_and_properties():
    names = marconi.presets()
    assert "paper-7b" in names and "nemotron-h-8b" in names
    for name in names:
        m = marconi.ModelSpec.preset(name)
        assert m.name == name
        assert m.kv_bytes_per_token >= 0
        assert m.state_bytes_per_checkpoint >= 0
        assert m.describe()
        assert name in repr(m)


def test_paper_model_costs():
    m = marconi.ModelSpec.preset("paper-7b")
    assert m.kv_bytes_per_token == 65536
    assert m.state_bytes_per_checkpoint > 0
    assert m.prefill_flops(0, 0) == 0
    full = m.prefill_flops(0, 1000)
    assert full > 0
    # cached tokens make the new ones costlier (attention over them), never cheaper
    assert m.prefill_flops(500, 500) < full
    assert m.flops_saved(500, 1000) == pytest.approx(full - m.prefill_flops(500, 500), rel=1e-9)
    assert m.count_layers("attention") == 4


def test_unknown_preset_is_key_error():
    with pytest.raises(KeyError, match="paper-7b"):
        marconi.ModelSpec.preset("no-such-model")


def test_from_config(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(
        '{"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,'
        ' "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 11008,'
        ' "vocab_size": 32000, "torch_dtype": "float16"}'
    )
    m = marconi.ModelSpec.from_config(str(cfg))
    assert m.kv_bytes_per_token == 2 * 32 * 4096 * 2
    assert m.state_bytes_per_checkpoint == 0


def test_from_config_errors(tmp_path):
    with pytest.raises(OSError):
        marconi.ModelSpec.from_config(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError):
        marconi.ModelSpec.from_config(str(bad))
    with pytest.raises(TypeError):
        marconi.ModelSpec.from_config(42)


def test_bad_flop_arguments():
    m = marconi.ModelSpec.preset("paper-7b")
    with pytest.raises(ValueError):
        m.prefill_flops(-1, 10)
    with pytest.raises(ValueError):
        m.flops_saved(11, 10)
    with pytest.raises(TypeError):
        m.prefill_flops("a", 10)


def test_parse_bytes():
    assert marconi.parse_bytes("40GB") == 40_000_000_000
    assert marconi.parse_bytes("1GiB") == 1 << 30
    with pytest.raises(ValueError):
        marconi.parse_bytes("12XB")
