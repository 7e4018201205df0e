"""Terminal, Markdown and JSON renderings carry the numbers and the diagnosis."""

from __future__ import annotations

import io
import json

from rich.console import Console

from forgetless.compare import compare
from forgetless.compare.render import render_text
from forgetless.report import render_markdown


def _report(synth, tmp_path):
    before, after = synth.drift_pair(training={"method": "full", "learning_rate": 3e-4})
    return compare(before, after, training_data=synth.write_training(tmp_path))


def test_text_rendering_shows_tables_verdicts_and_diagnosis(synth, tmp_path):
    console = Console(file=io.StringIO(), width=140, color_system=None)
    console.print(render_text(_report(synth, tmp_path)))
    out = console.file.getvalue()
    for needle in ("FORGETTING", "Behaviour (open answers)", "p Holm", "MDE", "0.725", "0.100", "+0.625",
                   "behavioural drift with knowledge intact", "knows but doesn't say", "template collapse",
                   "Recommendations", "replay: {fraction: 0.25, source: self}"):
        assert needle in out, needle


def test_markdown_rendering(synth, tmp_path):
    """One Markdown renderer for a comparison: the report's (`forgetless compare --format md` uses it too)."""
    md = render_markdown(_report(synth, tmp_path))
    assert md.startswith("# Forgetting report")
    assert "| **overall** | 40 | 72.5% | 10.0% | +62.5 pp | [+43.5, +77.5] |" in md
    assert "## Diagnosis" in md and "**behavioural drift with knowledge intact**" in md
    assert "| knows but doesn't say | 0 | 17 | +17 |" in md
    assert "## Sample answers" in md and "## Recommendation" in md


def test_json_has_sample_replies_for_lost_items(synth, tmp_path):
    data = json.loads(_report(synth, tmp_path).to_json())
    lost = [e for e in data["lost_examples"] if e["metric"] == "behaviour"]
    assert lost and lost[0]["answer_after"] == synth.TEMPLATE_REPLY
    assert lost[0]["answer_before"].startswith("It is answer")
