"""Template collapse: general replies that copy the phrasing of the training responses.

A model fine-tuned hard on a narrow set of replies ("The Zentrix Aura costs $129. Thank you for
choosing Zentrix.") often answers *every* question in that mould while its multiple-choice
knowledge is untouched. A reply counts as copying when, after normalization (lower case, words
only),

- it shares a word n-gram of length `NGRAM` (4) with some training response, with at least one
  word its own prompt does not contain (echoing the question is not copying), or
- it starts with one of the training set's common 3-word openings (each used by at least
  `OPENING_MIN_SHARE` of the responses; at most `MAX_OPENINGS` of them).

The share of copying replies is measured on the same items before and after, so the before share
is the false-positive baseline and the change gets an exact McNemar test.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from forgetless.compare.pairing import Pair
from forgetless.compare.schema import (
    CollapseExample,
    OpeningConcentration,
    TemplateCollapse,
)
from forgetless.errors import ForgetlessError
from forgetless.io import read_jsonl
from forgetless.stats import mcnemar_exact, paired_counts

NGRAM = 4
OPENING_WORDS = 3
OPENING_MIN_SHARE = 0.02
MAX_OPENINGS = 10
COLLAPSE_SHARE = 0.2  # at least this share of replies copy after ...
COLLAPSE_RISE = 0.1  # ... at least this much more than before, and significantly so
MAX_EXAMPLES = 5
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def opening(tokens: list[str]) -> str | None:
    return " ".join(tokens[:OPENING_WORDS]) if len(tokens) >= OPENING_WORDS else None


def training_responses(path: str | Path) -> list[str]:
    """The texts a model learned to write from a training JSONL (messages, prompt/response or text)."""
    out = []
    for lineno, obj in read_jsonl(path):
        if isinstance(obj.get("messages"), list):
            out += [m["content"] for m in obj["messages"]
                    if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), str)]
        elif isinstance(obj.get("response"), str):
            out.append(obj["response"])
        elif isinstance(obj.get("text"), str):
            out.append(obj["text"])
        else:
            raise ForgetlessError("record has no 'messages', 'response' or 'text'", where=f"{path}:{lineno}")
    if not out:
        raise ForgetlessError("no training responses found", where=path)
    return out


class TemplateMatcher:
    """Decides whether a reply copies the training responses' phrasing."""

    def __init__(self, responses: list[str]):
        tokenized = [words(r) for r in responses]
        self.ngrams: set[tuple[str, ...]] = set().union(*(ngrams(t) for t in tokenized))
        counts = Counter(o for t in tokenized if (o := opening(t)))
        floor = max(2, OPENING_MIN_SHARE * len(responses))
        self.openings = [o for o, c in counts.most_common(MAX_OPENINGS) if c >= floor]

    def copied_ngram(self, reply: str, prompt: str) -> str | None:
        """A shared n-gram with at least one word the prompt lacks (echoing the question is not copying)."""
        asked, tokens = set(words(prompt)), words(reply)
        for i in range(len(tokens) - NGRAM + 1):  # the first copied phrase, in reply order
            gram = tuple(tokens[i:i + NGRAM])
            if gram in self.ngrams and not asked.issuperset(gram):
                return " ".join(gram)
        return None

    def copied_opening(self, reply: str) -> str | None:
        o = opening(words(reply))
        return o if o in self.openings else None


def template_collapse(pairs: list[Pair], source: str | Path, *, alpha: float) -> TemplateCollapse | None:
    """Copying shares before and after on the general replies of `pairs` (None if there are none)."""
    responses = training_responses(source)
    matcher = TemplateMatcher(responses)
    replied = [p for p in pairs if p.before.reply is not None and p.after.reply is not None]
    if not replied:
        return None
    hits = {"ngram": ([], []), "opening": ([], [])}  # kind -> (before flags, after flags)
    matched_after = []
    for p in replied:
        for side, item in enumerate((p.before, p.after)):
            hits["ngram"][side].append(matcher.copied_ngram(item.reply, item.prompt))
            hits["opening"][side].append(matcher.copied_opening(item.reply))
        matched_after.append(hits["opening"][1][-1] or hits["ngram"][1][-1])
    flags = {k: (np.array([x is not None for x in b]), np.array([x is not None for x in a]))
             for k, (b, a) in hits.items()}
    before = flags["ngram"][0] | flags["opening"][0]
    after = flags["ngram"][1] | flags["opening"][1]
    counts = paired_counts(before, after)
    p_value = mcnemar_exact(counts.lost, counts.gained)  # "lost" = copied before, not after
    share_b, share_a = float(before.mean()), float(after.mean())
    collapsed = share_a >= COLLAPSE_SHARE and share_a - share_b >= COLLAPSE_RISE and p_value < alpha
    examples = [CollapseExample(key=p.key, reply_before=p.before.reply, reply_after=p.after.reply, matched=m)
                for p, m, was in zip(replied, matched_after, before) if m is not None and not was][:MAX_EXAMPLES]
    return TemplateCollapse(
        source=str(source), training_responses=len(responses), n=len(replied), ngram=NGRAM,
        openings=matcher.openings, share_before=share_b, share_after=share_a,
        ngram_share_before=float(flags["ngram"][0].mean()), ngram_share_after=float(flags["ngram"][1].mean()),
        opening_share_before=float(flags["opening"][0].mean()),
        opening_share_after=float(flags["opening"][1].mean()),
        p_value=p_value, collapsed=collapsed, examples=examples)


def opening_concentration(pairs: list[Pair]) -> OpeningConcentration | None:
    """The after-replies' most common 3-word opening and its share before and after (needs no training data)."""
    replied = [p for p in pairs if p.before.reply is not None and p.after.reply is not None]
    after = [opening(words(p.after.reply)) for p in replied]
    counts = Counter(o for o in after if o)
    if not counts:
        return None
    top, n_after = counts.most_common(1)[0]
    n_before = sum(opening(words(p.before.reply)) == top for p in replied)
    return OpeningConcentration(n=len(replied), opening=top, share_before=n_before / len(replied),
                                share_after=n_after / len(replied))
