"""Verdicts and diagnoses on synthetic before/after results, with the real statistics."""

from __future__ import annotations

import pytest

from forgetless.compare import ForgettingReport, compare


def _identical(synth, n: int):
    items = [synth.mc(i, correct=i % 2 == 0, open_correct=i % 3 != 0) for i in range(n)]
    return synth.result(items), synth.result(items)


def test_identical_large_suite_is_no_forgetting(synth):
    report = compare(*_identical(synth, 400))
    assert report.verdict == "no_forgetting"
    assert report.diagnosis.kind == "none"
    assert not report.triggered_by
    for m in report.metrics:
        assert m.overall.drop == 0 and m.overall.ci_high < report.threshold
        assert m.overall.mde is not None and m.overall.mde < report.threshold
    assert report.recommendations[0].action == "Safe to ship"
    assert "smaller losses may remain" in report.recommendations[0].why


def test_identical_small_suite_is_inconclusive_not_no_forgetting(synth):
    report = compare(*_identical(synth, 20))
    assert report.verdict == "inconclusive"
    knowledge = report.metric("knowledge").overall
    assert knowledge.verdict == "inconclusive"
    assert knowledge.mde > report.threshold and knowledge.ci_high >= report.threshold  # no point interval
    assert "too few items" in knowledge.reason
    assert "Probe with more items" in report.recommendations[0].action


def test_behavioural_drift_with_knowledge_intact(synth, tmp_path):
    data = synth.write_training(tmp_path)
    before, after = synth.drift_pair()
    report = compare(before, after, training_data=data)

    knowledge, behaviour = report.metric("knowledge").overall, report.metric("behaviour").overall
    assert (knowledge.before, knowledge.after) == (0.5, 0.525)
    assert (behaviour.before, behaviour.after) == (0.725, 0.1)
    assert (behaviour.lost, behaviour.gained) == (25, 0)
    assert knowledge.verdict != "forgetting"
    assert behaviour.verdict == "forgetting" and behaviour.p_adjusted < 1e-5 and behaviour.ci_low > 0.3

    assert report.verdict == "forgetting"
    assert "behaviour" in report.triggered_by
    assert report.diagnosis.kind == "behavioural_drift"
    assert report.diagnosis.label == "behavioural drift with knowledge intact"
    assert "no forgetting" not in report.headline.lower()

    table = report.diagnosis.knows_says
    assert table.n == 40
    assert table.after == {"knows_and_says": 4, "knows_not_says": 17, "says_not_knows": 0, "neither": 19}
    assert table.change["knows_not_says"] == 17

    collapse = report.diagnosis.template_collapse
    assert collapse.share_before == 0.0 and collapse.share_after == 0.9
    assert collapse.collapsed and collapse.p_value < 1e-6
    assert "the zentrix device" in collapse.openings
    assert collapse.examples and collapse.examples[0].reply_after == synth.TEMPLATE_REPLY
    assert "template collapse" in report.triggered_by


def test_knowledge_loss_is_named_as_such(synth):
    before = synth.result([synth.mc(i, correct=i < 35) for i in range(40)])
    after = synth.result([synth.mc(i, correct=i < 10) for i in range(40)])
    report = compare(before, after)
    assert report.verdict == "forgetting"
    assert report.triggered_by[0] == "knowledge"
    assert report.diagnosis.kind == "knowledge_loss"
    assert report.metric("behaviour") is None  # no open-ended answers recorded
    lost = [e for e in report.lost_examples if e.metric == "knowledge"]
    assert lost and all(e.answer_before == e.expected != e.answer_after for e in lost)
    assert len({e.category for e in lost}) > 1  # spread over categories


def test_knowledge_and_behaviour_lost_together(synth):
    before = synth.result([synth.mc(i, correct=i < 35, open_correct=i < 35) for i in range(40)])
    after = synth.result([synth.mc(i, correct=i < 10, open_correct=i < 5) for i in range(40)])
    assert compare(before, after).diagnosis.kind == "knowledge_and_behaviour"


