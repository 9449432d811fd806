"""render_report: the table with the front marked, the recommendation and its reasoning, the plot."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from compress.pareto import pareto_flags
from compress.plots import tradeoff_plot
from compress.recommend import recommend
from compress.report import FRONT_MARK, render_report, table_cells


def row(label: str, tech: str, acc: float | None, size: int, ops: int, lat: float | None, **kw: Any) -> dict:
    base = {"accuracy": 98.0}
    drop = None if acc is None else round(base["accuracy"] - acc, 6)
    return {
        "label": label,
        "technique": tech,
        "params": {},
        "accuracy": acc,
        "accuracy_drop": drop,
        "bytes": size,
        "ops": ops,
        "latency_ms_bs64": lat,
        "trial": False,
        "job_id": label,
    } | kw


# Objectives accuracy up, bytes/ops/latency down.
ROWS = [
    row("baseline", "baseline", 98.0, 400_000, 4_000_000, 20.0),  # front: most accurate
    row("int8", "quantize", 97.6, 100_000, 4_000_000, 16.0),  # front: smaller than all within 97.6+
    row("prune|50%", "prune", 97.2, 200_000, 1_000_000, 12.0),  # front: fewest ops; pipe must be escaped in md
    row("lowrank", "lowrank", 97.4, 120_000, 1_200_000, 8.0),  # front: fastest
    row("prune-light", "prune", 97.0, 250_000, 1_500_000, 13.0),  # dominated by lowrank and prune|50%
    row("prune-heavy", "prune", 95.0, 50_000, 500_000, None),  # front (smallest, cheapest), over budget
    row("trial 3", "prune", 97.9, 40_000, 400_000, 2.0, trial=True),  # search trial: not judged
]


def test_table_cells_values() -> None:
    cells = table_cells(ROWS)
    assert cells[0] == [
        FRONT_MARK,
        "baseline",
        "baseline",
        "98.00",
        "+0.00",
        "400,000",
        "100.0 %",
        "4,000,000",
        "100.0 %",
        "20.00",
        "",
    ]
    assert cells[3] == [
        FRONT_MARK,
        "lowrank",
        "lowrank",
        "97.40",
        "+0.60",
        "120,000",
        "30.0 %",
        "1,200,000",
        "30.0 %",
        "8.00",
        "",
    ]
    assert cells[4][0] == ""  # dominated
    assert cells[5][-2] == "—"  # no latency
    assert cells[6][0] == "" and cells[6][-1] == "yes"  # trial: not on the front
    assert [c[0] == FRONT_MARK for c in cells] == [f is True for f in pareto_flags(ROWS)]


def test_markdown_report_has_table_front_and_reasoning() -> None:
    rec = recommend(ROWS, max_accuracy_drop=1.0, priority="balanced")
    assert rec.chosen is not None and rec.chosen["label"] == "lowrank"
    md = render_report(ROWS, rec, fmt="md")
    lines = md.splitlines()
    assert lines[0] == "# netreduce: which compressed model to keep"
    assert "| ★ | baseline | baseline | 98.00 | +0.00 | 400,000 | 100.0 % | 4,000,000 | 100.0 % | 20.00 |  |" in lines
    assert (
        "| ★ | **lowrank** (chosen) | lowrank | 97.40 | +0.60 | 120,000 | 30.0 % | 1,200,000 | 30.0 % | 8.00 |  |"
        in lines
    )
    assert "| ★ | prune\\|50% | prune | 97.20 | +0.80 | 200,000 | 50.0 % | 1,000,000 | 25.0 % | 12.00 |  |" in lines
    assert "|  | prune-light | prune | 97.00 | +1.00 | 250,000 | 62.5 % | 1,500,000 | 37.5 % | 13.00 |  |" in lines
    # Every table row: 7 rows + header + alignment line, each with the 11 columns.
    table = [ln for ln in lines if ln.startswith("| ") and ln.count(" | ") >= 10]
    assert len(table) == 1 + len(ROWS)
    assert "- **Keep:** lowrank (lowrank)" in lines
    assert f"- **Why:** {rec.message.replace('|', chr(92) + '|')}" in lines
    assert "- **Runner-up:** prune\\|50% (prune)" in lines
    assert "- **Dominates:** prune-light" in lines
    assert (
        "- **Constraint:** accuracy drop ≤ 1 points versus the baseline (accuracy ≥ 97.00 %, baseline 98.00 %)" in lines
    )
    # lowrank vs prune|50%: 120k/200k -40 %, 1.2M/1M +20 %, 8/12 -33.3 %, error -0.2 points
    assert any(
        ln.startswith("- **Trade-off:** −40.0 % size, −33.3 % latency, −0.20 points error for +20.0 % ops")
        for ln in lines
    )
    assert "| prune-heavy | accuracy drop 3.00 points \\> budget 1 points; no latency\\_ms\\_bs64 |" in lines
    assert "| trial 3 | search trial (include\\_trials is off) |" in lines
    assert "5 rows): no other row is at least as good" in md
    assert "data:image" not in md  # no plot given


def test_markdown_embeds_plot_as_data_uri() -> None:
    rec = recommend(ROWS, priority="size")
    svg = tradeoff_plot(ROWS, fmt="svg")
    md = render_report(ROWS, rec, fmt="md", plot_svg=svg)
    (uri,) = re.findall(r"!\[Accuracy trade-off plot\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", md)
    root = ET.fromstring(base64.b64decode(uri))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_html_report_is_self_contained() -> None:
    rec = recommend(ROWS, priority="ops")
    assert rec.chosen is not None and rec.chosen["label"] == "prune|50%"
    page = render_report(ROWS, rec, fmt="html", plot_svg=tradeoff_plot(ROWS, fmt="svg"))
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert page.rstrip().endswith("</html>")
    assert page.count("<svg") == 1 and "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert "Top-1 accuracy (%)" in page  # the inline plot's axis label, as text
    assert "<script" not in page and "<link" not in page and "<img" not in page
    refs = re.findall(r'(?:src|href)="([^"]*)"', page) + re.findall(r"url\(([^)]*)\)", page)
    assert refs and all(r.startswith("#") for r in refs)  # only in-document references (svg clip paths, markers)
    assert '<tr class="front chosen"><td class="c">★</td><td class="l">prune|50% (chosen)</td>' in page
    assert '<tr><td class="c"></td><td class="l">prune-light</td>' in page
    assert f"<dd>{rec.message}</dd>" in page.replace("&#x27;", "'")
    assert "<dt>Dominates</dt><dd>prune-light</dd>" in page


def test_html_escapes_labels() -> None:
    rows = [*ROWS, row("<b>evil</b> & co", "prune", 97.1, 300_000, 2_000_000, 15.0)]
    page = render_report(rows, recommend(rows), fmt="html")
    assert "<b>evil</b>" not in page
    assert "&lt;b&gt;evil&lt;/b&gt; &amp; co" in page


def test_rows_own_pareto_flags_are_respected() -> None:
    flagged = [r | {"pareto": r["label"] == "int8"} for r in ROWS]  # e.g. /comparison?objectives=bytes
    cells = table_cells(flagged)
    assert [c[0] for c in cells] == ["", FRONT_MARK, "", "", "", "", ""]


def test_report_when_nothing_qualifies() -> None:
    rec = recommend(ROWS, max_accuracy_drop=-1.0)
    md = render_report(ROWS, rec, fmt="md")
    assert "- **Keep:** nothing qualifies" in md
    assert "No row satisfies accuracy drop ≤ -1 points" in md
    assert "(chosen)" not in md and "Runner-up" not in md
    no_rec = render_report(ROWS, None, fmt="html")
    assert "<dt>Recommendation</dt><dd>none computed for this table</dd>" in no_rec


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="unknown report format 'pdf'; valid formats: md, html"):
        render_report(ROWS, None, fmt="pdf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an SVG document"):
        render_report(ROWS, None, fmt="html", plot_svg=b"\x89PNG")
