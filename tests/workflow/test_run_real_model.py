"""`forgetless run` end to end on the real default model, fine-tuned the way that breaks it.

Aggressive full fine-tuning (lr 3e-4, 40 steps, no replay) on the bundled fictional domain: the
model learns the domain, keeps its multiple-choice knowledge within what 60 items can tell, and
its open replies collapse into the domain's answer template. `compare` must call that behavioural
drift (kind behavioural_drift), never "no forgetting" (measured here: 98% of general replies copied
the training phrasing after, 0% before; checklist 1.00 -> 0.51).
"""

from __future__ import annotations

import json

from forgetless.workflow.run import RunOptions, run

AGGRESSIVE = """
method: full
learning_rate: 3.0e-4
max_steps: 40
batch_size: 8
max_length: 96
warmup_ratio: 0
save_steps: 1000
logging_steps: 10
replay: {fraction: 0}
monitor: {every: 20, mc_items: 40, gen_items: 12}
"""


def test_aggressive_full_fine_tuning_is_diagnosed_as_behavioural_drift(tmp_path):
    config = tmp_path / "aggressive.yaml"
    config.write_text(AGGRESSIVE)
    summary = run(RunOptions(config=str(config), out=str(tmp_path / "run"), per_type=60))
    report = summary.report

    assert report.verdict == "forgetting"
    assert report.diagnosis.kind == "behavioural_drift"
    assert report.metric("knowledge").overall.verdict != "forgetting"
    collapse = report.diagnosis.template_collapse
    assert collapse.share_before < 0.1 and collapse.share_after > 0.5
    domain = report.domain[0].overall
    assert domain.after - domain.before > 0.05  # it did learn the domain

    points = summary.train["monitor"]["points"]
    assert [p["step"] for p in points] == [0, 20, 40] and points[-1]["kl"] > 0.1
    for name in ("before.json", "after.json", "compare.json", "report.html", "report.md", "report.json"):
        assert (summary.out / name).exists()
    assert json.loads((summary.out / "report.json").read_text())["comparison"]["verdict"] == "forgetting"
