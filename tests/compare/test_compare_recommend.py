"""Recommendations follow from what dropped and from the run's training config."""

from __future__ import annotations

from forgetless.compare import compare


def _changes(report) -> str:
    return "\n".join(f"{r.action} | {r.change}" for r in report.recommendations)


def _checks_broken(synth, training=None):
    before = [synth.check(i, True) for i in range(40)]
    after = [synth.check(i, i >= 20) for i in range(40)]
    return synth.result(before), synth.result(after, training=training)


def test_replay_recommended_when_checks_fail_and_the_run_had_no_replay(synth):
    report = compare(*_checks_broken(synth, training={"method": "lora", "learning_rate": 2e-4}))
    assert report.metric("checklist").verdict == "forgetting"
    text = _changes(report)
    assert "replay: {fraction: 0.25, source: self}" in text
    assert "learning_rate" not in text  # 2e-4 is a normal LoRA rate


def test_more_replay_recommended_when_the_run_already_replayed(synth):
    report = compare(*_checks_broken(synth, training={"method": "lora", "replay": {"fraction": 0.1}}))
    assert "replay.fraction: 0.25" in _changes(report)


def test_aggressive_full_fine_tune_gets_lr_and_epoch_advice(synth, tmp_path):
    data = synth.write_training(tmp_path)
    before, after = synth.drift_pair(training={"method": "full", "learning_rate": 3e-4, "epochs": 8,
                                               "data": str(data)})
    text = _changes(compare(before, after))
    assert "learning_rate: 2e-5  (or method: lora)" in text
    assert "epochs: 2" in text
    assert "replay:" in text
    assert "regularizers: [{name: kl, weight: 0.1}]" in text  # template collapse
    assert "forgetless sweep" in text


def test_preset_learning_rate_is_resolved(synth):
    report = compare(*_checks_broken(synth, training={"config": {"method": "full", "preset": "aggressive"}}))
    assert "learning_rate: 2e-5" in _changes(report)


def test_knowledge_loss_with_lora_suggests_lower_rank_and_ewc(synth):
    before = synth.result([synth.mc(i, correct=i < 35) for i in range(40)])
    after = synth.result([synth.mc(i, correct=i < 10) for i in range(40)],
                         training={"method": "lora", "lora": {"r": 32}})
    assert "lora.r: 16  and  regularizers: [{name: ewc, weight: 100}]" in _changes(compare(before, after))


def test_small_domain_gain_means_reconsider(synth):
    before = [synth.check(i, True) for i in range(40)] + \
        [synth.mc(i, correct=i < 10, category="domain-x", suite="domain") for i in range(20)]
    after = [synth.check(i, i >= 20) for i in range(40)] + \
        [synth.mc(i, correct=i < 11, category="domain-x", suite="domain") for i in range(20)]
    report = compare(synth.result(before), synth.result(after))
    assert any(r.action.startswith("Reconsider") for r in report.recommendations)


def test_odd_training_records_do_not_break_the_report(synth):
    odd = {"method": "sgd", "learning_rate": "fast", "epochs": None, "replay": "yes", "regularizers": ["kl", {}],
           "lora": 4, "data": 17}
    report = compare(*_checks_broken(synth, training=odd))
    assert report.verdict == "forgetting" and "replay:" in _changes(report)
