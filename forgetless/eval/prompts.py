"""How a question becomes the text a model sees.

Chat models get their own chat template (a bare "Question:/Answer:" prompt often makes an instruct
model end at once); models without one get a plain completion prompt. The rendering is recorded in
every result so before/after comparisons can prove they asked the same thing.
"""

from __future__ import annotations

import hashlib
from typing import Any

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, text: str) -> str:
    """The full text that precedes the model's answer (special tokens included as text)."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False)
    return PLAIN_TEMPLATE.format(question=text)


def continuation_text(tokenizer: Any, choice: str, after_words: bool = False) -> str:
    """Chat templates end with the assistant header, so the answer follows directly; plain prompts and an
    answer's opening words (`answer_context`) need a space."""
    return choice if has_chat_template(tokenizer) and not after_words else " " + choice


def answer_context(tokenizer: Any, text: str, opening: str | None = None) -> str:
    """The prompt, then the answer's opening words where an item gives them (lm-eval's `gen_prefix`).

    A fine-tuned model that answers in sentences gives a bare choice right after the prompt little
    probability whatever it knows, so scoring there measures its answer format, not its knowledge."""
    prompt = render_prompt(tokenizer, text)
    return prompt + continuation_text(tokenizer, opening) if opening else prompt


def template_fingerprint(tokenizer: Any) -> str:
    source = tokenizer.chat_template if has_chat_template(tokenizer) else PLAIN_TEMPLATE
    return hashlib.sha256(str(source).encode()).hexdigest()[:16]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids without added BOS/EOS: the rendered text already carries its special tokens."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def bos_ids(tokenizer: Any) -> list[int]:
    """The BOS token the tokenizer adds by its own convention (`add_bos_token`: Llama, Gemma), or none
    (SmolLM2, Qwen): what training on a text record gets, so evaluation starts sequences the same way."""
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [bos] else []


def encode_start(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a text that starts a sequence: BOS first where the tokenizer's convention adds it (a chat
    template that writes its own BOS keeps one), never EOS."""
    ids, bos = encode(tokenizer, text), bos_ids(tokenizer)
    return ids if not bos or ids[:1] == bos else bos + ids
