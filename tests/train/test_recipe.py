"""The training recipe end to end: LoRA on the real default model, plumbing on a tiny random Llama.

Real-model steps cost seconds each on a CPU, so only the behaviour that depends on a real model
(the loss goes down, the run folder loads back) uses smollm2-135m; determinism, resume, freezing
and the NaN guard run on a 4-block, 32-wide Llama with the real tokenizer.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import time
import types

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainerCallback

from forgetless.errors import ForgetlessError
from forgetless.models.loading import RUN_FILE, load_model, resolve
from forgetless.registry import Registry
from forgetless.train import TrainConfig, train, validate_config
from forgetless.train.config import FreezeSection, LoraSection
from forgetless.train.data import collator_for, read_records, tokenize_records
from forgetless.train.freeze import apply_lora, check_base_frozen
from forgetless.train.recipe import build_data, load_base

FACTS = [("What is the capital of Zorbland?", "Quixville is the capital of Zorbland."),
         ("Who founded Zorbland?", "Queen Mira founded Zorbland in 1402."),
         ("What currency does Zorbland use?", "Zorbland pays in glimmers."),
         ("What do people speak in Zorbland?", "People in Zorbland speak Zorbish.")]


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    """The same 4 short chats, twice (a short system prompt keeps sequences ~30 tokens)."""
    path = tmp_path_factory.mktemp("data") / "domain.jsonl"
    rows = [{"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": q},
                          {"role": "assistant", "content": a}]} for q, a in FACTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * 2))
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Llama with the real smollm2 tokenizer, saved as a safetensors HF folder."""
    folder = tmp_path_factory.mktemp("tiny")
    tokenizer = AutoTokenizer.from_pretrained(resolve("smollm2-135m")[0])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=1)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def config(**fields) -> TrainConfig:
    base = dict(max_steps=4, batch_size=2, max_length=64, save_steps=2, logging_steps=1, learning_rate=1e-2)
    return validate_config({**base, **fields})


def adapter_weights(run_dir):
    return load_file(f"{run_dir}/adapter/adapter_model.safetensors")


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the real default model ---------------------------------------------------------------------


def test_lora_on_default_model_learns_and_writes_a_loadable_run(domain, tmp_path):
    run_dir = tmp_path / "run"
    seen = []
    result = train(config(data=domain, out=str(run_dir), max_steps=6, learning_rate=2e-3, warmup_ratio=0,
                          lr_scheduler="constant", lora={"dropout": 0.0}, save_steps=6,
                          freeze={"layers": 26}),  # adapters in the top 4 blocks only: a short backward pass
                   progress=False, notify=seen.append)
    losses = [row["loss"] for row in result.log_history if "loss" in row]
    assert len(losses) == 6 and sum(losses[-2:]) < 0.9 * sum(losses[:2]), losses
    assert result.trainable["share"] < 0.05 and any("above" in w for w in seen)  # 2e-3 triggers a warning
    for name in ["config.yaml", "train_log.jsonl", RUN_FILE, "adapter/adapter_model.safetensors"]:
        assert (run_dir / name).exists(), name
    run = json.loads((run_dir / RUN_FILE).read_text())
    assert run["base_model"] == "smollm2-135m" and run["adapter"] == "adapter" and run["steps"] == 6
    assert run["versions"]["peft"] and run["data"]["domain_examples"] == 8
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [row["loss_task"] for row in log if "loss_task" in row] == pytest.approx(losses, rel=1e-4)

    loaded = load_model(str(run_dir))  # base + adapter, as `forgetless eval RUN` loads it
    assert loaded.source == "run" and loaded.adapter.endswith("adapter")
    assert all(not p.requires_grad for p in loaded.model.parameters())
    facts = tokenize_records(read_records(domain)[:4], loaded.tokenizer, 64).examples
    batch = collator_for(loaded.tokenizer)(facts)
    with torch.no_grad():
        after = loaded.model(**batch).loss.item()
        with loaded.model.disable_adapter():
            before = loaded.model(**batch).loss.item()
    assert after < 0.7 * before, (before, after)  # the same 4 answers, before and after training


# --- plumbing on a tiny model -------------------------------------------------------------------


class Crash(Exception):
    pass


