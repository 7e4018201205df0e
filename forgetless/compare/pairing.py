"""Pair before/after items, and refuse pairs that did not ask the same questions the same way.

A paired comparison is only honest when both results scored the same items (same suite files,
same item ids) rendered into the same prompts. Anything else is refused with a message that names
what differs; differences that change scores but not the questions (generation lengths, dtype) are
returned as warnings for the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgetless.errors import ForgetlessError
from forgetless.eval.results import EvalResult, ItemResult

# Settings that can change a score without changing the question: reported, not refused.
SCORE_SETTINGS = ("open_ended", "max_new_tokens", "check_max_new_tokens", "max_text_tokens", "stop", "dtype")
MAX_LISTED = 5  # keys named in an error message before "and N more"


@dataclass(frozen=True)
class Pair:
    """One probe item as scored before and after."""

    before: ItemResult
    after: ItemResult

    @property
    def key(self) -> str:
        return self.after.key


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f" and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def _check_suites(before: EvalResult, after: EvalResult) -> None:
    b = {s.name: s for s in before.suites}
    a = {s.name: s for s in after.suites}
    if set(b) != set(a):
        raise ForgetlessError(f"the results cover different suites: before has {sorted(b)}, after has {sorted(a)}",
                              hint="evaluate both models with the same --suite options")
    for name in sorted(b):
        if b[name].sha256 != a[name].sha256:
            raise ForgetlessError(f"suite '{name}' changed between the two results (sha256 {b[name].sha256[:12]} "
                                  f"before, {a[name].sha256[:12]} after)",
                                  hint="re-run `forgetless eval` on both models with the same suite file")


def _check_template(before: EvalResult, after: EvalResult) -> None:
    tb, ta = before.settings.get("template"), after.settings.get("template")
    if tb != ta:
        raise ForgetlessError(f"the prompts were rendered with different templates (fingerprint {tb} before, "
                              f"{ta} after)",
                              hint="both models must use the same chat template; give the fine-tuned model "
                                   "the base model's tokenizer")


def _index(result: EvalResult, side: str) -> dict[str, ItemResult]:
    index: dict[str, ItemResult] = {}
    for it in result.items:
        if it.key in index:
            raise ForgetlessError(f"item '{it.key}' appears twice in the {side} results",
                                  hint="results files are written by `forgetless eval`; do not merge them by hand")
        index[it.key] = it
    return index


def pair_items(before: EvalResult, after: EvalResult) -> list[Pair]:
    """The items of both results, paired by `suite/id` in the after-result's order.

    Raises ForgetlessError when the suites, the template, the item sets, an item's type or an
    item's rendered prompt differ.
    """
    _check_suites(before, after)
    _check_template(before, after)
    b, a = _index(before, "before"), _index(after, "after")
    only_b, only_a = sorted(set(b) - set(a)), sorted(set(a) - set(b))
    if only_b or only_a:
        parts = ([f"{len(only_b)} only before ({_listed(only_b)})"] if only_b else []) + \
                ([f"{len(only_a)} only after ({_listed(only_a)})"] if only_a else [])
        raise ForgetlessError(f"the item sets differ: {'; '.join(parts)}",
                              hint="evaluate both models on the same suites without editing the results")
    if not a:
        raise ForgetlessError("the results contain no items", hint="run `forgetless eval` first")
    pairs = []
    for key, after_item in a.items():
        before_item = b[key]
        if before_item.type != after_item.type:
            raise ForgetlessError(f"item '{key}' is a {before_item.type} item before but {after_item.type} after")
        if before_item.prompt != after_item.prompt:
            raise ForgetlessError(f"item '{key}' was asked with a different prompt before and after",
                                  hint="the prompt rendering (chat template or system prompt) changed; evaluate "
                                       "both models with the same tokenizer")
        pairs.append(Pair(before_item, after_item))
    return pairs


def setting_warnings(before: EvalResult, after: EvalResult) -> list[str]:
    """Differences in settings that can change scores; the comparison still runs."""
    out = []
    for key in SCORE_SETTINGS:
        vb, va = before.settings.get(key), after.settings.get(key)
        if vb != va:
            out.append(f"setting '{key}' differs ({vb!r} before, {va!r} after): scores may differ for that reason "
                       "alone")
    return out
