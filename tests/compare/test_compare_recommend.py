"""Recommendations follow from what dropped and from the run's training config."""

from __future__ import annotations

import json
import re

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


# --- the trade-off first: learning, then the template's cause, then more items ---------------------------------


def _no_gain_pair(synth, training):
    """General: 40 mc items unchanged (inconclusive); domain: 20 items, 4 -> 5 right (no significant gain)."""
    general = [synth.mc(i, correct=i < 30, open_correct=i < 30) for i in range(40)]
    before = general + [synth.mc(i, correct=i < 4, category="domain-x", suite="domain") for i in range(20)]
    after = general + [synth.mc(i, correct=i < 5, category="domain-x", suite="domain") for i in range(20)]
    return synth.result(before), synth.result(after, training=training)


def test_no_significant_domain_gain_leads_with_more_passes_or_a_higher_rate(synth):
    config = {"method": "lora", "learning_rate": 1e-4, "max_steps": 40, "batch_size": 8, "n_examples": 320}
    report = compare(*_no_gain_pair(synth, config))
    assert report.verdict != "forgetting"
    first = report.recommendations[0]
    assert first.action.startswith("Train longer or at a higher learning rate")
    assert "after 1 passes" in first.why and "learning rate 1e-4" in first.why
    assert first.change.startswith("epochs: 2  (or learning_rate: 2e-4)") and "monitor" in first.change
    assert "Learned: domain multiple choice 0.20 -> 0.25" in report.tradeoff and "not significant" in report.tradeoff


def test_a_significant_domain_gain_asks_for_no_more_training(synth):
    general = [synth.mc(i, correct=i < 30, open_correct=i < 30) for i in range(40)]
    before = general + [synth.mc(i, correct=i < 4, category="domain-x", suite="domain") for i in range(40)]
    after = general + [synth.mc(i, correct=i < 36, category="domain-x", suite="domain") for i in range(40)]
    report = compare(synth.result(before), synth.result(after, training={"method": "lora"}))
    assert not any(r.action.startswith("Train longer") for r in report.recommendations)
    assert report.tradeoff.startswith("Learned: domain multiple choice 0.10 -> 0.90 (+0.800")
    assert "significant)" in report.tradeoff and ". Cost: knowledge drop +0.000" in report.tradeoff


def test_a_leaked_template_leads_to_the_data_lint_fix(synth, tmp_path):
    data = synth.write_training(tmp_path)  # every response ends with "Thank you for choosing Zentrix."
    before, after = synth.drift_pair(training={"method": "lora", "data": str(data)})
    report = compare(before, after)
    assert report.diagnosis.template_collapse.collapsed
    first = report.recommendations[0]
    assert first.action == "Strip the training set's sign-off before training"
    assert '100% of training responses share the sign-off "Thank you for choosing Zentrix."' in first.why
    assert first.change.startswith("strip_boilerplate: true")


def test_copies_alone_ask_for_the_lint_fix_not_more_replay(synth, tmp_path):
    """Measured: doubling the replay share left the sign-off copies where they were (BENCHMARKS.md)."""
    data = synth.write_training(tmp_path)
    before = [synth.mc(i, correct=i < 20, open_correct=i < 29) for i in range(40)]
    after = [synth.mc(i, correct=i < 20, open_correct=i < 29, reply=None if i < 4 else synth.TEMPLATE_REPLY)
             for i in range(40)]
    training = {"method": "lora", "data": str(data), "replay": {"fraction": 0.25}, "regularizers": [{"name": "kl"}]}
    report = compare(synth.result(before), synth.result(after, training=training))
    assert report.diagnosis.template_collapse.collapsed and report.metric("behaviour").verdict != "forgetting"
    assert report.recommendations[0].action == "Strip the training set's sign-off before training"
    assert not any(r.action == "Replay more general data" for r in report.recommendations)
    lost = [synth.mc(i, correct=i < 20, open_correct=i < 4, reply=None if i < 4 else synth.TEMPLATE_REPLY)
            for i in range(40)]  # open answers lost as well: more replay is advised again
    report = compare(synth.result(before), synth.result(lost, training=training))
    assert any(r.action == "Replay more general data" for r in report.recommendations)