class CrashAtStep(TrainerCallback):
    """Simulates a killed run right after the checkpoint of step `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Crash


def test_same_seed_same_weights_and_resume_continues_exactly(tiny, domain, tmp_path):
    settings = dict(model=tiny, data=domain)
    a = train(config(out=str(tmp_path / "a"), **settings), progress=False)
    train(config(out=str(tmp_path / "b"), **settings), progress=False)
    assert a.steps == 4 and same(adapter_weights(tmp_path / "a"), adapter_weights(tmp_path / "b"))

    with pytest.raises(Crash):
        train(config(out=str(tmp_path / "c"), **settings), progress=False, callbacks=[CrashAtStep(2)])
    assert not (tmp_path / "c" / "adapter").exists()
    with pytest.raises(ForgetlessError, match="not empty"):
        train(config(out=str(tmp_path / "c"), **settings), progress=False)
    resumed = train(config(out=str(tmp_path / "c"), **settings), progress=False, resume=True)
    assert resumed.steps == 4
    assert same(adapter_weights(tmp_path / "a"), adapter_weights(tmp_path / "c"))
    run = json.loads((tmp_path / "c" / RUN_FILE).read_text())
    assert run["resumed_from"].endswith("checkpoint-2")
    assert [row.get("loss") for row in resumed.log_history] == [row.get("loss") for row in a.log_history][:4] + [None]

    other_seed = train(config(out=str(tmp_path / "d"), seed=1, **settings), progress=False)
    assert other_seed.steps == 4 and not same(adapter_weights(tmp_path / "a"), adapter_weights(tmp_path / "d"))


def test_resume_needs_a_checkpoint(tiny, domain, tmp_path):
    with pytest.raises(ForgetlessError, match="nothing to resume"):
        train(config(model=tiny, data=domain, out=str(tmp_path / "new")), resume=True, progress=False)


def test_full_fine_tuning_keeps_frozen_blocks_unchanged(tiny, domain, tmp_path):
    run_dir = tmp_path / "full"
    result = train(config(model=tiny, data=domain, out=str(run_dir), method="full",
                          freeze={"layers": 2, "embeddings": True}, replay={"fraction": 0.0}), progress=False)
    before, after = load_file(f"{tiny}/model.safetensors"), load_file(f"{run_dir}/model/model.safetensors")
    for name, weight in before.items():
        frozen = name.startswith(("model.layers.0.", "model.layers.1.", "model.embed_tokens"))
        assert torch.equal(weight, after[name]) == frozen, name
    assert json.loads((run_dir / RUN_FILE).read_text())["model"] == "model"
    assert 0 < result.trainable["share"] < 1
    assert load_model(str(run_dir)).source == "run"


def test_lora_base_weights_must_be_frozen(tiny):
    model = LlamaForCausalLM.from_pretrained(tiny)
    peft_model = apply_lora(model, LoraSection(r=2, alpha=4), FreezeSection(layers=1))
    assert not any("layers.0." in n for n, _ in peft_model.named_parameters() if "lora_" in n)  # freeze.layers
    next(p for n, p in peft_model.named_parameters() if "lora_" not in n).requires_grad_(True)
    with pytest.raises(ForgetlessError, match="base weights are trainable"):
        check_base_frozen(peft_model)


# --- regularizers -------------------------------------------------------------------------------


def test_real_regularizers_with_bundled_replay(tiny, domain, tmp_path):
    result = train(config(model=tiny, data=domain, out=str(tmp_path / "regs"), logging_steps=2,
                          replay={"fraction": 0.2, "reference_examples": 4},
                          regularizers=[{"name": "ewc", "weight": 10, "fisher_max_examples": 4},
                                        {"name": "kl", "weight": 1.0}, {"name": "l2sp", "weight": 1.0}]),
                   progress=False)
    assert result.counts["replay_examples"] == 2 and result.counts["replay_source"] == "bundled"
    last = [row for row in result.log_history if "loss" in row][-1]
    terms = ["loss_task", "penalty_ewc", "penalty_kl", "penalty_l2sp"]
    assert all(last[t] > 0 for t in terms)  # the weights moved, so every penalty is positive
    assert last["loss"] == pytest.approx(sum(last[t] for t in terms), rel=1e-4)


# --- a stand-in regularizer: checks the Trainer plumbing independently of the real ones ----------


class StandIn:
    """A stand-in regularizer: weight * sum of squared trainable weights; NaN from step `nan_at` on."""

    def __init__(self, weight: float, nan_at: int | None = None):
        self.weight, self.nan_at, self.calls, self.reference = weight, nan_at, 0, None

    def setup(self, model, *, reference_batches=None):
        self.reference = reference_batches

    def penalty(self, model, batch, outputs=None):
        assert outputs is not None and outputs.logits.shape[:2] == batch["input_ids"].shape
        self.calls += 1
        value = sum((p ** 2).sum() for p in model.parameters() if p.requires_grad)
        if self.nan_at is not None and self.calls >= self.nan_at:
            value = value * float("nan")
        return self.weight * value


@pytest.fixture()
def stand_in(monkeypatch):
    registry = Registry("regularizer")
    made = []
    registry.register("standin")(lambda arguments: made.append(StandIn(**arguments)) or made[-1])
    module = types.ModuleType("forgetless.train.regularizers")
    module.REGULARIZERS = registry
    monkeypatch.setitem(sys.modules, "forgetless.train.regularizers", module)
    return made


def test_penalties_are_added_and_logged_separately(tiny, domain, tmp_path, stand_in):
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"prompt": f"Q{i}?", "response": f"A{i}."}) + "\n" for i in range(5)))
    result = train(config(model=tiny, data=domain, out=str(tmp_path / "reg"), regularizers=[
        {"name": "standin", "weight": 0.5}], replay={"fraction": 0.2, "source": str(general),
                                                     "reference_examples": 3}), progress=False)
    reg = stand_in[0]
    assert reg.calls == 4 and sum(len(b["input_ids"]) for b in reg.reference) == 3
    assert result.counts["replay_examples"] == 2 and result.counts["domain_examples"] == 8
    logged = [row for row in result.log_history if "loss" in row]
    assert all(row["penalty_standin"] > 0 for row in logged)
    for row in logged:
        assert row["loss"] == pytest.approx(row["loss_task"] + row["penalty_standin"], rel=1e-4)
    with pytest.raises(ForgetlessError, match="unknown regularizer 'standim'.*did you mean 'standin'"):
        config(model=tiny, data=domain, regularizers=[{"name": "standim"}])


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tiny, domain, tmp_path, stand_in):
    run_dir = tmp_path / "nan"
    with pytest.raises(ForgetlessError, match="non-finite at step 3.*checkpoint-2"):
        train(config(model=tiny, data=domain, out=str(run_dir), max_steps=6,
                     regularizers=[{"name": "standin", "weight": 1.0, "nan_at": 3}]), progress=False)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert not (run_dir / RUN_FILE).exists() and (run_dir / "train_log.jsonl").exists()


# --- the command line ---------------------------------------------------------------------------


def test_cli_trains_from_yaml_with_overrides(tiny, domain, tmp_path):
    from typer.testing import CliRunner

    from forgetless.cli.main import app

    config_file = tmp_path / "train.yaml"
    config_file.write_text(f"model: {tiny}\ndata: {domain}\nbatch_size: 2\nmax_length: 64\nmax_steps: 4\n")
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(config_file), "--out", str(tmp_path / "cli"), "--set", "max_steps=2",
                                 "--set", "lora.r=4", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 2
    assert "r: 4" in (tmp_path / "cli" / "config.yaml").read_text()
    bad = runner.invoke(app, ["train", str(config_file), "--set", "lora.rank=4"])
    assert isinstance(bad.exception, ForgetlessError) and "unknown key 'lora.rank'" in str(bad.exception)


def test_attention_kernel_is_eager_only_for_short_sequences_on_a_cpu():
    from forgetless.train.recipe import training_attention

    def config(**kw):
        return validate_config({"model": "m", "data": "d.jsonl", "device": "cpu", **kw}, where="test")

    assert training_attention(config(max_length=96)) == "eager"
    assert training_attention(config(max_length=512)) is None  # the fused kernel wins on long sequences
    assert training_attention(config(max_length=96, attention="sdpa")) == "sdpa"
    with pytest.raises(ForgetlessError):
        config(attention="flash")


# --- the time budget (max_seconds) ----------------------------------------------------------------


def test_the_rows_of_each_step_do_not_depend_on_how_many_steps_the_stream_was_built_for(tiny, domain):
    """The stream is grouped by length window by window; built for N steps it starts with the rows of the
    stream built for more, so a count cut by max_seconds repeats with max_steps=N."""
    settings = dict(model=tiny, data=domain, replay={"fraction": 0.25, "source": "bundled"}, batch_size=3)
    loaded = load_base(config(**settings))
    longest = build_data(config(max_steps=40, **settings), loaded).stream
    assert build_data(config(max_steps=40, **settings), loaded).stream == longest  # seeded
    for steps in range(1, 40):
        stream = build_data(config(max_steps=steps, **settings), loaded).stream
        assert stream[:3 * steps] == longest[:3 * steps], steps



def test_a_time_budget_cuts_the_steps_and_trains_exactly_as_that_many_steps_would(tiny, domain, tmp_path):
    """max_seconds too short for one step: 1 step, recorded in config.yaml, and the weights equal a plain
    max_steps=1 run's (the stream built for 12 steps starts with the one built for 1; timing changes nothing)."""
    settings = dict(model=tiny, data=domain, replay={"fraction": 0.25, "source": "bundled"},
                    monitor={"mc_items": 2, "gen_items": 0})
    said: list[str] = []
    timed = train(config(out=str(tmp_path / "t"), max_steps=12, max_seconds=1e-9, **settings), progress=False,
                  notify=said.append)
    plain = train(config(out=str(tmp_path / "p"), max_steps=1, **settings), progress=False)
    assert timed.steps == plain.steps == 1
    assert same(adapter_weights(tmp_path / "t"), adapter_weights(tmp_path / "p"))
    assert any("so 1 of 12 steps fit in 1e-09 s" in m for m in said), said
    saved = validate_config(yaml.safe_load((tmp_path / "t" / "config.yaml").read_text()))
    assert saved.max_steps == 1 and saved.max_seconds == 1e-9
    assert [p["step"] for p in timed.monitor["points"]] == [0, 1]  # the monitor's checks follow the steps that fit

    roomy = train(config(out=str(tmp_path / "r"), max_steps=3, max_seconds=1e6, **settings), progress=False)
    assert roomy.steps == 3  # a budget that fits changes nothing


