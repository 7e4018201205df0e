"""The shared-context multiple-choice scorer against a brute-force reference on the real model."""

from __future__ import annotations

import pytest

from forgetless.eval.loglik import score_multiple_choice, score_multiple_choice_bruteforce
from forgetless.eval.prompts import render_prompt
from forgetless.suites import load_suite


@pytest.fixture(scope="module")
def mc_items():
    items = load_suite("general").by_type("mc")
    # a spread over categories, including items with multi-token and numeric choices
    return items[::37][:12]


def test_matches_bruteforce_on_real_model(smollm2, mc_items):
    tok = smollm2.tokenizer
    contexts = [render_prompt(tok, it.question) for it in mc_items]
    choices = [it.choices for it in mc_items]
    fast = score_multiple_choice(smollm2.model, tok, contexts, choices, batch_size=8)
    slow = score_multiple_choice_bruteforce(smollm2.model, tok, contexts, choices)
    for f, s in zip(fast, slow):
        assert f.pred == s.pred and f.pred_norm == s.pred_norm
        assert f.logliks == pytest.approx(s.logliks, abs=1e-4)
    # well above chance (3 of 12) on these basic items
    assert sum(f.pred == it.answer for f, it in zip(fast, mc_items)) >= 5


def test_batch_size_does_not_change_predictions(smollm2, mc_items):
    tok = smollm2.tokenizer
    contexts = [render_prompt(tok, it.question) for it in mc_items]
    choices = [it.choices for it in mc_items]
    one = score_multiple_choice(smollm2.model, tok, contexts, choices, batch_size=1)
    many = score_multiple_choice(smollm2.model, tok, contexts, choices, batch_size=16)
    assert [s.pred for s in one] == [s.pred for s in many]
    for a, b in zip(one, many):
        assert a.logliks == pytest.approx(b.logliks, abs=1e-4)


def test_acc_norm_divides_by_utf8_bytes():
    from forgetless.eval.loglik import make_score

    score = make_score([-4.0, -6.0], ["ab", "abcdef"])  # per byte: -2.0 vs -1.0
    assert score.pred == 0 and score.pred_norm == 1
