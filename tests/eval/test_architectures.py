"""The evaluation engine across model families: tiny random-weight models built from transformers' config
classes, with SmolLM2's tokenizer. Multiple-choice log-likelihoods must equal one plain forward per choice,
and greedy replies must equal `model.generate`, item for item, at batch 1 and 16, for chat and plain prompts.

Llama-like caches take the fast path (prefill once, reuse the cache); sliding-window families (Mistral,
Gemma 2, Gemma 3) keep more state than keys and values and take the exact path (`reuses_cache` False).
"""

from __future__ import annotations

import copy

import pytest
import torch
import transformers

from forgetless.eval.decode import eos_ids_of, generate_exact, pad_id_of, reuses_cache
from forgetless.eval.loglik import answer_and_score, score_multiple_choice_bruteforce
from forgetless.eval.prompts import encode_start, render_prompt
from forgetless.suites import Suite, load_suite

COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512)
GEMMA = dict(head_dim=8, query_pre_attn_scalar=8, sliding_window=16)
FAMILIES = {  # name: (config class, model class, extra config, takes the fast path)
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}, True),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}, True),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 8}, True),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"pad_token_id": 0}, True),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}, True),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": 16}, False),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", GEMMA, False),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               {**GEMMA, "layer_types": ["sliding_attention"] * 3 + ["full_attention"]}, False),
}
ITEMS = 8
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def tokenizers(smollm2):
    chat = smollm2.tokenizer
    plain = copy.deepcopy(chat)
    plain.chat_template = None
    return {"chat": chat, "plain": plain}


def build(name: str, vocab: int):
    config_class, model_class, extra, _ = FAMILIES[name]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(vocab_size=vocab, **COMMON, **extra)
    return getattr(transformers, model_class)(config).eval()


@pytest.mark.parametrize("prompts", ["chat", "plain"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_scores_and_replies_equal_the_plain_model(name, prompts, tokenizers):
    tok = tokenizers[prompts]
    model = build(name, len(tok))
    assert reuses_cache(model) == FAMILIES[name][3]
    items = load_suite("general").by_type("mc")[:ITEMS]
    contexts, choices = [render_prompt(tok, it.question) for it in items], [it.choices for it in items]
    reference = score_multiple_choice_bruteforce(model, tok, contexts, choices)
    rows = [encode_start(tok, c) for c in contexts]
    generated = [generate_exact(model, [row], max_new_tokens=NEW_TOKENS, eos_ids=eos_ids_of(model, tok),
                                pad_id=pad_id_of(tok))[0] for row in rows]  # model.generate, one prompt at a time
    expected_replies = [tok.decode(t, skip_special_tokens=True).strip() for t in generated]
    for batch_size in (1, 16):
        for open_ended in (False, True):
            scores, replies = answer_and_score(model, tok, contexts, choices, batch_size=batch_size,
                                               max_new_tokens=NEW_TOKENS if open_ended else 0)
            for got, want in zip(scores, reference):
                torch.testing.assert_close(torch.tensor(got.logliks), torch.tensor(want.logliks), rtol=0, atol=1e-4)
                assert got.pred == want.pred
            if open_ended:
                assert replies == expected_replies


def test_sequences_start_with_bos_where_the_tokenizer_adds_one(smollm2):
    """Llama and Gemma base models expect BOS: evaluation starts plain prompts and texts as training on a text
    record does (the tokenizer's `add_bos_token`), and a chat template that writes its own BOS keeps one."""
    from forgetless.eval.prompts import encode
    from forgetless.train.data import encode_text

    tok = copy.deepcopy(smollm2.tokenizer)
    tok.chat_template, tok.add_bos_token = None, True
    prompt = render_prompt(tok, "What is the capital of France?")
    ids = encode_start(tok, prompt)
    assert ids == [tok.bos_token_id, *encode(tok, prompt)] and encode_text(tok, prompt)[0][:len(ids)] == ids
    assert encode_start(tok, tok.bos_token + "Hi").count(tok.bos_token_id) == 1
    assert encode_start(smollm2.tokenizer, prompt) == encode(smollm2.tokenizer, prompt)  # SmolLM2 adds none


# --- beyond evaluation: text drift, training with every penalty, merging back to the base ------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizers):
    """Each family saved as a model folder (as a user's model arrives), built on demand."""
    built = {}

    def folder(name: str):
        if name not in built:
            built[name] = tmp_path_factory.mktemp(name)
            build(name, len(tokenizers["chat"])).save_pretrained(built[name])
            tokenizers["chat"].save_pretrained(built[name])
        return built[name]
    return folder


@pytest.mark.parametrize("name", list(FAMILIES))
def test_text_drift_equals_a_direct_computation(name, tokenizers):
    """Right-padded batches of texts: NLL and KL per token equal one unpadded forward of each text."""
    from forgetless.eval.drift import score_texts, token_kl

    tok = tokenizers["chat"]
    model, other = build(name, len(tok)), build(name, len(tok))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    texts = [t.text for t in load_suite("general-text").by_type("text")[:4]]
    scores = score_texts(other, tok, texts, reference=model, max_length=64, batch_size=4)
    for text, score in zip(texts, scores):
        ids = torch.tensor([encode_start(tok, text)[:64]])
        with torch.no_grad():
            logits, ref = other(input_ids=ids).logits[0, :-1], model(input_ids=ids).logits[0, :-1]
        nll = -torch.log_softmax(logits.float(), -1).gather(1, ids[0, 1:, None]).mean()
        assert score.nll == pytest.approx(nll.item(), abs=1e-4)
        assert score.kl == pytest.approx(token_kl(ref, logits).mean().item(), abs=1e-4)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_lora_training_with_every_penalty_and_merging_back(name, folders, tmp_path):
    """Two LoRA steps with EWC and KL (replay 25%), then the adapter at alpha 0 is the base, item for item."""
    from forgetless.eval import EvalSettings, evaluate
    from forgetless.merge import load_pair
    from forgetless.models import load_model
    from forgetless.train import load_config, train

    config = load_config(None, [f"model={folders(name)}", "data=tests/workflow/fixtures/small-train.jsonl",
                                f"out={tmp_path / 'run'}", "method=lora", "max_steps=2", "batch_size=4",
                                "max_length=48", "replay.fraction=0.25", "replay.source=bundled",
                                "replay.reference_examples=8", "save_steps=100",
                                "regularizers=[{name: ewc, weight: 1.0}, {name: kl, weight: 0.5}]"])
    result = train(config)
    assert result.steps == 2 and result.final_loss is not None and torch.isfinite(torch.tensor(result.final_loss))
    pair = load_pair(None, str(result.run_dir), device="cpu")
    pair.interpolator.set_alpha(0.0)
    settings = EvalSettings(batch_size=4, max_new_tokens=4, check_max_new_tokens=4)
    probe = [Suite(name="probe", path=None, items=load_suite("general").by_type("mc")[:4])]
    merged = evaluate(pair.loaded, probe, settings=settings)
    base = evaluate(load_model(str(folders(name)), device="cpu"), probe, settings=settings)
    assert [(it.pred, it.reply) for it in merged.items] == [(it.pred, it.reply) for it in base.items]
    for got, want in zip(merged.items, base.items):
        torch.testing.assert_close(torch.tensor(got.logliks), torch.tensor(want.logliks), rtol=0, atol=1e-5)
