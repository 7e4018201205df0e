from __future__ import annotations

import json
import xml.dom.minidom

import pytest

from forgetless.demo.tiny import format_tiny_demo, run_tiny_demo, tiny_demo_svg


@pytest.fixture(scope="module")
def result():
    return run_tiny_demo(seed=0)


def test_plain_training_forgets_ewc_and_l2_keep_task_a(result):
    plain, ewc, l2 = (result.run(m) for m in ("plain", "ewc", "l2sp"))
    assert plain.ratio >= 5  # catastrophic forgetting
    assert ewc.ratio * 3 <= plain.ratio
    assert l2.ratio * 3 <= plain.ratio
    assert ewc.task_a_after < l2.task_a_after  # the Fisher knows which weights matter
    for run in (plain, ewc, l2):
        assert run.task_b_after < 0.5 * run.task_b_before  # task B is still learned


def test_single_weight_lands_on_the_fisher_weighted_compromise(result):
    q, s = result.quadratic, result.settings
    assert q.plain_trajectory[0] == q.ewc_trajectory[0] == s.a
    assert abs(q.plain_trajectory[-1] - s.b) < 0.01
    assert abs(q.ewc_trajectory[-1] - q.ewc_closed_form) < 1e-6
    assert q.ewc_closed_form == pytest.approx((s.quad_lambda * s.curvature_a * s.a + s.curvature_b * s.b) / (s.quad_lambda * s.curvature_a + s.curvature_b))
    assert q.loss_a_ewc_end < q.loss_a_plain_end


def test_deterministic_for_a_seed_and_json_serialisable(result):
    again = run_tiny_demo(seed=0)
    assert again.to_dict() == result.to_dict()
    assert json.loads(result.to_json())["mlp"][0]["task_a_ratio"] == result.run("plain").ratio
    assert run_tiny_demo(seed=1).to_dict() != result.to_dict()  # the seed is used


def test_svg_and_text(result):
    svg = tiny_demo_svg(result)
    xml.dom.minidom.parseString(svg)  # well-formed
    assert svg.count("<polyline") == 2 and "ewc" in svg
    text = format_tiny_demo(result)
    assert "plain" in text and "closed form" in text
