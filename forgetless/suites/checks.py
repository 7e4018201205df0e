"""Declarative checks for `check` items: small rules a reply must pass ("contains 'Paris'").

Each kind is a tiny pydantic model registered by name in `CHECKS`; the JSON object's `"kind"`
picks the model. Every check has a pure `passes(output) -> bool` and a short `describe()` for
reports. No check runs user code: a regex is the most a suite file can express.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib.resources import files
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from forgetless.registry import Registry
from forgetless.suites import ifeval
from forgetless.suites.matching import find_numbers, normalize, numbers_equal

MAX_PATTERN_CHARS = 500  # Python's re has no timeout; short patterns limit catastrophic backtracking

NonEmpty = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=1)]

INVALID = "forgetless_invalid"


def invalid(message: str, hint: str = "") -> PydanticCustomError:
    """A validation error carrying a message and a fix; raise it inside a field validator."""
    return PydanticCustomError(INVALID, "{message}", {"message": message, "hint": hint})


CHECKS: Registry[type[CheckBase]] = Registry("check kind")


class CheckBase(BaseModel):
    """One rule about a reply. Subclasses add a `kind` literal and their parameters."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def passes(self, output: str) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _case(ignore_case: bool) -> str:
    return " (any case)" if ignore_case else ""


def _fold(text: str, ignore_case: bool) -> str:
    return text.casefold() if ignore_case else text


@CHECKS.register("regex")
class Regex(CheckBase):
    kind: Literal["regex"] = "regex"
    pattern: NonEmpty
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise invalid(f"pattern is {len(pattern)} characters, more than the {MAX_PATTERN_CHARS} limit")
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError, ValueError) as e:
            raise invalid(f"invalid regular expression: {e}", "escape a literal ( [ { * + ? . with \\") from None
        return pattern

    def passes(self, output: str) -> bool:
        return re.search(self.pattern, output, re.IGNORECASE if self.ignore_case else 0) is not None

    def describe(self) -> str:
        return f"matches /{self.pattern}/{'i' if self.ignore_case else ''}"


@CHECKS.register("contains")
class Contains(CheckBase):
    kind: Literal["contains"] = "contains"
    value: NonEmpty
    ignore_case: bool = True

    def passes(self, output: str) -> bool:
        return _fold(self.value, self.ignore_case) in _fold(output, self.ignore_case)

    def describe(self) -> str:
        return f"contains {self.value!r}{_case(self.ignore_case)}"


@CHECKS.register("not_contains")
class NotContains(CheckBase):
    kind: Literal["not_contains"] = "not_contains"
    value: NonEmpty
    ignore_case: bool = True

    def passes(self, output: str) -> bool:
        return _fold(self.value, self.ignore_case) not in _fold(output, self.ignore_case)

    def describe(self) -> str:
        return f"does not contain {self.value!r}{_case(self.ignore_case)}"


@CHECKS.register("min_words")
class MinWords(CheckBase):
    kind: Literal["min_words"] = "min_words"
    n: Count

    def passes(self, output: str) -> bool:
        return len(output.split()) >= self.n

    def describe(self) -> str:
        return f"at least {self.n} words"


@CHECKS.register("max_words")
class MaxWords(CheckBase):
    kind: Literal["max_words"] = "max_words"
    n: Count

    def passes(self, output: str) -> bool:
        return len(output.split()) <= self.n

    def describe(self) -> str:
        return f"at most {self.n} words"


@CHECKS.register("starts_with")
class StartsWith(CheckBase):
    kind: Literal["starts_with"] = "starts_with"
    value: NonEmpty
    ignore_case: bool = True

    def passes(self, output: str) -> bool:
        return _fold(output.strip(), self.ignore_case).startswith(_fold(self.value.strip(), self.ignore_case))

    def describe(self) -> str:
        return f"starts with {self.value!r}{_case(self.ignore_case)}"


@CHECKS.register("ends_with")
class EndsWith(CheckBase):
    kind: Literal["ends_with"] = "ends_with"
    value: NonEmpty
    ignore_case: bool = True

    def passes(self, output: str) -> bool:
        return _fold(output.strip(), self.ignore_case).endswith(_fold(self.value.strip(), self.ignore_case))

    def describe(self) -> str:
        return f"ends with {self.value!r}{_case(self.ignore_case)}"


