"""Training data: formats, file:line errors, the response-only loss mask on the real tokenizer, padding."""

from __future__ import annotations

import copy
import itertools
import json
import random

import pytest
import torch
from transformers import AutoTokenizer

from forgetless.errors import ForgetlessError
from forgetless.eval.prompts import PLAIN_TEMPLATE, encode
from forgetless.io import resolve_data_path
from forgetless.models.loading import resolve
from forgetless.train.data import (
    IGNORE_INDEX,
    PadCollator,
    group_by_length,
    read_records,
    tokenize_records,
)


@pytest.fixture(scope="module")
def tokenizer():
    folder, _, _ = resolve("smollm2-135m")  # the converted built-in's folder; no weights loaded
    return AutoTokenizer.from_pretrained(folder)


def jsonl(tmp_path, rows, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def labelled_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t in example["labels"] if t != IGNORE_INDEX])


def test_prompt_response_mask_covers_exactly_the_response(tokenizer, tmp_path):
    path = jsonl(tmp_path, [{"prompt": "What is the capital of France?", "response": "Paris, on the Seine."}])
    example = tokenize_records(read_records(path), tokenizer, 256).examples[0]
    assert labelled_text(tokenizer, example) == "Paris, on the Seine." + tokenizer.eos_token
    labelled = [i for i, t in enumerate(example["labels"]) if t != IGNORE_INDEX]
    assert labelled == list(range(labelled[0], labelled[-1] + 1))  # one contiguous span
    assert [example["input_ids"][i] for i in labelled] == [example["labels"][i] for i in labelled]
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"},
                                              {"role": "assistant", "content": "Paris, on the Seine."}],
                                             tokenize=False)
    assert tokenizer.decode(example["input_ids"]) == rendered


def test_multi_turn_messages_learn_every_assistant_turn(tokenizer, tmp_path):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"},
                {"role": "assistant", "content": "Goodbye."}]
    example = tokenize_records(read_records(jsonl(tmp_path, [{"messages": messages}])), tokenizer, 256).examples[0]
    eos = tokenizer.eos_token
    assert labelled_text(tokenizer, example) == f"Hello!{eos}Goodbye.{eos}"
    assert "Be brief" not in labelled_text(tokenizer, example)