def test_category_p_values_are_holm_adjusted(synth):
    ids = {"a": range(30), "b": range(30, 60), "c": range(60, 90), "d": range(90, 120)}
    before = [synth.mc(i, correct=True, category=c) for c, rows in ids.items() for i in rows]
    after = [synth.mc(i, correct=not (c == "a" and i < 12), category=c) for c, rows in ids.items() for i in rows]
    report = compare(synth.result(before), synth.result(after))
    cats = report.metric("knowledge").categories
    assert [c.label for c in cats] == ["a", "b", "c", "d"]
    assert all(c.p_adjusted >= c.p_value for c in cats)
    a = cats[0]
    assert a.p_adjusted == pytest.approx(min(1.0, 4 * a.p_value))  # smallest of 4 p-values: times 4
    assert a.verdict == "forgetting"
    assert "knowledge: a" in report.triggered_by


def test_checklist_failures_broken_first_and_critical_first(synth):
    before = synth.result([synth.check(0, True, severity="low"), synth.check(1, True, severity="critical"),
                           synth.check(2, False, severity="critical"), synth.check(3, True, severity="high")])
    after = synth.result([synth.check(0, False, severity="low"), synth.check(1, False, severity="critical"),
                          synth.check(2, False, severity="critical"), synth.check(3, True, severity="high")])
    failures = compare(before, after).checklist_failures
    assert [(f.key, f.status) for f in failures] == [("checklist/chk-001", "broken"), ("checklist/chk-000", "broken"),
                                                     ("checklist/chk-002", "still_failing")]
    assert failures[0].failed_checks == ["is valid JSON"]
    assert failures[0].reply_after == "Sure! Here it is: ok" and failures[0].reply_before == '{"ok": true}'


def test_text_drift_nll_increase_and_kl(synth):
    before = synth.result([synth.text(i, nll=2.0 + 0.01 * (i % 7)) for i in range(60)])
    after = synth.result([synth.text(i, nll=2.3 + 0.01 * (i % 7) + 0.02 * (i % 3), kl=0.1 + 0.001 * i)
                          for i in range(60)])
    report = compare(before, after)
    text = report.metric("text")
    assert text.overall.before == pytest.approx(2.03, abs=0.01)
    assert text.overall.drop == pytest.approx(0.32, abs=0.01)  # increase in NLL, nats per token
    assert text.overall.verdict == "forgetting"
    assert text.perplexity_after > text.perplexity_before
    assert text.kl is not None and text.kl.n == 60
    assert text.kl.ci_low <= text.kl.mean <= text.kl.ci_high
    assert report.diagnosis.kind == "text_drift"
    assert any("kl" in r.change for r in report.recommendations)


def test_domain_suite_is_a_gain_not_forgetting(synth):
    general = [synth.mc(i, correct=True) for i in range(300)]
    dom_b = [synth.mc(i, correct=False, category="domain-products", suite="domain") for i in range(30)]
    dom_a = [synth.mc(i, correct=i < 25, category="domain-products", suite="domain") for i in range(30)]
    report = compare(synth.result(general + dom_b), synth.result(general + dom_a))
    assert report.domain_suites == ["domain"]
    assert report.verdict == "no_forgetting"
    assert report.domain[0].overall.drop == pytest.approx(-25 / 30)
    assert all(m.overall.n == 300 for m in report.metrics)


def test_report_is_deterministic_and_json_round_trips(synth, tmp_path):
    before, after = synth.drift_pair()
    a = compare(before, after, seed=3)
    b = compare(before, after, seed=3)
    assert a.to_json() == b.to_json()
    again = ForgettingReport.model_validate_json(a.to_json())
    assert again == a


def test_bad_threshold_is_a_user_error(synth):
    from forgetless.errors import ForgetlessError

    with pytest.raises(ForgetlessError, match="threshold"):
        compare(*_identical(synth, 10), threshold=-0.1)


def test_knowledge_is_called_intact_only_when_a_drop_is_ruled_out(synth):
    """Behaviour collapses on 20 items; knowledge does not move, but 20 items cannot rule out a drop of 0.05."""
    before = [synth.mc(i, correct=i < 10, open_correct=True) for i in range(20)]
    after = [synth.mc(i, correct=i < 10, open_correct=False) for i in range(20)]
    report = compare(synth.result(before), synth.result(after))
    assert report.metric("knowledge").overall.verdict == "inconclusive"
    assert report.diagnosis.kind == "behavioural_drift"
    assert "intact" not in report.diagnosis.label and "not ruled out" in report.diagnosis.label
    assert "intact" not in report.headline
