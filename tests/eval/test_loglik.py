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
    many = score_multiple_choice(smollm2.model, tok, contexts, choices, batch_size=64)
    assert [s.pred for s in one] == [s.pred for s in many]
    for a, b in zip(one, many):
        assert a.logliks == pytest.approx(b.logliks, abs=1e-4)


def test_acc_norm_divides_by_utf8_bytes():
    from forgetless.eval.loglik import make_score

    score = make_score([-4.0, -6.0], ["ab", "abcdef"])  # per byte: -2.0 vs -1.0
    assert score.pred == 0 and score.pred_norm == 1


@pytest.mark.parametrize("prompts", ["chat", "plain"])
def test_packed_rows_score_each_choice_as_if_alone(smollm2, mc_items, prompts):
    """Scored alone (no open answer), every context and its choices run as one packed row, at batch 1 and
    64: each choice's log-likelihood equals a plain forward of context + that choice."""
    import copy

    from forgetless.eval.loglik import packs

    tok = smollm2.tokenizer
    if prompts == "plain":
        tok = copy.deepcopy(tok)
        tok.chat_template = None
    assert packs(smollm2.model)
    contexts = [render_prompt(tok, it.question) for it in mc_items]
    choices = [it.choices for it in mc_items]
    slow = score_multiple_choice_bruteforce(smollm2.model, tok, contexts, choices)
    for batch_size in (1, 64):
        packed = score_multiple_choice(smollm2.model, tok, contexts, choices, batch_size=batch_size)
        for f, s in zip(packed, slow):
            assert f.pred == s.pred and f.logliks == pytest.approx(s.logliks, abs=1e-4)


def test_a_kernel_without_4d_masks_is_not_packed(tiny_model_dir):
    from forgetless.eval.loglik import packs
    from forgetless.models import load_model

    model = load_model(str(tiny_model_dir)).model
    assert packs(model)
    model.config._attn_implementation = "flash_attention_2"  # cannot take a block mask: the cache path instead
    assert not packs(model)


def test_choices_after_an_answers_opening_words_are_spaced_and_match_bruteforce(smollm2, mc_items):
    from forgetless.eval.prompts import answer_context, continuation_text, encode

    tok = smollm2.tokenizer
    contexts = [answer_context(tok, it.question, "The answer is") for it in mc_items]
    assert contexts[0] == render_prompt(tok, mc_items[0].question) + "The answer is"
    assert encode(tok, continuation_text(tok, "Paris", after_words=True)) == encode(tok, " Paris")
    choices = [it.choices for it in mc_items]
    fast = score_multiple_choice(smollm2.model, tok, contexts, choices, batch_size=8, after_words=True)
    slow = score_multiple_choice_bruteforce(smollm2.model, tok, contexts, choices, after_words=True)
    for f, s in zip(fast, slow):
        assert f.logliks == pytest.approx(s.logliks, abs=1e-4)
