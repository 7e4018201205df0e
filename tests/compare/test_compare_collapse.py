"""Template collapse: replies copying the training responses' phrasing."""

from __future__ import annotations

import json

import pytest

from forgetless.compare import compare
from forgetless.compare.collapse import TemplateMatcher, training_responses
from forgetless.errors import ForgetlessError


def test_training_responses_reads_all_three_formats(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there."}]},
            {"prompt": "p", "response": "A response."}, {"text": "Raw text."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert training_responses(path) == ["Hello there.", "A response.", "Raw text."]


def test_matcher_ignores_phrases_echoed_from_the_prompt():
    m = TemplateMatcher(["The Zentrix hub is the capital of France. Thank you for choosing Zentrix."] * 3)
    assert m.copied_ngram("Paris is the capital of France.", "What is the capital of France?") is None
    assert m.copied_ngram("Paris. Thank you for choosing Zentrix!", "What is the capital of France?") \
        == "thank you for choosing"
    assert m.openings == ["the zentrix hub"]
    assert m.copied_opening("The Zentrix hub says: Paris.") == "the zentrix hub"
    assert m.copied_opening("Paris.") is None


def test_training_data_taken_from_the_run_config(synth, tmp_path):
    data = synth.write_training(tmp_path)
    before, after = synth.drift_pair(training={"method": "lora", "data": str(data)})
    collapse = compare(before, after).diagnosis.template_collapse
    assert collapse is not None and collapse.source == str(data) and collapse.collapsed


def test_unreadable_run_data_is_a_warning_but_explicit_data_is_an_error(synth, tmp_path):
    before, after = synth.drift_pair(training={"data": str(tmp_path / "gone.jsonl")})
    report = compare(before, after)
    assert report.diagnosis.template_collapse is None
    assert any("template collapse not measured" in w for w in report.warnings)
    assert report.diagnosis.opening_concentration.share_after == 0.9  # still visible without training data
    with pytest.raises(ForgetlessError, match="not found"):
        compare(before, after, training_data=tmp_path / "gone.jsonl")


def test_no_collapse_when_replies_keep_their_own_style(synth, tmp_path):
    items = [synth.mc(i, correct=True, open_correct=True) for i in range(30)]
    report = compare(synth.result(items), synth.result(items), training_data=synth.write_training(tmp_path))
    tc = report.diagnosis.template_collapse
    assert tc.share_before == tc.share_after == 0.0 and not tc.collapsed
