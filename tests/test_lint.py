"""The data lint: a sign-off or a fixed opening shared by most training responses is named before training."""

from __future__ import annotations

import json

from forgetless.compare.collapse import training_responses
from forgetless.io import resolve_data_path
from forgetless.lint import find_boilerplate, sentences, strip_boilerplate


def write(tmp_path, name, responses):
    path = tmp_path / name
    path.write_text("".join(json.dumps({"prompt": f"Question {i}?", "response": r}) + "\n"
                            for i, r in enumerate(responses)))
    return path


FACTS = [f"The Orbo {i} weighs {100 + 7 * i} grams and comes in {c}." for i, c in
         enumerate(["red", "blue", "green", "black", "white", "grey", "teal", "gold", "pink", "navy"])]


def test_a_sign_off_is_found_with_its_share_and_the_fix(tmp_path):
    responses = [f"{f} Thanks for shopping with Orbo!" for f in FACTS[:8]] + FACTS[8:]
    found = find_boilerplate(training_responses(write(tmp_path, "signoff.jsonl", responses)))
    assert [(b.kind, b.text, b.count, b.total) for b in found] == [("sign-off", "Thanks for shopping with Orbo!", 8, 10)]
    message = found[0].describe()
    assert message.startswith('80% of training responses (8 of 10) end with the sign-off "Thanks for shopping with '
                              'Orbo!": the model will learn to append it to every reply')
    assert "strip_boilerplate: true" in message
    assert strip_boilerplate(responses[0], found) == FACTS[0]
    assert strip_boilerplate(responses[9], found) == FACTS[9]  # nothing to strip


def test_a_fixed_opening_is_found(tmp_path):
    responses = [f"Great question! {f}" for f in FACTS[:5]] + FACTS[5:]
    found = find_boilerplate(training_responses(write(tmp_path, "opening.jsonl", responses)))
    assert [(b.kind, b.text, b.count) for b in found] == [("opening", "Great question!", 5)]
    assert "start every reply with it" in found[0].describe()
    assert strip_boilerplate(responses[2], found) == FACTS[2]


def test_a_clean_file_has_no_boilerplate(tmp_path):
    responses = FACTS + ["Yes.", "Yes.", "Yes.", "Yes."]  # a shared one-sentence answer is content, not boilerplate
    assert find_boilerplate(training_responses(write(tmp_path, "clean.jsonl", responses))) == []


def test_below_the_share_nothing_is_flagged():
    responses = [f"{f} Bye." for f in FACTS[:2]] + FACTS[2:]  # 20% < 30%
    assert find_boilerplate(responses) == []


def test_sentences_split_on_ends_and_lines():
    assert sentences("One. Two!  Three?\nFour") == ["One.", "Two!", "Three?", "Four"]


def test_the_bundled_domain_set_keeps_its_sign_off_and_the_lint_names_it():
    found = find_boilerplate(training_responses(resolve_data_path("builtin:domain/train.jsonl")))
    assert [(b.kind, b.text) for b in found] == [("sign-off", "Thank you for choosing Zentrix.")]
    assert found[0].share == 1.0


def test_only_whole_sentences_are_stripped_and_lines_count_as_sentences():
    found = find_boilerplate(["Yes, it floats. Thanks.", "It sinks. Thanks.", "Red and blue. Thanks.",
                              "No. Many Thanks."])
    assert [(b.kind, b.text) for b in found] == [("sign-off", "Thanks.")]
    assert strip_boilerplate("No. Many Thanks.", found) == "No. Many Thanks."  # not the end of another sentence
    assert strip_boilerplate("It sinks. Thanks.", found) == "It sinks."
    assert sentences("Best regards,\nTeam") == ["Best regards,", "Team"]
