"""`forgetless run` and a one-strategy study share one pipeline: with the same config, the same numbers."""

from __future__ import annotations

from forgetless.workflow.run import RunOptions, run
from forgetless.workflow.study import StudyOptions, run_study


def test_a_run_and_a_one_strategy_study_with_its_config_report_the_same_numbers(tiny_model_dir, tmp_path):
    study = run_study(StudyOptions(model=str(tiny_model_dir), out=str(tmp_path / "study"), steps=2, per_type=4,
                                   max_length=48, batch_size=4, strategies=("lora",), recover=False, samples=0))
    config = tmp_path / "study" / "lora" / "train-config.yaml"
    summary = run(RunOptions(model=str(tiny_model_dir), config=str(config), out=str(tmp_path / "run"), per_type=4))

    studied = study.reports["LoRA"].model_dump(mode="json")
    ran = summary.report.model_dump(mode="json")
    assert summary.train["steps"] == 2
    for key in ("verdict", "metrics", "domain", "template_collapse", "diagnosis", "tradeoff", "kl"):
        assert ran.get(key) == studied.get(key), key
    assert ran["metrics"] and ran["domain"]  # numbers were compared, not two empty reports
