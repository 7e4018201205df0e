"""Answer matching: is a model's free-text reply one of the accepted answers?

Used for `gen` items and for the open-ended twin of `mc` items. Four modes:

- `exact`: the reply, stripped of surrounding whitespace, equals an answer character for character.
- `normalized`: `normalize(reply) == normalize(answer)`.
- `contains`: the normalized answer occurs in the normalized reply as whole words
  ("paris" is found in "The capital is Paris." but "art" is not found in "a planet apart").
- `number`: the last number in the reply (models restate the question first) equals an answer numerically ("1,200" == "1200.0").

All functions here are pure and never raise on any input string.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Literal, get_args

from forgetless.errors import ForgetlessError
from forgetless.registry import did_you_mean

MatchMode = Literal["exact", "normalized", "contains", "number"]
MATCH_MODES: tuple[str, ...] = get_args(MatchMode)

ARTICLES = frozenset({"a", "an", "the"})

_ZERO_TO_TWENTY = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
NUMBER_WORDS = {w: i for i, w in enumerate((_ZERO_TO_TWENTY + " sixteen seventeen eighteen nineteen twenty").split())}

# A number: optional minus (only when not glued to a word, so "5-3" is 5 and 3), then either
# comma-grouped thousands ("1,200,000") or plain digits, then an optional decimal part.
_NUMBER_RE = re.compile(r"(?<![\w.])(?:(?<![\w-])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b")
_MINUSES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2012": "-"})  # − – ‒ typed as minus
_APOSTROPHES = "'\u2019\u02bc"  # ' ’ ʼ


def normalize(text: str) -> str:
    """Casefold, drop punctuation (keeping it inside numbers), collapse spaces, drop leading articles.

    "The  Eiffel-Tower!" -> "eiffel tower"; "It costs $1,200.50" -> "it costs 1200.50";
    "don't" -> "dont"; "-5" stays "-5". Idempotent: normalize(normalize(x)) == normalize(x).
    """
    s = text.translate(_MINUSES).casefold()
    out: list[str] = []
    n = len(s)
    for i, c in enumerate(s):
        prev = s[i - 1] if i > 0 else ""
        nxt = s[i + 1] if i + 1 < n else ""
        if c.isalnum() or unicodedata.category(c)[0] == "M":
            out.append(c)
        elif c.isspace():
            out.append(" ")
        elif c in _APOSTROPHES and prev.isalpha() and nxt.isalpha():
            continue  # don't -> dont
        elif c == "," and _is_thousands_comma(s, i):
            continue  # 1,200 -> 1200
        elif c in ".," and _is_digit(prev) and _is_digit(nxt):
            out.append(c)  # 3.14 keeps its point
        elif c == "-" and _is_digit(nxt) and not _is_word_char(prev):
            out.append(c)  # a leading minus sign
        else:
            out.append(" ")
    words = "".join(out).split()
    while len(words) > 1 and words[0] in ARTICLES:
        words.pop(0)
    return " ".join(words)


def _is_digit(c: str) -> bool:
    return bool(c) and re.match(r"\d", c) is not None


def _is_word_char(c: str) -> bool:
    return bool(c) and re.match(r"\w", c) is not None


def _is_thousands_comma(s: str, i: int) -> bool:
    """A comma between a digit and exactly three digits (then a non-digit): 1,200 but not 1,2345."""
    return _is_digit(s[i - 1] if i > 0 else "") and re.match(r"\d{3}(?!\d)", s[i + 1 : i + 5]) is not None


def find_numbers(text: str) -> list[float]:
    """Every number in `text`, in order. Digits win: number words ("twelve") count only if
    there are no digits at all, so "one of the 3 answers" gives [3.0], not [1.0, 3.0]."""
    text = text.translate(_MINUSES)
    found = [_to_float(m.group()) for m in _NUMBER_RE.finditer(text)]
    found = [x for x in found if x is not None]
    if found:
        return found
    return [float(NUMBER_WORDS[m.group(1)]) for m in _NUMBER_WORD_RE.finditer(text.casefold())]


def parse_number(text: str) -> float | None:
    """The value of a string that is just a number ("1,200", "-3.5", "twelve"), else None."""
    s = text.strip().translate(_MINUSES).casefold()
    if s in NUMBER_WORDS:
        return float(NUMBER_WORDS[s])
    m = _NUMBER_RE.fullmatch(s)
    return _to_float(m.group()) if m else None


def _to_float(s: str) -> float | None:
    try:
        x = float(s.replace(",", ""))
    except ValueError:  # unicode digits float() does not take
        return None
    return x if math.isfinite(x) else None


def numbers_equal(a: float, b: float, tolerance: float = 0.0) -> bool:
    """Equal within `tolerance`, ignoring float rounding noise (0.1 + 0.2 == 0.3)."""
    return abs(a - b) <= tolerance or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def contains_answer(reply: str, answer: str) -> bool:
    """Whole-word containment on normalized text: "paris" in "The capital is Paris." but not
    "art" in "Mars is a planet apart", nor "5" in "3.5" or "-5"."""
    needle = normalize(answer)
    if not needle:
        return False
    return re.search(rf"(?<![\w.,-]){re.escape(needle)}(?![\w.,])", normalize(reply)) is not None


def matches(reply: str, answers: list[str], mode: MatchMode = "contains") -> bool:
    """Does `reply` match any of the accepted `answers` under `mode`? (See the module docstring.)"""
    if mode == "exact":
        return reply.strip() in {a.strip() for a in answers}
    if mode == "normalized":
        got = normalize(reply)
        return any(got == normalize(a) for a in answers)
    if mode == "contains":
        return any(contains_answer(reply, a) for a in answers)
    if mode == "number":
        found = find_numbers(reply)
        if not found:
            return False
        targets = [parse_number(a) for a in answers]
        return any(t is not None and numbers_equal(found[-1], t) for t in targets)
    raise ForgetlessError(f"unknown match mode '{mode}'", hint=did_you_mean(str(mode), list(MATCH_MODES)))


def matches_choice(reply: str, choices: list[str], answer: int) -> bool:
    """The open-ended twin of a multiple-choice item: the reply names the right choice and no
    wrong one (a wrong choice that is part of the right one, "York" in "New York", is ignored)."""
    right = choices[answer]
    wrong = [c for i, c in enumerate(choices) if i != answer and not contains_answer(right, c)]
    return contains_answer(reply, choices[answer]) and not any(contains_answer(reply, c) for c in wrong)
