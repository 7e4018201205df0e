"""Training data: read a JSONL file, tokenize it with the model's chat template, mask the loss.

Three formats, one per file (the first record decides, every other record must match):

- `{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}`
- `{"prompt": ..., "response": ...}` — the prompt becomes a user turn, the response an assistant turn
- `{"text": ...}` — raw text, loss on every token (continued pre-training)

For chat formats only assistant tokens are learned (labels are -100 elsewhere): learning to
predict user prompts and the system boilerplate would spend capacity, and drift, on text the
model never has to write. The conversation is rendered with the chat template, cut at each
assistant turn, and the pieces tokenized separately — so the prompt tokens are exactly those the
model sees at inference (prompt rendered with the generation header, answer generated after it),
and the labelled tokens are exactly the answer plus the end-of-turn token.

A model without a chat template (a base model) is evaluated on plain "Question: ...\nAnswer:" prompts
(`eval.prompts`), so its single-turn records train in that same form: the prompt, then " answer" and EOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from forgetless.errors import ForgetlessError
from forgetless.eval.prompts import continuation_text, encode, encode_start, has_chat_template, render_prompt
from forgetless.io import read_jsonl, resolve_data_path
from forgetless.lint import Boilerplate, strip_boilerplate
from forgetless.registry import did_you_mean

IGNORE_INDEX = -100
# per-example data a regularizer attached (the KL's precomputed targets); the trainer hands it to the penalties
PER_POSITION_KEYS = ("kl_ids", "kl_logp")
PENALTY_KEYS = ("general", *PER_POSITION_KEYS)
FORMATS = {"messages": ("messages",), "prompt_response": ("prompt", "response"), "text": ("text",)}
METADATA_KEYS = {"id", "meta", "metadata", "source", "category", "tags"}  # carried along, never trained on
ROLES = {"system", "user", "assistant"}
END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "</s>")


@dataclass
class Record:
    """One validated training record, remembered with its file:line for later error messages."""

    format: str
    data: dict[str, Any]
    where: str
    open_end: bool = False  # the response was cut off: its end-of-turn token is not learned


@dataclass
class Tokenized:
    """Token ids and labels of a set of examples, plus what was dropped and why."""

    examples: list[dict[str, list[int]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # file:line of examples with no response left
    truncated: int = 0


# --- reading and checking -----------------------------------------------------------------------


def detect_format(obj: dict[str, Any], where: str) -> str:
    keys = set(obj) - METADATA_KEYS
    for name, required in FORMATS.items():
        if keys == set(required):
            return name
    unknown = sorted(keys - {k for req in FORMATS.values() for k in req})
    if unknown:
        valid = [k for req in FORMATS.values() for k in req]
        raise ForgetlessError(f"unknown field '{unknown[0]}' ({did_you_mean(unknown[0], valid)})", where=where,
                              hint="records need 'messages', or 'prompt' and 'response', or 'text'")
    raise ForgetlessError(f"fields {sorted(keys)} match no format", where=where,
                          hint="use exactly one of: messages | prompt + response | text")


def check_record(obj: dict[str, Any], fmt: str, where: str) -> None:
    if fmt == "text":
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            raise ForgetlessError("'text' must be a non-empty string", where=where)
    elif fmt == "prompt_response":
        for key in ("prompt", "response"):
            if not isinstance(obj[key], str) or not obj[key].strip():
                raise ForgetlessError(f"'{key}' must be a non-empty string", where=where)
    else:
        _check_messages(obj["messages"], where)


def _check_messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise ForgetlessError("'messages' must be a non-empty list of {role, content}", where=where)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            raise ForgetlessError(f"messages[{i}] must be an object with exactly 'role' and 'content'", where=where)
        if m["role"] not in ROLES:
            raise ForgetlessError(f"messages[{i}].role '{m['role']}' is not one of {sorted(ROLES)}", where=where)
        if not isinstance(m["content"], str):
            raise ForgetlessError(f"messages[{i}].content must be a string", where=where)
    if not any(m["role"] == "assistant" for m in messages):
        raise ForgetlessError("no assistant message: nothing to learn from this record", where=where)
    if messages[0]["role"] == "assistant":
        raise ForgetlessError("the first message is from the assistant; start with a user (or system) turn",
                              where=where)


def read_records(path: str | Path) -> list[Record]:
    """Read and check every record; the first one fixes the file's format."""
    path = resolve_data_path(path)
    records: list[Record] = []
    fmt = None
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        this = detect_format(obj, where)
        if fmt is None:
            fmt = this
        elif this != fmt:
            raise ForgetlessError(f"record is in '{this}' format but the file started with '{fmt}' "
                                  f"(line {records[0].where.rsplit(':', 1)[1]})", where=where,
                                  hint="use one format per file")
        check_record(obj, fmt, where)
        records.append(Record(fmt, obj, where))
    return records


