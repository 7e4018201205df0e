"""The four probe item types (mc, gen, check, text) and turning a JSON object into one.

Items are frozen pydantic models with `extra="forbid"` and strict types: `"answer": "2"` is an
error, not a 2. `parse_item` reports the first problem as one `ForgetlessError` line that names
the field, e.g. `general.jsonl:12: field 'answer': 7 is out of range for 4 choices`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from forgetless.errors import ForgetlessError
from forgetless.registry import did_you_mean
from forgetless.suites.checks import CHECKS, INVALID, Check, CheckBase, invalid
from forgetless.suites.matching import MatchMode, matches, matches_choice, parse_number


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


Text = Annotated[str, Field(min_length=1), AfterValidator(_not_blank)]
Severity = Literal["critical", "high", "medium", "low"]
MAX_CHOICES = 10


class ItemBase(BaseModel):
    """Fields every item has. `meta` is the one place free-form data is allowed."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Text
    category: Text
    meta: dict[str, Any] = Field(default_factory=dict)
    _suite: str | None = PrivateAttr(default=None)  # set by `Suite`

    @property
    def key(self) -> str:
        """`suite/id`, unique across suites (just `id` for an item not in a suite)."""
        return f"{self._suite}/{self.id}" if self._suite else self.id

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for this item: id, type, category first, `meta` last and only if set."""
        d = self.model_dump(mode="json")
        meta = d.pop("meta")
        head = {k: d.pop(k) for k in ("id", "type", "category")}
        return {**head, **d, **({"meta": meta} if meta else {})}


class McItem(ItemBase):
    """Multiple choice: scored by the log-likelihood of each choice, or open-ended (the twin)."""

    type: Literal["mc"] = "mc"
    question: Text
    choices: Annotated[list[Text], Field(min_length=2, max_length=MAX_CHOICES)]
    answer: int  # 0-based index into choices
    # the answer's opening words, after which the choices are scored ("The answer is"; lm-eval's gen_prefix): for
    # models fine-tuned to answer in sentences. The open-ended twin is still asked without them.
    answer_prefix: Annotated[Text, AfterValidator(str.rstrip)] | None = None

    @field_validator("choices")
    @classmethod
    def _distinct(cls, choices: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        for i, c in enumerate(choices):
            folded = c.strip().casefold()
            if folded in seen:
                raise invalid(
                    f"choice {i} {c!r} repeats choice {seen[folded]}", "choices are compared ignoring case and outer spaces"
                )
            seen[folded] = i
        return choices

    @field_validator("answer")
    @classmethod
    def _in_range(cls, answer: int, info: ValidationInfo) -> int:
        choices = info.data.get("choices")
        if choices is not None and not 0 <= answer < len(choices):
            raise invalid(
                f"{answer} is out of range for {len(choices)} choices",
                f"answer is a 0-based index, 0 to {len(choices) - 1}",
            )
        return answer

    @property
    def correct_choice(self) -> str:
        return self.choices[self.answer]

    def is_correct_open(self, reply: str) -> bool:
        """Open-ended twin: the reply names the right choice and no wrong one."""
        return matches_choice(reply, self.choices, self.answer)


class GenItem(ItemBase):
    """Free generation compared against accepted answers."""

    type: Literal["gen"] = "gen"
    prompt: Text
    match: MatchMode = "contains"  # declared before `answers` so `answers` can see it
    answers: Annotated[list[Text], Field(min_length=1)]

    @field_validator("answers")
    @classmethod
    def _answers(cls, answers: list[str], info: ValidationInfo) -> list[str]:
        for i, a in enumerate(answers):
            if info.data.get("match") == "number" and parse_number(a) is None:
                raise invalid(f"answer {i} {a!r} is not a number", "match is 'number'; write answers like 12 or 1,200.5")
        return answers

    def is_correct(self, reply: str) -> bool:
        return matches(reply, self.answers, self.match)


class CheckItem(ItemBase):
    """Free generation that must pass every declarative check."""

    type: Literal["check"] = "check"
    prompt: Text
    checks: Annotated[list[Check], Field(min_length=1)]
    severity: Severity = "medium"

    def failed_checks(self, output: str) -> list[CheckBase]:
        return [c for c in self.checks if not c.passes(output)]

    def passes(self, output: str) -> bool:
        return not self.failed_checks(output)


class TextItem(ItemBase):
    """Plain text, scored by perplexity."""

    type: Literal["text"] = "text"
    text: Text


Item = McItem | GenItem | CheckItem | TextItem
ItemType = Literal["mc", "gen", "check", "text"]
ITEM_TYPES: dict[str, type[ItemBase]] = {"mc": McItem, "gen": GenItem, "check": CheckItem, "text": TextItem}
assert list(ITEM_TYPES) == list(get_args(ItemType))


def parse_item(obj: dict[str, Any], where: str | None = None) -> Item:
    """Validate one JSON object as an item; the first problem becomes a one-line ForgetlessError."""
    kinds = list(ITEM_TYPES)
    if "type" not in obj:
        raise ForgetlessError("missing field 'type'", where=where, hint="one of: " + ", ".join(kinds))
    item_type = obj["type"]
    if not isinstance(item_type, str) or item_type not in ITEM_TYPES:
        raise ForgetlessError(
            f"field 'type': unknown item type {_show(item_type)}", where=where, hint=did_you_mean(str(item_type), kinds)
        )
    model = ITEM_TYPES[item_type]
    try:
        return model.model_validate(obj)  # type: ignore[return-value]
    except ValidationError as e:
        errors = e.errors()
        # A misspelt field also makes the real one "missing"; the misspelling is the useful news.
        first = next((err for err in errors if err["type"] == "extra_forbidden"), errors[0])
        message, hint = explain_error(first, obj, model)
        raise ForgetlessError(message, where=where, hint=hint) from None


_TYPE_WORDS = {
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
}


def explain_error(err: ErrorDetails, obj: dict[str, Any], model: type[BaseModel]) -> tuple[str, str | None]:
    """One pydantic error as (message, hint), naming the field as a path like `checks[0].pattern`."""
    path, owner = _field_path(err["loc"], obj, model)
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    field = f"field '{path}'"
    if kind == "missing":
        return f"missing {field}", None
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        return f"unknown {field}", did_you_mean(name, list(owner.model_fields))
    if kind == "union_tag_not_found":
        return f"missing field '{path}.kind'", "available: " + ", ".join(CHECKS.names())
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag"))
        return f"field '{path}.kind': unknown check kind {tag!r}", did_you_mean(tag, CHECKS.names())
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"{field}: {_show(given)} is not allowed", did_you_mean(str(given), allowed)
    if kind in _TYPE_WORDS:
        return f"{field}: {_TYPE_WORDS[kind]}, got {_show(given)}", None
    if kind == "string_too_short":
        return f"{field}: must not be empty", None
    if kind == "too_short":
        return f"{field}: needs at least {_entries(ctx['min_length'])}, got {ctx['actual_length']}", None
    if kind == "too_long":
        return f"{field}: allows at most {_entries(ctx['max_length'])}, got {ctx['actual_length']}", None
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        limit = next(iter(ctx.values()))
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit  # 0.0 -> 0
        return f"{field}: must be {bound} {limit}, got {_show(given)}", None
    if kind == "finite_number":
        return f"{field}: must be a finite number, got {_show(given)}", None
    if kind == INVALID:
        return f"{field}: {ctx['message']}", ctx.get("hint") or None
    if kind == "value_error":
        return f"{field}: {ctx.get('error', err['msg'])}", None
    msg = err["msg"]
    return f"{field}: {msg[:1].lower()}{msg[1:]}", None


def _field_path(loc: tuple[int | str, ...], obj: Any, model: type[BaseModel]) -> tuple[str, type[BaseModel]]:
    """`('checks', 0, 'regex', 'patern')` -> `checks[0].patern` and the model owning the last part.

    Pydantic puts a discriminated union's tag ('regex') into the location, right after the list
    index; it is dropped here by comparing it with the object's own `kind`.
    """
    parts: list[str] = []
    data, owner = obj, model
    after_index = False
    for part in loc:
        if isinstance(part, int):
            if parts:
                parts[-1] += f"[{part}]"
            else:
                parts.append(f"[{part}]")
            data = data[part] if isinstance(data, list) and 0 <= part < len(data) else None
            after_index = True
            continue
        if after_index and isinstance(data, dict) and data.get("kind") == part and part in CHECKS:
            owner = CHECKS.get(part)
        else:
            parts.append(part if part.isprintable() else json.dumps(part)[1:-1])  # keep errors one line
            data = data.get(part) if isinstance(data, dict) else None
        after_index = False
    return ".".join(parts), owner


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of a bad value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
