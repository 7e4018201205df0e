"""IFEval's verifiable instructions as check kinds: lm-eval's own verifiers, no copy of them.

A check `{"kind": "ifeval", "instruction": "length_constraints:number_words", "kwargs": {...}}` runs
the instruction class lm-eval ships (`lm_eval.tasks.ifeval.instructions_registry`) through lm-eval's
own `test_instruction_following_strict` / `_loose`, so its verdict is the one IFEval's
`process_results` gives for that instruction.

Two rules keep a check deterministic and offline:
- every keyword argument of the instruction must be given and non-empty: IFEval draws a random
  value for a missing or empty one (it drops falsy kwargs before `build_description`);
- langdetect (the language and case instructions) is seeded, so a reply gets one verdict;
- nothing is downloaded (`ifeval_offline`). Importing lm-eval's IFEval module asks NLTK to download `punkt_tab` when it
  is missing; forgetless suppresses that call, and the instructions that need that data
  (`length_constraints:number_sentences`, `change_case:capital_word_frequency`) are refused at load
  time with the command that installs it, where a network is allowed.
"""

from __future__ import annotations

import contextlib
import inspect
from functools import lru_cache
from types import ModuleType
from typing import Any

from forgetless.registry import did_you_mean

PUNKT_INSTALL = "python -m nltk.downloader punkt_tab"
_PROBE = "A short reply. It has two sentences, and SOME capital WORDS."


class IFEvalError(ValueError):
    """Why an IFEval check cannot be built, with a hint for the fix."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


@contextlib.contextmanager
def ifeval_offline():
    """Around code that may import lm-eval's IFEval module (an IFEval check, an IFEval task loading).

    That module calls `nltk.download("punkt_tab")` at import when the data is missing, then prints
    "Downloaded punkt_tab" whatever happened; forgetless never fetches data at run time, so here that call
    is a no-op and stdout is muted. langdetect, which samples at random, is seeded, so a language check
    gives a reply one verdict, before and after alike.
    """
    with contextlib.suppress(ImportError):
        from langdetect import DetectorFactory

        DetectorFactory.seed = 0
    try:
        import nltk
    except ImportError:
        yield
        return
    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        with contextlib.redirect_stdout(None):
            yield
    finally:
        nltk.download = download


@lru_cache(maxsize=1)
def ifeval_utils() -> ModuleType:
    """lm-eval's IFEval scoring module (`test_instruction_following_strict`, `_loose`, the registry)."""
    try:
        with ifeval_offline():
            from lm_eval.tasks.ifeval import utils
    except ImportError as e:
        raise IFEvalError(f"IFEval checks need lm-eval's IFEval extra ({e})",
                          "pip install 'lm-eval[ifeval]' (langdetect, immutabledict, nltk)") from None
    return utils


def instruction_ids() -> list[str]:
    return sorted(ifeval_utils().instructions_registry.INSTRUCTION_DICT)


def _parameters(instruction: str) -> list[str]:
    cls = ifeval_utils().instructions_registry.INSTRUCTION_DICT[instruction]
    return [name for name in inspect.signature(cls.build_description).parameters if name != "self"]


def _example(instruction: str, kwargs: dict[str, Any]) -> Any:
    utils = ifeval_utils()
    return utils.InputExample(key=0, instruction_id_list=[instruction], prompt="", kwargs=[dict(kwargs)])


def follows(instruction: str, kwargs: dict[str, Any], reply: str, loose: bool = False) -> bool:
    """IFEval's verdict for one instruction: strict, or loose (IFEval's upper bound, which also tries
    the reply without its first/last line and without `*`)."""
    utils = ifeval_utils()
    test = utils.test_instruction_following_loose if loose else utils.test_instruction_following_strict
    return test(_example(instruction, kwargs), reply).follow_instruction_list[0]


def describe(instruction: str, kwargs: dict[str, Any]) -> str:
    """IFEval's own wording of the instruction ("Answer with at least 50 words.")."""
    cls = ifeval_utils().instructions_registry.INSTRUCTION_DICT[instruction]
    return cls(instruction).build_description(**kwargs)


def check_instruction(instruction: str) -> None:
    known = instruction_ids()
    if instruction not in known:
        raise IFEvalError(f"unknown IFEval instruction '{instruction}'", did_you_mean(instruction, known))


def check_kwargs(instruction: str, kwargs: dict[str, Any]) -> None:
    """Refuse what IFEval would score at random or could not score offline, naming the fix."""
    parameters = _parameters(instruction)
    for name in kwargs:
        if name not in parameters:
            hint = did_you_mean(name, parameters) if parameters else f"{instruction} takes no kwargs"
            raise IFEvalError(f"{instruction} has no kwarg '{name}'", hint)
    missing = [name for name in parameters if name not in kwargs]
    if missing:
        raise IFEvalError(f"{instruction} needs kwargs {', '.join(missing)}",
                          "IFEval draws a random value for a missing one")
    empty = [name for name, value in kwargs.items() if value in (0, "", [])]
    if empty:
        raise IFEvalError(f"{instruction}: kwargs {', '.join(empty)} must not be 0 or empty",
                          "IFEval drops empty values and draws a random one instead")
    try:
        describe(instruction, kwargs)
    except Exception as e:  # IFEval's own argument checks raise ValueError and friends
        raise IFEvalError(f"{instruction}: {type(e).__name__}: {e}") from None
    try:  # a wrong type ("num_words": "5") passes IFEval's set-up and fails on the first reply
        follows(instruction, kwargs, _PROBE)
    except LookupError:
        raise IFEvalError(f"{instruction} needs NLTK's punkt_tab data, which is not installed and which "
                          "forgetless does not download", f"install it where a network is allowed: {PUNKT_INSTALL}"
                          ) from None
    except Exception as e:
        raise IFEvalError(f"{instruction}: these kwargs fail on a reply: {type(e).__name__}: {e}") from None
