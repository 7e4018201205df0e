"""The forgetting monitor inside a real training run: curve logged, budget enforced, weights restored."""

from __future__ import annotations

import json

import pytest

from forgetless.suites import load_suite
from forgetless.train import load_config, train
from forgetless.train.monitor import ForgettingMonitor, evaluate_probes, select_probes


def _config(tmp_path, data, model, extra: str):
    path = tmp_path / "c.yaml"
    path.write_text(f"""
model: {model}
data: {data}
out: {tmp_path / 'run'}
method: full
learning_rate: 0.05
max_steps: 4
batch_size: 2
max_length: 64
save_steps: 100
warmup_ratio: 0
{extra}
""")
    return load_config(path, [])


@pytest.fixture()
def domain_file(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"prompt": f"What colour is the Zentrix gadget {i}?", "response": f"The Zentrix gadget {i} is teal."}
            for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_probes_are_a_spread_of_the_general_suite():
    probes = select_probes(mc_items=20, gen_items=5)
    assert len(probes.asked) == 5 and len(probes.closed) == 15
    assert {it.type for it in [*probes.asked, *probes.closed]} == {"mc"}
    assert len({it.category for it in probes.asked}) >= 2 and probes.kl_texts
    assert {it.key for it in probes.asked} <= {f"general/{it.id}" for it in load_suite("general")}


def test_the_last_point_equals_an_evaluation_of_the_final_model(tmp_path, domain_file):
    """The monitor reads compare's measures off the evaluation engine: the final model, loaded back from the
    run folder and evaluated on the same probes, scores exactly the last point (the real model, LoRA)."""
    from forgetless.compare.metrics import mean_outcome
    from forgetless.eval import EvalSettings
    from forgetless.models import load_model

    config = _config(tmp_path, domain_file, "smollm2-135m", "monitor: {every: 2, mc_items: 8, gen_items: 4}")
    config = config.model_copy(update={"method": "lora", "learning_rate": 3e-3, "max_steps": 2})
    result = train(config, progress=False)
    last = result.monitor["points"][-1]
    assert last["step"] == 2
    final = load_model(str(result.run_dir))
    items = evaluate_probes(final.model, final.tokenizer, select_probes(mc_items=8, gen_items=4), EvalSettings())
    assert len(items) == 8 and sum(it.reply is not None for it in items) == 4
    assert last["knowledge_acc"] == round(mean_outcome(items, "knowledge"), 4)
    assert last["behaviour_acc"] == round(mean_outcome(items, "behaviour"), 4)
    assert 0 < last["knowledge_acc"] and 0 < result.monitor["points"][0]["behaviour_acc"]  # real numbers, not 0s


def test_monitor_logs_a_curve_and_stops_at_the_budget(tmp_path, domain_file, tiny_model_dir):
    config = _config(tmp_path, domain_file, tiny_model_dir,
                     "monitor: {every: 1, mc_items: 8, gen_items: 3, budget: {max_kl: 0.0}, early_stop: true}")
    result = train(config, progress=False)
    curve = result.monitor["points"]
    assert curve[0]["step"] == 0 and curve[0]["kl"] == pytest.approx(0.0, abs=1e-3)
    assert curve[1]["kl"] > 0  # an lr of 0.05 moves a random tiny model at once
    assert result.monitor["stopped_at"] == 1 and result.steps == 1
    assert result.monitor["best_step"] == 0  # only the untouched model was inside a zero budget
    logged = [row for row in result.log_history if "monitor/kl" in row]
    assert len(logged) == len(curve)
    run = json.loads((result.run_dir / "forgetless-run.json").read_text())
    assert run["monitor"]["stopped_at"] == 1


def test_early_stop_restores_the_last_weights_inside_the_budget(tiny_model_dir):
    from forgetless.models import load_model

    loaded = load_model(str(tiny_model_dir))
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    monitor = ForgettingMonitor(loaded.tokenizer, select_probes(mc_items=4, gen_items=2),
                                every=1, max_kl=0.0, early_stop=True)

    class State:
        global_step = 0
        log_history: list = []

    class Control:
        should_training_stop = False

    monitor.on_train_begin(None, State, Control, model=loaded.model)
    import torch

    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(0.1)
    State.global_step = 1
    monitor.on_step_end(None, State, Control, model=loaded.model)
    assert Control.should_training_stop
    monitor.on_train_end(None, State, Control, model=loaded.model)
    assert all(torch.equal(before[n], p) for n, p in loaded.model.named_parameters())


def test_a_second_run_reuses_the_monitor_baseline_and_measures_the_same_curve(tmp_path, domain_file,
                                                                               tiny_model_dir):
    """The study trains six strategies from one base: the monitor's step 0 is measured once."""
    monitor = "monitor: {every: 2, mc_items: 8, gen_items: 3}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = train(_config(tmp_path / "a", domain_file, tiny_model_dir, monitor), progress=False)
    second = train(_config(tmp_path / "b", domain_file, tiny_model_dir, monitor), progress=False,
                   monitor_baseline=first.monitor_baseline)
    assert second.monitor_baseline is first.monitor_baseline
    assert second.monitor["points"][0]["seconds"] < first.monitor["points"][0]["seconds"]
    strip = [{k: v for k, v in p.items() if k != "seconds"} for p in first.monitor["points"]]
    assert [{k: v for k, v in p.items() if k != "seconds"} for p in second.monitor["points"]] == strip
    assert len(strip) == 3 and strip[-1]["kl"] > 0
