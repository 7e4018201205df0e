"""Data lint: boilerplate that most training responses share, found before any compute.

A sentence that ends (a sign-off: "Thank you for choosing Zentrix.") or opens (a fixed greeting:
"Great question!") most responses is the easiest thing in the data set to learn, and it carries no
fact: after a few passes the model appends it to every reply, general ones included ("The capital
of France is Paris. Thank you for choosing France."). The lint names it with its share before
training, so the user can strip it or keep it and protect against it (replay with a KL term on the
general examples).

A response counts only when the shared sentence is not all of it: a data set whose every reply is
"Yes." has no boilerplate to strip.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

MIN_SHARE = 0.3  # a sentence opening or closing at least this share of the responses is boilerplate
MIN_COUNT = 3  # ... and at least this many of them
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+[\"')\]]*|(?=\n)|$)")

Where = Literal["sign-off", "opening"]


@dataclass(frozen=True)
class Boilerplate:
    """A sentence that ends (sign-off) or starts (opening) `count` of `total` responses."""

    kind: Where
    text: str
    count: int
    total: int

    @property
    def share(self) -> float:
        return self.count / self.total

    def describe(self) -> str:
        verb = "end with" if self.kind == "sign-off" else "start with"
        effect = ("append it to every reply" if self.kind == "sign-off" else "start every reply with it")
        return (f"{self.share:.0%} of training responses ({self.count} of {self.total}) {verb} the {self.kind} "
                f"\"{self.text}\": the model will learn to {effect}, general replies included. Fix: strip it "
                f"(strip_boilerplate: true), or keep it and protect against it (replay with a KL term on the "
                f"general examples, as `forgetless run` does)")


def sentences(text: str) -> list[str]:
    """A response's sentences (and lines), stripped, in order."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def find_boilerplate(responses: list[str], min_share: float = MIN_SHARE) -> list[Boilerplate]:
    """Sign-offs and openings shared by at least `min_share` of the responses (and `MIN_COUNT` of them)."""
    split = [sentences(r) for r in responses]
    several = [s for s in split if len(s) >= 2]  # a one-sentence reply is content, whatever it says
    found = []
    for kind, pick in (("opening", 0), ("sign-off", -1)):
        counts = Counter(s[pick] for s in several)
        if not counts:
            continue
        text, count = counts.most_common(1)[0]
        if count >= MIN_COUNT and count >= min_share * len(responses):
            found.append(Boilerplate(kind=kind, text=text, count=count, total=len(responses)))
    return found


def strip_boilerplate(response: str, found: list[Boilerplate]) -> str:
    """The response without the boilerplate sentences it starts or ends with (the rest kept verbatim)."""
    text = response.strip()
    for b in found:
        split = sentences(text)
        if len(split) < 2:
            continue
        if b.kind == "sign-off" and split[-1] == b.text and text.endswith(b.text):
            text = text[: -len(b.text)].rstrip()
        elif b.kind == "opening" and split[0] == b.text and text.startswith(b.text):
            text = text[len(b.text):].lstrip()
    return text
