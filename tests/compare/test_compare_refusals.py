"""`compare` refuses pairs that did not ask the same questions the same way, naming what differs."""

from __future__ import annotations

import pytest

from forgetless.compare import compare
from forgetless.errors import ForgetlessError


def _items(synth, n=10):
    return [synth.mc(i, correct=True, open_correct=True) for i in range(n)]


def test_different_suite_sha_is_refused(synth):
    before = synth.result(_items(synth), sha={"general": "a" * 64})
    after = synth.result(_items(synth), sha={"general": "b" * 64})
    with pytest.raises(ForgetlessError, match="suite 'general' changed.*aaaaaaaaaaaa before, bbbbbbbbbbbb after"):
        compare(before, after)


def test_different_suite_names_are_refused(synth):
    other = [it.model_copy(update={"suite": "other"}) for it in _items(synth)]
    with pytest.raises(ForgetlessError, match=r"different suites.*\['general'\].*\['other'\]"):
        compare(synth.result(_items(synth)), synth.result(other))


def test_different_template_is_refused(synth):
    with pytest.raises(ForgetlessError, match="different templates.*tmpl-1.*tmpl-2"):
        compare(synth.result(_items(synth)), synth.result(_items(synth), template="tmpl-2"))


def test_different_prompt_rendering_is_refused(synth):
    after = _items(synth)
    after[3] = after[3].model_copy(update={"prompt": "System: be terse\n" + after[3].prompt})
    with pytest.raises(ForgetlessError, match="'general/mc-003' was asked with a different prompt"):
        compare(synth.result(_items(synth)), synth.result(after))


def test_different_item_sets_are_refused_naming_the_items(synth):
    with pytest.raises(ForgetlessError, match="item sets differ: 2 only before \\(general/mc-008, general/mc-009\\)"):
        compare(synth.result(_items(synth, 10)), synth.result(_items(synth, 8)))


def test_duplicate_items_are_refused(synth):
    items = _items(synth, 3)
    with pytest.raises(ForgetlessError, match="appears twice"):
        compare(synth.result(items + items[:1]), synth.result(items + items[:1]))


def test_generation_setting_differences_are_warnings(synth):
    before, after = synth.result(_items(synth)), synth.result(_items(synth))
    after.settings["max_new_tokens"] = 64
    report = compare(before, after)
    assert any("max_new_tokens" in w for w in report.warnings)
