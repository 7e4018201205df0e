"""`merge` writes a model that plain transformers / PEFT and `load_model` read back as theta(alpha)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from forgetless.cli.main import app
from forgetless.errors import ForgetlessError
from forgetless.merge import MERGE_FILE, load_pair, merge, per_layer
from forgetless.models import load_model
from forgetless.models.loading import RUN_FILE


def _logits(model):
    x = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x).logits


def test_full_merge_loads_with_plain_transformers_and_equals_in_place(full_run, tmp_path):
    from transformers import AutoModelForCausalLM

    out = merge(None, str(full_run), 0.4, tmp_path / "merged", lower_alpha=0.1)
    plain = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    pair = load_pair(None, str(full_run), device="cpu")
    pair.interpolator.set_alpha(per_layer(0.1, 0.4, n_layers=2))
    mine = dict(pair.loaded.model.named_parameters())
    assert all(torch.equal(p, mine[n]) for n, p in plain.named_parameters())
    record = json.loads((out / MERGE_FILE).read_text())
    assert record["alpha"] == 0.4 and record["lower_alpha"] == 0.1 and record["split"] == 1 and record["kind"] == "full"
    again = load_model(str(out), device="cpu")  # a run folder too: `forgetless eval OUT`
    assert again.info["base_model"] == pair.base
    assert torch.equal(_logits(again.model), _logits(pair.loaded.model))


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_lora_merge_loads_with_plain_peft_and_equals_in_place(lora_run, tiny_model_dir, tmp_path, alpha):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = merge(None, str(lora_run), alpha, tmp_path / "scaled")
    assert json.loads((out / RUN_FILE).read_text())["adapter"] == "."
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), out)
    pair = load_pair(None, str(lora_run), device="cpu")
    pair.interpolator.set_alpha(alpha)
    assert torch.equal(_logits(plain.eval()), _logits(pair.loaded.model))
    assert torch.equal(_logits(load_model(str(out), device="cpu").model), _logits(pair.loaded.model))


def test_out_folder_rules(full_run, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ForgetlessError, match="not empty"):
        merge(None, str(full_run), 0.5, tmp_path / "busy", overwrite=True)  # not ours: never replaced
    out = merge(None, str(full_run), 0.5, tmp_path / "m-0.5")  # a dot in a folder name is fine
    with pytest.raises(ForgetlessError, match="--overwrite"):
        merge(None, str(full_run), 0.5, out)
    merge(None, str(full_run), 0.25, out, overwrite=True)
    assert json.loads((out / MERGE_FILE).read_text())["alpha"] == 0.25
    with pytest.raises(ForgetlessError, match="between 0"):
        merge(None, str(full_run), 1.5, tmp_path / "x")


def test_merge_cli(lora_run, tmp_path):
    result = CliRunner().invoke(app, ["merge", "--tuned", str(lora_run), "--alpha", "0.5", "--out",
                                      str(tmp_path / "cli"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["alpha"] == 0.5
    assert (tmp_path / "cli" / "adapter_config.json").exists()