@pytest.fixture(scope="module")
def base_tokenizer(tokenizer):
    """A base model's tokenizer: no chat template, BOS added by convention (Llama, Gemma)."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template, tok.add_bos_token = None, True
    return tok


def test_without_a_chat_template_records_train_as_the_plain_prompt_is_evaluated(base_tokenizer, tmp_path):
    tok = base_tokenizer
    path = jsonl(tmp_path, [{"prompt": "What is the capital of France?", "response": "Paris."}], "pr.jsonl")
    example = tokenize_records(read_records(path), tok, 256).examples[0]
    prompt = [tok.bos_token_id, *encode(tok, PLAIN_TEMPLATE.format(question="What is the capital of France?"))]
    answer = [*encode(tok, " Paris."), tok.eos_token_id]
    assert example["input_ids"] == prompt + answer
    assert example["labels"] == [IGNORE_INDEX] * len(prompt) + answer


def test_without_a_chat_template_multi_turn_records_are_refused_with_their_line(base_tokenizer, tmp_path):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}]
    path = jsonl(tmp_path, [{"messages": messages[1:]}, {"messages": messages}])
    with pytest.raises(ForgetlessError) as e:
        tokenize_records(read_records(path), base_tokenizer, 256)
    assert f"{path}:2" in str(e.value) and "no chat template" in str(e.value)


def test_raw_text_learns_every_token_and_truncates(tokenizer, tmp_path):
    records = read_records(jsonl(tmp_path, [{"text": "one two three " * 40}, {"text": "short"}]))
    data = tokenize_records(records, tokenizer, 32)
    long, short = data.examples
    assert len(long["input_ids"]) == 32 and long["labels"] == long["input_ids"] and data.truncated == 1
    assert short["input_ids"][-1] == tokenizer.eos_token_id


def test_prompt_longer_than_max_length_is_dropped_and_reported(tokenizer, tmp_path):
    path = jsonl(tmp_path, [{"prompt": "word " * 200, "response": "ok"}, {"prompt": "q", "response": "a"}])
    data = tokenize_records(read_records(path), tokenizer, 64)
    assert len(data.examples) == 1 and data.dropped == [f"{path}:1"]


@pytest.mark.parametrize("rows, line, message", [
    ([{"prompt": "q", "response": "a"}, {"text": "t"}], 2, "file started with 'prompt_response'"),
    ([{"prompt": "q", "answer": "a"}], 1, "unknown field 'answer'"),
    ([{"prompt": "q"}], 1, "match no format"),
    ([{"text": "ok"}, {"text": ""}], 2, "non-empty string"),
    ([{"prompt": "q", "response": 3}], 1, "'response' must be a non-empty string"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], 1, "no assistant message"),
    ([{"messages": [{"role": "bot", "content": "hi"}]}], 1, "role 'bot'"),
    ([{"messages": [{"role": "assistant", "content": "hi"}]}], 1, "first message is from the assistant"),
    ([{"messages": "hello"}], 1, "non-empty list"),
    ([{"text": "a"}, "{not json"], 2, "invalid JSON"),
])
def test_bad_records_name_file_and_line(tmp_path, rows, line, message):
    path = jsonl(tmp_path, rows)
    with pytest.raises(ForgetlessError) as e:
        read_records(path)
    assert f"{path}:{line}" in str(e.value) and message in str(e.value)


def test_metadata_fields_are_allowed(tmp_path):
    records = read_records(jsonl(tmp_path, [{"id": 7, "prompt": "q", "response": "a", "category": "x"}]))
    assert records[0].format == "prompt_response"


def test_builtin_prefix_points_into_the_package():
    path = resolve_data_path("builtin:domain/train.jsonl")
    assert path.parts[-4:] == ("forgetless", "data", "domain", "train.jsonl")


def test_collator_right_pads():
    batch = PadCollator(pad_token_id=9)([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
                                         {"input_ids": [4], "labels": [4]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["input_ids"].dtype == torch.long


# --- rows of like length share a batch (group_by_length) ------------------------------------------


def stream_of(lengths: list[int], general: list[bool] | None = None) -> list[dict]:
    general = general or [False] * len(lengths)
    return [{"input_ids": [i] * n, "general": g} if g else {"input_ids": [i] * n}
            for i, (n, g) in enumerate(zip(lengths, general))]


def padded(stream: list[dict], size: int) -> int:
    return sum(size * max(len(e["input_ids"]) for e in stream[i:i + size]) for i in range(0, len(stream), size))


def test_grouping_keeps_each_windows_rows_and_each_batchs_replay_count():
    rng = random.Random(0)
    lengths = [rng.randint(20, 96) for _ in range(203)]  # a last window and a last batch that are partial
    general = [rng.random() < 0.25 for _ in lengths]
    stream = stream_of(lengths, general)
    grouped = group_by_length(stream, 4, window=5)
    assert len(grouped) == len(stream)
    for start in range(0, len(stream), 20):  # the same rows, window by window
        assert sorted(id(e) for e in grouped[start:start + 20]) == sorted(id(e) for e in stream[start:start + 20])
    for start in range(0, len(stream), 4):  # each batch keeps its number of replayed rows
        assert (sum("general" in e for e in grouped[start:start + 4])
                == sum("general" in e for e in stream[start:start + 4]))
    assert padded(grouped, 4) < 0.9 * padded(stream, 4)


def test_grouping_pads_least_when_all_rows_are_alike():
    """One kind of row: the padded total is the least of every way to share the rows out (brute force)."""
    rng = random.Random(1)
    for _ in range(20):
        lengths = [rng.randint(1, 30) for _ in range(6)]
        best = min(padded(stream_of([lengths[i] for i in order]), 2) for order in itertools.permutations(range(6)))
        assert padded(group_by_length(stream_of(lengths), 2, window=3), 2) == best


def test_a_window_that_spans_two_passes_is_left_as_it_is():
    """Passes of 6 rows, windows of 4: rows 4-7 hold both passes' rows and keep their order, so a pass still
    holds each example once and no example meets its own copy in a batch."""
    stream = stream_of([5, 1, 4, 2, 6, 3, 7, 8, 2, 9, 1, 3])
    grouped = group_by_length(stream, 2, pass_size=6, window=2)
    assert grouped[4:8] == stream[4:8]
    assert [len(e["input_ids"]) for e in grouped[:4] + grouped[8:]] == [5, 4, 2, 1, 9, 3, 2, 1]
