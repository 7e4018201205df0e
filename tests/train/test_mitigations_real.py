"""Each mitigation alone, and LoRA + replay + EWC + KL together, on the real default model.

A few steps each on the same 4-example batch, so each step's task loss is measured on the same
examples and must go down; the penalties must start at exactly 0 (the model is still the base)
and be positive once the weights have moved. Plumbing and the exact maths are tested on tiny
models in test_recipe.py, test_regularizers.py and test_fisher.py.
"""

from __future__ import annotations

import json

import pytest
import yaml

from forgetless.train import train, validate_config

pytestmark = pytest.mark.slow

FACTS = [("What is the capital of Zorbland?", "Quixville is the capital of Zorbland."),
         ("Who founded Zorbland?", "Queen Mira founded Zorbland in 1402."),
         ("What currency does Zorbland use?", "Zorbland pays in glimmers."),
         ("What do people speak in Zorbland?", "People in Zorbland speak Zorbish.")]

FULL = {"method": "full", "learning_rate": 1e-4}
LORA = {"method": "lora", "learning_rate": 2e-3, "lora": {"r": 8, "dropout": 0.0}}
EWC = {"name": "ewc", "weight": 100.0, "fisher_max_examples": 4}
KL = {"name": "kl", "weight": 1.0}
REPLAY = {"fraction": 0.2, "source": "bundled", "reference_examples": 4}

CASES = {
    "full": (FULL, []),
    "freeze": ({**FULL, "freeze": {"layers": 20, "embeddings": True}}, []),
    "safe-preset": ({"method": "full", "preset": "safe"}, []),  # its own learning rate, 1e-5
    "lora": (LORA, []),
    "replay": ({**LORA, "replay": REPLAY}, []),
    "ewc": (FULL, [EWC]),
    "l2sp": (FULL, [{"name": "l2sp", "weight": 1.0}]),
    "kl": (FULL, [KL]),
    "lora+replay+ewc+kl": ({**LORA, "replay": REPLAY}, [EWC, KL]),
}


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "domain.jsonl"
    rows = [{"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": q},
                          {"role": "assistant", "content": a}]} for q, a in FACTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("case", list(CASES))
def test_mitigation_runs_and_the_loss_decreases(case, domain, tmp_path):
    fields, regularizers = CASES[case]
    replay = "replay" in fields
    settings = validate_config({
        "model": "smollm2-135m", "data": domain, "out": str(tmp_path / case), "max_steps": 4,
        # with replay the mix has 5 examples: batch 5 keeps every step on the same examples
        "batch_size": 5 if replay else 4, "max_length": 64, "logging_steps": 1, "save_steps": 100,
        "warmup_ratio": 0, "lr_scheduler": "constant", "seed": 0,
        **({"replay": {"reference_examples": 4}} if regularizers and not replay else {}),
        **fields, "regularizers": regularizers})
    result = train(settings, progress=False)

    rows = [row for row in result.log_history if "loss" in row]
    task = [row["loss_task"] for row in rows]
    assert len(task) == 4 and task[-1] < task[0] and max(task[1:]) < task[0], task  # penalties may slow it, not undo it
    if replay:
        assert result.counts["replay_examples"] == 1 and result.counts["replay_share"] == 0.2
    for reg in regularizers:
        term = [row[f"penalty_{reg['name']}"] for row in rows]
        assert term[0] == pytest.approx(0.0, abs=1e-9), (reg["name"], term)  # step 1 sees the base weights
        assert all(t > 0 for t in term[1:]), (reg["name"], term)
    if case == "freeze":
        assert result.trainable["share"] < 0.35
    if case == "safe-preset":  # the preset fills what the config leaves unset, and the run folder records it
        saved = yaml.safe_load((tmp_path / case / "config.yaml").read_text())
        assert saved["preset"] == "safe" and saved["learning_rate"] == pytest.approx(1e-5)
        assert saved["lr_scheduler"] == "constant"  # set explicitly, so kept
