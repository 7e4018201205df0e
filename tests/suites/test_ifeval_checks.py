"""IFEval check kinds: every instruction that runs offline gives, on hand-written replies, the verdict written
here and the verdict lm-eval's IFEval `process_results` gives (strict and loose); bad ids and kwargs are
suite errors naming file:line with a suggestion."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("langdetect")
pytest.importorskip("immutabledict")

from forgetless.errors import ForgetlessError  # noqa: E402
from forgetless.suites import ifeval  # noqa: E402
from forgetless.suites.loader import load_suite, read_suite  # noqa: E402
from forgetless.suites.schema import parse_item  # noqa: E402

# (instruction, kwargs, a reply that follows it, a reply that does not)
CASES = [
    ("change_case:english_capital", {}, "THE SKY IS BLUE TODAY AND THE SUN IS VERY BRIGHT OVER THE HILLS.",
     "The sky is blue today and the sun is very bright over the hills."),
    ("change_case:english_lowercase", {}, "the weather is lovely today and we are going to the park together.",
     "The weather is lovely today and we are going to the park together."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a line about rain."},
     "Write a line about rain. Soft rain taps on the roof.", "Soft rain taps on the roof."),
    ("combination:two_responses", {}, "Paris is the capital.\n******\nThe capital is Paris.", "Paris."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], meet me at [place].",
     "Dear [name], meet me at the park."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "See you soon.\nP.S. Bring snacks.",
     "See you soon."),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Maybe, it depends."),
    ("detectable_format:json_format", {}, '```json\n{"name": "Ada", "age": 36}\n```', "name: Ada, age: 36"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nWhy it matters.\nSection 2\nWhat to do.", "Section 1\nWhy it matters and what to do."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* tea\n* coffee", "* tea"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "Use *salt* and *pepper*.",
     "Use *salt* and pepper."),
    ("detectable_format:title", {}, "<<Rain>>\nIt rains all day.", "Rain\nIt rains all day."),
    ("keywords:existence", {"keywords": ["river", "stone"]}, "The river rolled the stone.", "The river ran."),
    ("keywords:forbidden_words", {"forbidden_words": ["rain"]}, "A sunny day.", "Rain falls on the town."),
    ("keywords:frequency", {"keyword": "tea", "frequency": 2, "relation": "at least"}, "Tea, then more tea.",
     "Tea, then coffee."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"},
     "Zebras zoom past.", "A zebra runs."),
    ("language:response_language", {"language": "fr"},
     "Le chat dort sur la table de la cuisine depuis ce matin.",
     "The cat has been sleeping on the kitchen table since this morning."),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "First we wait.\n\nThen we go home.", "First we wait.\n\nNow we go home."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "One idea.\n***\nAnother idea.", "One idea."),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "One two three four five.",
     "One two three four."),
    ("punctuation:no_comma", {}, "Red and green and blue.", "Red, green and blue."),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?", "Done."),
    ("startend:quotation", {}, '"Hello there."', "Hello there."),
]
# Replies IFEval's loose variant accepts and its strict one does not (a first line, a last line, asterisks).
LOOSE_ONLY = [
    ("startend:quotation", {}, 'Sure, here it is:\n"Hello there."'),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?\nBye"),
    ("punctuation:no_comma", {}, "Sure, here it is:\nRed and green and blue."),
]
NEEDS_PUNKT = {"length_constraints:number_sentences", "change_case:capital_word_frequency"}


def _lm_eval_verdicts(instruction: str, kwargs: dict, reply: str) -> tuple[bool, bool]:
    """IFEval's own per-instruction results for a one-instruction document."""
    doc = {"key": 0, "instruction_id_list": [instruction], "prompt": "", "kwargs": [kwargs]}
    out = ifeval.ifeval_utils().process_results(doc, [reply])
    return out["inst_level_strict_acc"][0], out["inst_level_loose_acc"][0]


def _check(instruction: str, kwargs: dict, loose: bool = False):
    item = {"id": "i", "type": "check", "category": "instruction", "prompt": "p",
            "checks": [{"kind": "ifeval", "instruction": instruction, "kwargs": kwargs, "loose": loose}]}
    return parse_item(item, "suite.jsonl:1").checks[0]


def test_every_offline_instruction_is_covered_here():
    assert {case[0] for case in CASES} | NEEDS_PUNKT == set(ifeval.instruction_ids())


