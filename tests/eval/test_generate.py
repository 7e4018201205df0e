"""The KV-cache greedy decoder: batching and left padding do not change a reply."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from forgetless.eval.generate import cut_at_stops, greedy_generate
from forgetless.eval.prompts import render_prompt


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


def test_cut_at_stops_keeps_the_text_before_the_first_stop():
    assert cut_at_stops("Paris.\nQuestion: next", ["\nQuestion:", "###"]) == "Paris."
    assert cut_at_stops("no stop here ", []) == "no stop here"