def responses(record: Record) -> list[str]:
    """The texts the model learns to write from a record: its assistant turns (none for raw text)."""
    if record.format == "text":
        return []
    return [m["content"] for m in as_messages(record) if m["role"] == "assistant"]


def without_boilerplate(record: Record, found: list[Boilerplate]) -> Record:
    """The record with `forgetless.lint` boilerplate stripped from each assistant turn."""
    if record.format == "prompt_response":
        data = {**record.data, "response": strip_boilerplate(record.data["response"], found)}
    elif record.format == "messages":
        data = {**record.data, "messages": [
            {**m, "content": strip_boilerplate(m["content"], found)} if m["role"] == "assistant" else m
            for m in record.data["messages"]]}
    else:
        return record
    return Record(record.format, data, record.where, record.open_end)


def as_messages(record: Record) -> list[dict[str, str]]:
    if record.format == "prompt_response":
        return [{"role": "user", "content": record.data["prompt"]},
                {"role": "assistant", "content": record.data["response"]}]
    return record.data["messages"]


# --- tokenizing ---------------------------------------------------------------------------------


def end_token_ids(tokenizer: Any) -> set[int]:
    """Tokens that close an assistant turn: labelled, but nothing after them in that turn is."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN if t in vocab)
    return ids


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def chat_segments(tokenizer: Any, messages: list[dict[str, str]], where: str) -> list[tuple[str, bool]]:
    """Split a rendered conversation into (text, is_assistant_turn) pieces, in order."""
    full = _render(tokenizer, messages, False)
    segments: list[tuple[str, bool]] = []
    done = 0  # characters of `full` already placed in a segment
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True)
        upto = _render(tokenizer, messages[: i + 1], False)
        if not (full.startswith(upto) and upto.startswith(before) and len(before) >= done):
            raise ForgetlessError("the chat template renders earlier turns differently once later ones are added, "
                                  "so assistant tokens cannot be located", where=where,
                                  hint="use single-turn prompt/response records")
        segments.append((full[done:len(before)], False))
        segments.append((full[len(before):len(upto)], True))
        done = len(upto)
    if done < len(full):
        segments.append((full[done:], False))
    return [s for s in segments if s[0]]


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], where: str,
                end_ids: set[int] | None = None, label_end: bool = True) -> tuple[list[int], list[int]]:
    """Token ids and labels of a conversation: labels are the ids on assistant tokens, -100 elsewhere.
    `label_end=False` leaves the end-of-turn token unlabelled (a reply that was cut off)."""
    end_ids = end_token_ids(tokenizer) if end_ids is None else end_ids
    ids: list[int] = []
    labels: list[int] = []
    for text, learn in chat_segments(tokenizer, messages, where):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        if not learn:
            labels += [IGNORE_INDEX] * len(piece)
            continue
        end = next((j for j, t in enumerate(piece) if t in end_ids), None)
        cut = len(piece) if end is None else end + label_end  # keep the end token, unless the reply was cut off
        labels += piece[:cut] + [IGNORE_INDEX] * (len(piece) - cut)
    return ids, labels


def encode_plain(tokenizer: Any, messages: list[dict[str, str]], where: str,
                 label_end: bool = True) -> tuple[list[int], list[int]]:
    """Token ids and labels of a single-turn record for a model without a chat template, exactly as the
    evaluation asks it: the plain prompt (BOS by the tokenizer's convention), then the answer with EOS."""
    if [m["role"] for m in messages] != ["user", "assistant"]:
        raise ForgetlessError("the model's tokenizer has no chat template, so only single-turn records (one user "
                              "turn, one answer, no system turn) can be trained", where=where,
                              hint="use prompt/response or raw {\"text\": ...} records, or pick an instruct model")
    prompt = encode_start(tokenizer, render_prompt(tokenizer, messages[0]["content"]))
    answer = encode(tokenizer, continuation_text(tokenizer, messages[1]["content"]))
    if label_end and tokenizer.eos_token_id is not None:  # a cut-off reply gets no end
        answer = answer + [tokenizer.eos_token_id]
    return prompt + answer, [IGNORE_INDEX] * len(prompt) + answer


def encode_text(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids = ids + [tokenizer.eos_token_id]  # documents end, so generation learns to stop
    return ids, list(ids)


def tokenize_records(records: Iterable[Record], tokenizer: Any, max_length: int) -> Tokenized:
    """Tokenize and truncate; examples left with no labelled token are dropped (and reported)."""
    out = Tokenized()
    end_ids = end_token_ids(tokenizer)
    for record in records:
        if record.format == "text":
            ids, labels = encode_text(tokenizer, record.data["text"])
        elif has_chat_template(tokenizer):
            ids, labels = encode_chat(tokenizer, as_messages(record), record.where, end_ids,
                                      label_end=not record.open_end)
        else:
            ids, labels = encode_plain(tokenizer, as_messages(record), record.where, label_end=not record.open_end)
        if len(ids) > max_length:
            out.truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE_INDEX for label in labels[1:]):  # position 0 is never predicted
            out.dropped.append(record.where)
            continue
        out.examples.append({"input_ids": ids, "labels": labels})
    return out


# --- batching -----------------------------------------------------------------------------------


class ExampleDataset(torch.utils.data.Dataset):
    """A list of tokenized examples (the Trainer needs `len` and indexing, nothing more)."""

    def __init__(self, examples: list[dict[str, list[int]]]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.examples[i]


@dataclass
class PadCollator:
    """Right-pads a batch: pad id in input_ids, -100 in labels, 0 in attention_mask. Examples flagged
    `general` (replay) give a (B,) `general` tensor, which penalties scoped to general examples read."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if any("general" in f for f in features):
            batch["general"] = torch.tensor([bool(f.get("general")) for f in features])
        for key in PER_POSITION_KEYS:  # (n_scored, k) per example: concatenated in row order
            parts = [f[key] for f in features if key in f]
            if parts:
                batch[key] = torch.cat(parts)
        return batch


GROUP_WINDOW = 8  # consecutive batches whose rows `group_by_length` regroups


def group_by_length(examples: list[dict[str, Any]], batch_size: int, pass_size: int | None = None,
                    window: int = GROUP_WINDOW) -> list[dict[str, Any]]:
    """The same rows, regrouped window by window (`window` batches of `batch_size`) so that each batch holds
    rows of like length: the collator pads every row to its batch's longest, and each pad token costs a real
    one in the forward and backward. Every batch keeps its count of general (replay) rows, so each step still
    sees the mix's share of replay; only which rows share a batch changes, never which rows a window trains.

    A window that would span two passes of `pass_size` rows is left as it is: each pass keeps every example
    once, and no example meets its own copy in a batch (a small set's window would span several passes).
    Within a window, batches with more general rows take the longest of each kind first.
    """
    out: list[dict[str, Any]] = []
    span = batch_size * window
    for start in range(0, len(examples), span):
        chunk = examples[start:start + span]
        if pass_size and start // pass_size != (start + span - 1) // pass_size:
            out += chunk
            continue
        batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        pools = {kind: sorted((e for e in chunk if bool(e.get("general")) == kind),
                              key=lambda e: len(e["input_ids"]), reverse=True) for kind in (True, False)}
        general = [sum(bool(e.get("general")) for e in b) for b in batches]
        grouped: list[list[dict[str, Any]]] = [[] for _ in batches]
        for i in sorted(range(len(batches)), key=lambda i: -general[i]):
            for kind, n in ((True, general[i]), (False, len(batches[i]) - general[i])):
                grouped[i] += pools[kind][:n]
                pools[kind] = pools[kind][n:]
        out += [e for b in grouped for e in b]
    return out


def collator_for(tokenizer: Any) -> PadCollator:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return PadCollator(pad_token_id=pad if pad is not None else 0)