@pytest.mark.parametrize("instruction, kwargs, follows, breaks", CASES, ids=[c[0] for c in CASES])
def test_verdicts_equal_ifevals_process_results(instruction, kwargs, follows, breaks):
    strict, loose = _check(instruction, kwargs), _check(instruction, kwargs, loose=True)
    assert (strict.passes(follows), loose.passes(follows)) == _lm_eval_verdicts(instruction, kwargs, follows) \
        == (True, True)
    assert (strict.passes(breaks), loose.passes(breaks)) == _lm_eval_verdicts(instruction, kwargs, breaks) \
        == (False, False)
    assert strict.describe().startswith(f"IFEval {instruction}: ")


@pytest.mark.parametrize("instruction, kwargs, reply", LOOSE_ONLY, ids=[c[0] for c in LOOSE_ONLY])
def test_the_loose_variant_is_ifevals_loose(instruction, kwargs, reply):
    verdicts = (_check(instruction, kwargs).passes(reply), _check(instruction, kwargs, loose=True).passes(reply))
    assert verdicts == _lm_eval_verdicts(instruction, kwargs, reply) == (False, True)


def test_language_verdicts_are_repeatable():
    """langdetect samples at random; on a short, ambiguous reply it would answer differently between calls."""
    check = _check("language:response_language", {"language": "es"})  # unseeded: "es" or "sq"
    assert len({check.passes("Bonjour hello ciao") for _ in range(20)}) == 1


@pytest.mark.parametrize("check, message", [
    ({"instruction": "length_constraint:number_words", "kwargs": {}},
     "field 'checks[0].instruction': unknown IFEval instruction 'length_constraint:number_words' "
     "(did you mean 'length_constraints:number_words'?"),
    ({"instruction": "length_constraints:number_words", "kwargs": {"num_word": 5, "relation": "at least"}},
     "field 'checks[0].kwargs': length_constraints:number_words has no kwarg 'num_word' (did you mean 'num_words'?"),
    ({"instruction": "length_constraints:number_words", "kwargs": {"num_words": 5}},
     "field 'checks[0].kwargs': length_constraints:number_words needs kwargs relation "
     "(IFEval draws a random value for a missing one)"),
    ({"instruction": "length_constraints:number_words", "kwargs": {"num_words": 0, "relation": "at least"}},
     "field 'checks[0].kwargs': length_constraints:number_words: kwargs num_words must not be 0 or empty"),
    ({"instruction": "length_constraints:number_words", "kwargs": {"num_words": 5, "relation": "at most"}},
     "field 'checks[0].kwargs': length_constraints:number_words: ValueError: The supported relation"),
    ({"instruction": "length_constraints:number_words", "kwargs": {"num_words": "5", "relation": "at least"}},
     "field 'checks[0].kwargs': length_constraints:number_words: TypeError: '<' not supported"),
    ({"instruction": "punctuation:no_comma", "kwargs": {"n": 1}},
     "field 'checks[0].kwargs': punctuation:no_comma has no kwarg 'n' (punctuation:no_comma takes no kwargs)"),
])
def test_bad_checks_are_suite_errors_at_their_line(tmp_path, check, message):
    item = {"type": "check", "category": "c", "prompt": "p"}
    lines = [{**item, "id": "ok", "checks": [{"kind": "contains", "value": "a"}]},
             {**item, "id": "bad", "checks": [{"kind": "ifeval", **check}]}]
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ForgetlessError) as err:
        read_suite(str(path))
    assert str(err.value).startswith(f"{path}:2: {message}")


@pytest.mark.parametrize("instruction, kwargs", [
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"}),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}),
])
def test_instructions_that_need_punkt_are_refused_without_a_download(instruction, kwargs, monkeypatch):
    """NLTK's punkt_tab is not installed here; forgetless names the fix instead of fetching it."""
    nltk = pytest.importorskip("nltk")
    try:
        nltk.data.find("tokenizers/punkt_tab")
        pytest.skip("punkt_tab is installed on this machine")
    except LookupError:
        pass
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("forgetless tried to download NLTK data"))
    with pytest.raises(ForgetlessError, match=f"{instruction} needs NLTK's punkt_tab data.*nltk.downloader punkt_tab"):
        _check(instruction, kwargs)


def test_the_bundled_checklists_keyword_checks_are_ifevals_keyword_existence():
    """The bundled checklist keeps its own `contains` checks, since it must load without lm-eval. Where IFEval
    has the exact equivalent (a case-insensitive plain word or phrase: keywords:existence), both give one verdict."""
    pairs = [(check, item) for item in load_suite("checklist").items for check in item.checks
             if check.kind == "contains" and check.ignore_case]
    assert len(pairs) == 7
    for check, item in pairs:
        twin = _check("keywords:existence", {"keywords": [check.value]})
        value = check.value
        for reply in [value, value.upper(), f"So: {value.title()}!", f"{value[:-1]} {value[-1]}", "", "nothing here",
                      item.prompt]:
            assert check.passes(reply) == twin.passes(reply), (value, reply)