_FENCE_RE = re.compile(r"```[ \t]*(?:json)?[ \t]*\r?\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_NO_JSON = object()


def parse_json_reply(output: str) -> Any:
    """The JSON value in a reply: the whole reply, else the first fenced ```json block that
    parses. Returns `_NO_JSON` when nothing parses."""
    for candidate in [output, *(m.group(1) for m in _FENCE_RE.finditer(output))]:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    return _NO_JSON


@CHECKS.register("json_parses")
class JsonParses(CheckBase):
    kind: Literal["json_parses"] = "json_parses"

    def passes(self, output: str) -> bool:
        return parse_json_reply(output) is not _NO_JSON

    def describe(self) -> str:
        return "is valid JSON (or has a ```json block)"


@CHECKS.register("json_has_keys")
class JsonHasKeys(CheckBase):
    kind: Literal["json_has_keys"] = "json_has_keys"
    keys: Annotated[list[NonEmpty], Field(min_length=1)]

    def passes(self, output: str) -> bool:
        value = parse_json_reply(output)
        return isinstance(value, dict) and all(k in value for k in self.keys)

    def describe(self) -> str:
        return "is a JSON object with keys " + ", ".join(repr(k) for k in self.keys)


_LIST_ITEM_RE = re.compile(r"^[ \t]*(?:[-*\u2022]|\d+[.)])[ \t]+\S", re.MULTILINE)


@CHECKS.register("list_items_at_least")
class ListItemsAtLeast(CheckBase):
    kind: Literal["list_items_at_least"] = "list_items_at_least"
    n: Count

    def passes(self, output: str) -> bool:
        return len(_LIST_ITEM_RE.findall(output)) >= self.n

    def describe(self) -> str:
        return f"a list of at least {self.n} items"


@CHECKS.register("number_equals")
class NumberEquals(CheckBase):
    kind: Literal["number_equals"] = "number_equals"
    value: Annotated[float, Field(allow_inf_nan=False)]
    tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0

    def passes(self, output: str) -> bool:
        found = find_numbers(output)
        return bool(found) and numbers_equal(found[-1], self.value, self.tolerance)

    def describe(self) -> str:
        value = f"{self.value:g}"
        return f"last number is {value}" + (f" \u00b1 {self.tolerance:g}" if self.tolerance else "")


@CHECKS.register("one_of")
class OneOf(CheckBase):
    kind: Literal["one_of"] = "one_of"
    values: Annotated[list[NonEmpty], Field(min_length=1)]

    def passes(self, output: str) -> bool:
        reply = normalize(output)
        first = reply.split(" ", 1)[0]
        return any(normalize(v) in (reply, first) for v in self.values)

    def describe(self) -> str:
        return "answers one of " + ", ".join(repr(v) for v in self.values)


_SENTENCE_END_RE = re.compile(r"[.!?]+(?=\s|$)")


def count_sentences(text: str) -> int:
    """Sentences end at . ! or ? followed by a space or the end ("3.14" is not an end)."""
    return sum(1 for part in _SENTENCE_END_RE.split(text) if part.strip())


@CHECKS.register("max_sentences")
class MaxSentences(CheckBase):
    kind: Literal["max_sentences"] = "max_sentences"
    n: Count

    def passes(self, output: str) -> bool:
        return count_sentences(output) <= self.n

    def describe(self) -> str:
        return f"at most {self.n} sentence{'s' if self.n != 1 else ''}"


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """The built-in list of common English words (`common_words.txt`)."""
    text = files("forgetless.suites").joinpath("common_words.txt").read_text(encoding="utf-8")
    return frozenset(w for w in (line.strip() for line in text.splitlines()) if w and not w.startswith("#"))


_TOKEN_RE = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")
_SUFFIXES = ("'s", "s", "es", "ed", "d", "ing", "ly", "er", "est")


def _is_common(token: str) -> bool:
    words = common_words()
    return token in words or any(token.endswith(s) and token[: -len(s)] in words for s in _SUFFIXES)


def english_words_ratio(text: str) -> float:
    """Share of alphabetic tokens that are common English words (0.0 for a reply with none)."""
    tokens = [t.replace("\u2019", "'") for t in _TOKEN_RE.findall(text.casefold())]
    return sum(map(_is_common, tokens)) / len(tokens) if tokens else 0.0


@CHECKS.register("english_words_ratio")
class EnglishWordsRatio(CheckBase):
    """A coherence heuristic: a collapsed model emitting gibberish fails it."""

    kind: Literal["english_words_ratio"] = "english_words_ratio"
    min: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

    def passes(self, output: str) -> bool:
        return english_words_ratio(output) >= self.min

    def describe(self) -> str:
        return f"at least {self.min:.0%} common English words"


IFEvalValue = Union[int, NonEmpty, Annotated[list[NonEmpty], Field(min_length=1)]]  # noqa: UP007


@CHECKS.register("ifeval")
class IFEval(CheckBase):
    """One of IFEval's verifiable instructions, judged by lm-eval's own verifier (`forgetless.suites.ifeval`):
    strict by default, or IFEval's loose variant."""

    kind: Literal["ifeval"] = "ifeval"
    instruction: NonEmpty
    kwargs: dict[NonEmpty, IFEvalValue] = Field(default_factory=dict)
    loose: bool = False

    @field_validator("instruction")
    @classmethod
    def _known(cls, instruction: str) -> str:
        _ifeval_call(ifeval.check_instruction, instruction)
        return instruction

    @field_validator("kwargs")
    @classmethod
    def _complete(cls, kwargs: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "instruction" in info.data:  # an unknown instruction was already refused
            _ifeval_call(ifeval.check_kwargs, info.data["instruction"], kwargs)
        return kwargs

    def passes(self, output: str) -> bool:
        return ifeval.follows(self.instruction, self.kwargs, output, loose=self.loose)

    def describe(self) -> str:
        loose = " (loose)" if self.loose else ""
        return f"IFEval {self.instruction}{loose}: {ifeval.describe(self.instruction, self.kwargs)}"


def _ifeval_call(check: Any, *args: Any) -> None:
    try:
        check(*args)
    except ifeval.IFEvalError as e:
        raise invalid(str(e), e.hint) from None


# The discriminated union over every registered kind, used by `CheckItem.checks`.
Check = Annotated[Union[tuple(CHECKS.get(name) for name in CHECKS.names())], Field(discriminator="kind")]  # noqa: UP007
