"""The KV-cache greedy decoder: batching and left padding do not change a reply."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from forgetless.eval.decode import MIN_SHARED_PREFIX, pad_id_of, prefill, shared_prefix_length
from forgetless.eval.generate import cut_at_stops, greedy_generate, greedy_tokens
from forgetless.eval.prompts import encode, render_prompt


def test_batched_generation_matches_one_by_one_and_model_generate(smollm2):
    tok = smollm2.tokenizer
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config).eval()
    prompts = [render_prompt(tok, p) for p in ("Hi", "What is a long question with many words in it?")]
    batched = greedy_generate(model, tok, prompts, max_new_tokens=6, batch_size=2)
    single = [greedy_generate(model, tok, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert batched == single
    for prompt, reply in zip(prompts, single):
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
        assert reply == tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_a_stop_predicate_ends_each_row_where_it_first_holds(smollm2):
    """The real model, replies of 24 tokens: a row stops at the first step whose tokens contain a space-led word
    of 4+ letters, and the tokens up to there are the unstopped reply's, row by row, in one batch."""
    tok = smollm2.tokenizer
    prompts = [render_prompt(tok, p) for p in ("What is the capital of France?", "Name three colours.", "Hi")]
    full = greedy_tokens(smollm2.model, tok, prompts, max_new_tokens=24, batch_size=3)

    def long_word(tokens: list[int]) -> bool:
        return any(len(w) >= 4 for w in tok.decode(tokens).split()[1:])

    stopped = greedy_tokens(smollm2.model, tok, prompts, max_new_tokens=24, batch_size=3, stop=long_word)
    for row, cut in zip(full, stopped):
        end = next((k for k in range(1, len(row) + 1) if long_word(row[:k])), len(row))
        assert cut == row[:end]
    assert any(len(cut) < len(row) for row, cut in zip(full, stopped))


def test_cut_at_stops_keeps_the_text_before_the_first_stop():
    assert cut_at_stops("Paris.\nQuestion: next", ["\nQuestion:", "###"]) == "Paris."
    assert cut_at_stops("no stop here ", []) == "no stop here"


def test_shared_prefix_length_leaves_every_row_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0


def test_prefill_with_a_shared_prefix_matches_each_prompt_alone(smollm2):
    """The template's system prompt is computed once for the batch; each row must still see exactly
    its own prompt (positions continue after the prefix, padding between them is masked)."""
    tok, model = smollm2.tokenizer, smollm2.model.eval()
    rows = [encode(tok, render_prompt(tok, q)) for q in
            ("What is the capital of France?", "Name a mammal that can fly, and say why it counts.", "2+2?")]
    shared = shared_prefix_length(rows)
    assert shared >= MIN_SHARED_PREFIX
    batched = prefill(model, rows, pad_id_of(tok))
    assert batched.lengths.tolist() == [len(r) for r in rows]
    for i, row in enumerate(rows):
        alone = prefill(model, [row], pad_id_of(tok))
        torch.testing.assert_close(batched.last_logits[i], alone.last_logits[0], atol=2e-4, rtol=0)
    prompts = [tok.decode(r) for r in rows]
    assert greedy_generate(model, tok, prompts, max_new_tokens=8, batch_size=3) == \
        [greedy_generate(model, tok, [p], max_new_tokens=8, batch_size=1)[0] for p in prompts]
