"""The forgetting monitor inside a real training run: curve logged, budget enforced, weights restored."""

from __future__ import annotations

import json

import pytest

from forgetless.train import load_config, train
from forgetless.train.monitor import ForgettingMonitor, select_probes


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


def test_probes_are_a_spread_of_the_general_suite(smollm2):
    probes = select_probes(smollm2.tokenizer, mc_items=20, gen_items=5)
    assert len(probes.contexts) == 20 and len(probes.open_items) == 5
    assert len({it.category for it in probes.open_items}) >= 2 and probes.kl_texts


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
    monitor = ForgettingMonitor(loaded.tokenizer, select_probes(loaded.tokenizer, mc_items=4, gen_items=2),
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