def test_no_lint_advice_without_boilerplate_in_the_training_data(synth, tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"The Zentrix device has a battery of {i} "
                                         "hours."}) + "\n" for i in range(10)))
    before, after = synth.drift_pair(training={"method": "lora", "data": str(clean)})
    report = compare(before, after)
    assert not any("Strip" in r.action for r in report.recommendations)


def test_more_items_come_after_learning_and_say_where_to_get_them(synth, tmp_path):
    suite = tmp_path / "mine.jsonl"
    suite.write_text("".join(json.dumps({"id": f"q{i}", "type": "mc", "category": "c", "question": f"Q{i}?", "choices": ["a", "b"],
                                         "answer": 0}) + "\n" for i in range(900)))
    before, after = _no_gain_pair(synth, {"method": "lora", "learning_rate": 1e-4})
    for result in (before, after):
        result.suites[0].path = str(suite)
    report = compare(before, after)
    actions = [r.action for r in report.recommendations]
    assert actions[0].startswith("Train longer") and actions[1].startswith("Probe with more items")
    assert report.recommendations[1].change.startswith("forgetless run --items 0  (all 900 knowledge items")
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps({"id": f"q{i}", "type": "mc", "category": "c", "question": f"Q{i}?", "choices": ["a", "b"],
                                         "answer": 0}) + "\n" for i in range(41)))
    for result in (before, after):
        result.suites[0].path = str(small)
    more = compare(before, after).recommendations[1]
    assert more.change.startswith("write ") and "docs/suite-format.md" in more.change


# --- every change a recommendation prints is one the tools accept ----------------------------------------------


def _accepted(change: str) -> None:
    """A printed command parses with the CLI; a config change validates as `--set` overrides."""
    import shlex

    import typer

    from forgetless.cli.main import app
    from forgetless.train.config import load_config

    text = change.split("  (")[0]  # what follows in parentheses explains, it is not typed
    if text.startswith("forgetless "):
        group = typer.main.get_command(app)
        name, *args = shlex.split(text)[1:]
        command = group.get_command(group.make_context("forgetless", [name, *args]), name)
        assert command is not None, f"no command {name}"
        command.make_context(name, args)  # raises click's usage error on an unknown option or a missing value
        return
    if re.match(r"[a-z_][\w.]*: ", text):  # config keys; anything else is advice in words
        load_config("examples/lora-replay-ewc.yaml", [part.replace(": ", "=", 1) for part in text.split("  and  ")])


def test_every_printed_change_parses(synth, tmp_path):
    data = synth.write_training(tmp_path)
    reports = [
        compare(*_checks_broken(synth, training={"method": "lora", "learning_rate": 2e-4})),
        compare(*_checks_broken(synth, training={"method": "lora", "replay": {"fraction": 0.1}})),
        compare(*synth.drift_pair(training={"method": "full", "learning_rate": 3e-4, "epochs": 8, "data": str(data)})),
        compare(*synth.drift_pair(training={"method": "lora", "data": str(data)})),
        compare(synth.result([synth.mc(i, correct=i < 35) for i in range(40)]),
                synth.result([synth.mc(i, correct=i < 10) for i in range(40)], training={"method": "lora", "lora": {"r": 32}})),
        compare(*_no_gain_pair(synth, {"method": "lora", "learning_rate": 1e-4, "max_steps": 40, "batch_size": 8,
                                       "n_examples": 320})),
    ]
    changes = {r.change for report in reports for r in report.recommendations}
    assert any(c.startswith("forgetless sweep") for c in changes) and any("strip_boilerplate" in c for c in changes)
    for change in sorted(changes):
        _accepted(change)
