"""Model replies, item ids, categories, strategy names and titles are shown as text, never run as markup."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from forgetless.report import ReportData, render_html, render_markdown

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
EVIL = SCRIPT + IMG


@pytest.fixture(scope="module")
def evil_pages(build) -> dict[str, str]:
    comparison = ReportData.from_comparison(build.comparison(EVIL), title=EVIL, subtitle=EVIL,
                                            reproduce={"commands": [f"echo '{EVIL}'"], "configs": {EVIL: EVIL}})
    return {"comparison": render_html(comparison), "study": render_html(build.study(EVIL))}


@pytest.mark.parametrize("kind", ["comparison", "study"])
def test_no_markup_from_data_survives(evil_pages, kind):
    page = evil_pages[kind]
    lowered = page.lower()
    assert "<script" not in lowered  # the report uses no JavaScript at all
    assert "<img" not in lowered and "onerror=" not in lowered.replace("onerror=alert", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_every_place_data_appears_is_escaped(evil_pages):
    page = evil_pages["comparison"]
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    assert title == escaped  # the page title
    assert f"<h1>{escaped}</h1>" in page
    assert f"mc-005{escaped}" in page  # an item id
    assert f"geo{escaped}" in page  # a category name
    assert f"tuned{escaped}" in page  # the model spec
    assert f"28 hours. Thank you for choosing Zentrix.{escaped}" in page  # a model reply
    study = evil_pages["study"]
    assert f"EWC{escaped}" in study  # a strategy name in the table


@pytest.mark.parametrize("kind", ["comparison", "study"])
def test_inline_svg_is_well_formed_and_escaped(evil_pages, kind):
    svgs = re.findall(r"<svg .*?</svg>", evil_pages[kind], flags=re.DOTALL)
    assert len(svgs) >= 3
    labels = []
    for svg in svgs:
        root = ET.fromstring(svg)
        labels += ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    if kind == "study":  # strategy names and category names are chart labels there
        assert any("EWC<script>" in label for label in labels)
        assert any(label.startswith("coding<script>") for label in labels)


def test_markdown_escapes_outside_code_blocks(build):
    md = render_markdown(build.study(EVIL))
    outside = re.sub(r"(`{3,}).*?\1", "", md, flags=re.DOTALL)  # fenced blocks render literally, they may keep it
    assert "<script" not in outside and "<img" not in outside
    assert "&lt;script>" in outside