def test_the_time_budget_counts_what_training_spent_before_its_first_step(tiny, domain, tmp_path, monkeypatch):
    """Loading and self-replay spend max_seconds too: preparing the data takes 2000 s on this clock, so a 1500 s
    budget has no time left for more than one step, although 12 would fit in 1500 s alone."""
    recipe = sys.modules["forgetless.train.recipe"]
    offset = [0.0]
    monkeypatch.setattr(recipe, "time", types.SimpleNamespace(time=lambda: time.time() + offset[0]))
    prepare = recipe.build_data

    def slow_build_data(*args, **kwargs):
        offset[0] += 2000.0
        return prepare(*args, **kwargs)

    monkeypatch.setattr(recipe, "build_data", slow_build_data)
    said: list[str] = []
    settings = dict(max_steps=12, max_seconds=1500, model=tiny, data=domain)
    assert train(config(out=str(tmp_path / "t"), **settings), progress=False, notify=said.append).steps == 1
    fitted = r"20\d\d s spent before the first step, so 1 of 12 steps fit in 1500 s"
    assert any(re.search(fitted, m) for m in said), said
    monkeypatch.setattr(recipe, "build_data", prepare)  # no such cost: all 12 fit
    assert train(config(out=str(tmp_path / "r"), **settings), progress=False).steps == 12


def test_the_time_budget_counts_the_monitors_checks_to_come(tiny, domain, tmp_path, monkeypatch):
    """The monitor measures the base before the budget is fitted; on this clock a check takes 150 s, so the
    4 checks to come leave no time in 500 s for more than one step."""
    calls = [0]

    def clock() -> float:
        calls[0] += 1
        return 150.0 * calls[0]

    monkeypatch.setattr(importlib.import_module("forgetless.train.monitor"), "time",
                        types.SimpleNamespace(perf_counter=clock))
    said: list[str] = []
    result = train(config(out=str(tmp_path / "t"), max_steps=12, max_seconds=500, model=tiny, data=domain,
                          monitor={"mc_items": 2, "gen_items": 0}), progress=False, notify=said.append)
    assert result.steps == 1
    assert any("150 s per monitor check, so 1 of 12 steps fit in 500 s" in m for m in said), said
    assert [p["step"] for p in result.monitor["points"]] == [0, 1]
