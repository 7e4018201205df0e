"""TrainConfig: unknown keys, all errors at once, value checks, --set overrides, YAML safety, presets."""

from __future__ import annotations

import pytest

from forgetless.errors import ForgetlessError
from forgetless.train.config import TrainConfig, field_docs, load_config, validate_config
from forgetless.train.presets import resolve, risk_warnings


def write(tmp_path, text: str):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def error_of(raw: dict) -> str:
    with pytest.raises(ForgetlessError) as e:
        validate_config(raw)
    return str(e.value)


def test_minimal_config_has_defaults():
    config = validate_config({"data": "d.jsonl"})
    assert config.model == "smollm2-135m" and config.method == "lora" and config.lora.r == 16
    assert config.replay.fraction == 0 and config.regularizers == [] and config.monitor is None


def test_unknown_key_suggests_closest():
    message = error_of({"data": "d.jsonl", "learning_rte": 1e-4})
    assert "unknown key 'learning_rte'" in message and "did you mean 'learning_rate'" in message


def test_nested_unknown_key_suggests_closest():
    message = error_of({"data": "d.jsonl", "lora": {"rank": 8}, "monitor": {"budget": {"max_dorp": 0.1}}})
    assert "unknown key 'lora.rank'" in message and "did you mean 'r'" not in message  # 'rank' is far from 'r'
    assert "available: alpha, dropout, r, target_modules" in message
    assert "unknown key 'monitor.budget.max_dorp'" in message and "did you mean 'max_drop'" in message


def test_all_errors_reported_at_once_on_one_line():
    message = error_of({"data": "d.jsonl", "learning_rate": -1e-4, "replay": {"fraction": 1.0},
                        "regularizers": [{"name": "l2sp", "weight": -3}], "bacth_size": 4})
    assert "\n" not in message
    parts = message.split("; ")
    assert len(parts) == 4
    assert any("learning_rate: must be > 0, got -0.0001" in p for p in parts)
    assert any("replay.fraction: must be in [0, 1), got 1.0" in p for p in parts)
    assert any("regularizers[0].weight: must be >= 0, got -3.0" in p for p in parts)
    assert any("did you mean 'batch_size'" in p for p in parts)


def test_replay_fraction_bounds():
    assert validate_config({"data": "d", "replay": {"fraction": 0.0}}).replay.fraction == 0
    assert validate_config({"data": "d", "replay": {"fraction": 0.99}}).replay.fraction == 0.99
    assert "replay.fraction" in error_of({"data": "d", "replay": {"fraction": -0.1}})


def test_missing_data_is_named():
    assert "missing key 'data'" in error_of({})


def test_regularizer_options_are_kept_and_checked():
    config = validate_config({"data": "d", "regularizers": [{"name": "ewc", "weight": 50, "fisher_max_examples": 32},
                                                            {"name": "kl", "beta": 0.2}]})
    assert config.regularizers[0].arguments() == {"fisher_max_examples": 32, "weight": 50.0}
    assert config.regularizers[1].arguments() == {"beta": 0.2} and config.regularizers[1].weight is None
    message = error_of({"data": "d", "regularizers": [{"name": "ewc", "lamda": 3}, {"name": "ewk"}]})
    assert "regularizers[0]: unknown option 'lamda' for ewc (did you mean 'lambda'?" in message
    assert "regularizers[1].name: unknown regularizer 'ewk' (did you mean 'ewc'?" in message


def test_yaml_with_overrides(tmp_path):
    path = write(tmp_path, "data: d.jsonl\nlearning_rate: 1e-4\nlora:\n  r: 16\nregularizers:\n  - name: kl\n"
                           "    weight: 1\n")
    config = load_config(path, ["lora.r=4", "lora.target_modules=[q_proj, v_proj]", "replay.fraction=0.25",
                                "regularizers.0.weight=2.5", "max_steps=10", "monitor.every=5"])
    assert config.learning_rate == 1e-4  # PyYAML alone would read 1e-4 as a string
    assert config.lora.r == 4 and config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.replay.fraction == 0.25 and config.regularizers[0].weight == 2.5
    assert config.max_steps == 10 and config.monitor.every == 5


def test_bad_override_and_errors_name_the_file(tmp_path):
    path = write(tmp_path, "data: d.jsonl\nlora:\n  rr: 3\n")
    with pytest.raises(ForgetlessError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: unknown key 'lora.rr'")
    with pytest.raises(ForgetlessError, match="not key=value"):
        load_config(write(tmp_path, "data: d.jsonl\n"), ["lora.r"])


def test_yaml_is_read_safely(tmp_path):
    path = write(tmp_path, "data: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ForgetlessError, match="invalid YAML"):
        load_config(path)
    with pytest.raises(ForgetlessError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_presets_fill_only_unset_fields():
    full = resolve(validate_config({"data": "d", "method": "full", "preset": "safe"}))
    assert full.learning_rate == 1e-5 and full.lr_scheduler == "cosine" and full.warmup_ratio == 0.05
    lora = resolve(validate_config({"data": "d", "preset": "aggressive", "warmup_ratio": 0.1}))
    assert lora.learning_rate == 1e-3 and lora.warmup_ratio == 0.1  # the explicit value wins
    assert resolve(validate_config({"data": "d"})).learning_rate == 2e-4  # balanced LoRA default


def test_risk_warnings():
    risky = resolve(validate_config({"data": "d", "method": "full", "learning_rate": 1e-4, "epochs": 10,
                                     "warmup_ratio": 0}))
    text = " | ".join(risk_warnings(risky, n_examples=200))
    assert "above 5e-05" in text and "10 epochs over only 200" in text and "no learning-rate warm-up" in text
    assert "nothing protects" in text
    calm = resolve(validate_config({"data": "d", "preset": "safe", "replay": {"fraction": 0.2}}))
    assert risk_warnings(calm, n_examples=5000) == []
    # a regularizer's weight given by its own name, or left to its default, counts as protection
    for spec, protected in (({"name": "ewc"}, True), ({"name": "ewc", "lambda": 0}, False), ({"name": "l2sp", "alpha": 0.1}, True)):
        full = resolve(validate_config({"data": "d", "method": "full", "preset": "safe", "regularizers": [spec]}))
        assert ("nothing protects" in " | ".join(risk_warnings(full, n_examples=5000))) is not protected, spec


def test_every_field_is_documented():
    rows = field_docs(TrainConfig)
    assert all(description for _, _, description in rows)
    assert {"lora.r", "replay.fraction", "monitor.budget.max_kl"} <= {key for key, _, _ in rows}


def test_docs_reference_is_up_to_date():
    from pathlib import Path

    from forgetless.train.config import markdown_reference

    docs = Path(__file__).parents[2] / "docs" / "training.md"
    assert markdown_reference() in docs.read_text(), "regenerate the table in docs/training.md"
