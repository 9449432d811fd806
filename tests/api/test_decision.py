"""Pareto flags, recommendation, plots and report on a hand-made comparison table.

The table (accuracy %, bytes, ops, latency ms/64) and who dominates whom, on the default objectives
(accuracy up, bytes, ops, latency down):

    row               acc    bytes    ops        lat   front?
    baseline          98.0   100k     1.0M       10.0  yes (nobody is as accurate and as small)
    quantize-int8 B   97.8    25k     1.0M        8.0  yes (smallest of the accurate ones)
    orthogonal E      98.2   105k     0.6M        9.0  yes (most accurate)
    prune-channels A  97.5    70k     0.8M        4.0  yes (fastest within 1 point)
    narrow C          96.0    20k     0.3M        2.0  yes (smallest, cheapest, fastest; drop 2.0)
    separable D       96.8    90k     1.1M       12.0  no: B is >= on all four, better on each
    prune-l1 F        97.6    60k     1.0M       10.0  no: B 97.8 >= 97.6, 25k < 60k, 1.0M = 1.0M, 8 < 10
    prune-l1 trial T  99.0    10k     0.1M        1.0  only with include_trials, and then alone on the front

On accuracy and bytes only, A (97.5, 70k) is dominated by B (97.8, 25k) and F, D stay dominated.
"""

from __future__ import annotations

import csv
import io
import math
import re
import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.api.seed import add_job, add_model, add_row

TABLE = {
    # label: (technique, accuracy, bytes, ops, latency_ms_bs64, trial)
    "baseline": ("baseline", 98.0, 100_000, 1_000_000, 10.0, False),
    "B int8": ("quantize-int8", 97.8, 25_000, 1_000_000, 8.0, False),
    "E ortho": ("orthogonal", 98.2, 105_000, 600_000, 9.0, False),
    "A channels": ("prune-channels", 97.5, 70_000, 800_000, 4.0, False),
    "C narrow": ("narrow", 96.0, 20_000, 300_000, 2.0, False),
    "D separable": ("separable", 96.8, 90_000, 1_100_000, 12.0, False),
    "F prune": ("prune-l1", 97.6, 60_000, 1_000_000, 10.0, False),
    "T trial": ("prune-l1", 99.0, 10_000, 100_000, 1.0, True),
}
FRONT_DEFAULT = {"baseline": True, "B int8": True, "E ortho": True, "A channels": True, "C narrow": True}
LAYERS = [
    {"name": "conv1", "type": "Conv2d", "output_shape": [8, 8, 8], "params": 80, "macs": 4608},
    {"name": "relu1", "type": "ReLU", "output_shape": [8, 8, 8], "params": 0, "macs": 0},
    {"name": "conv2", "type": "Conv2d", "output_shape": [16, 8, 8], "params": 1168, "macs": 73728},
    {"name": "fc", "type": "Linear", "output_shape": [10], "params": 10250, "macs": 10240},
]


@pytest.fixture(scope="module")
def table(engine: Engine) -> str:
    """A ready base model with the table above; returns its id."""
    mid = add_model(engine)
    train = add_job(engine, mid, technique="train")
    for label, (tech, acc, size, ops, lat, trial) in TABLE.items():
        job = train if tech == "baseline" else add_job(engine, mid, technique=tech)
        add_row(
            engine,
            job,
            mid,
            0,
            label=label,
            technique=tech,
            accuracy=acc,
            accuracy_drop=round(98.0 - acc, 6),
            bytes=size,
            ops=ops,
            macs=ops - 1000,
            latency_ms_bs64=lat,
            trial=trial,
            layers=LAYERS if tech == "baseline" else None,
        )
    return mid


def _flags(rows: list[dict]) -> dict[str, bool]:
    return {r["label"]: r["pareto"] for r in rows}


def test_pareto_flags_json_default_objectives(client: TestClient, table: str) -> None:
    rows = client.get("/comparison", params={"base_model_id": table}).json()
    assert rows[0]["label"] == "baseline" and list(rows[0])[-1] == "pareto"
    expected = {label: label in FRONT_DEFAULT for label in TABLE if label != "T trial"}
    assert _flags(rows) == expected


def test_pareto_flags_csv_last_column(client: TestClient, table: str) -> None:
    text = client.get("/comparison", params={"base_model_id": table, "format": "csv"}).text
    header = text.splitlines()[0].split(",")
    assert header[-1] == "pareto" and header[0] == "label"
    got = {r["label"]: r["pareto"] for r in csv.DictReader(io.StringIO(text))}
    assert got == {label: "true" if label in FRONT_DEFAULT else "false" for label in TABLE if label != "T trial"}


def test_pareto_objectives_param(client: TestClient, table: str) -> None:
    rows = client.get("/comparison", params={"base_model_id": table, "objectives": "accuracy, size"}).json()
    flags = _flags(rows)
    assert flags["A channels"] is False  # B: 97.8 >= 97.5 and 25k < 70k; A's speed no longer counts
    assert flags["baseline"] and flags["B int8"] and flags["E ortho"] and flags["C narrow"]


def test_pareto_trials_take_part_only_when_asked(client: TestClient, table: str) -> None:
    rows = client.get("/comparison", params={"base_model_id": table, "include_trials": "true"}).json()
    assert {label for label, on in _flags(rows).items() if on} == {"T trial"}  # T beats every row on all four


@pytest.mark.parametrize("bad", ["accuracy,weight", "bytes:max", ""])
def test_bad_objectives_422_lists_valid_names(client: TestClient, table: str, bad: str) -> None:
    r = client.get("/comparison", params={"base_model_id": table, "objectives": bad})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["query", "objectives"]
    assert "accuracy" in detail["valid"] and "latency_ms_bs64" in detail["valid"]


@pytest.mark.parametrize(
    ("priority", "chosen", "runner_up"),
    [("size", "B int8", "F prune"), ("ops", "E ortho", "A channels"), ("latency", "A channels", "B int8")],
)
def test_recommendation_per_priority(
    client: TestClient, table: str, priority: str, chosen: str, runner_up: str
) -> None:
    r = client.get("/recommendation", params={"base_model_id": table, "max_accuracy_drop": 1.0, "priority": priority})
    assert r.status_code == 200
    rec = r.json()
    assert rec["chosen"]["label"] == chosen and rec["runner_up"]["label"] == runner_up
    assert rec["chosen"]["pareto"] is True
    excluded = {e["row"]["label"]: e["reasons"] for e in rec["excluded"]}
    assert excluded == {"C narrow": ["over_budget"], "D separable": ["over_budget"]}  # drops 2.0 and 1.2
    assert "1 points" in rec["constraint"] and rec["trade_off"]["text"]


def test_recommendation_balanced_is_the_geometric_mean(client: TestClient, table: str) -> None:
    rec = client.get("/recommendation", params={"base_model_id": table, "priority": "balanced"}).json()
    assert rec["chosen"]["label"] == "B int8"  # (0.25 * 1.0 * 0.8) ** (1/3) = 0.585
    assert rec["runner_up"]["label"] == "A channels"  # (0.7 * 0.8 * 0.4) ** (1/3) = 0.607
    assert math.isclose(rec["ranking"][0]["score"], 0.2 ** (1 / 3), rel_tol=1e-9)
    assert "bytes/bytes_baseline" in rec["score_formula"]
    assert {d["label"] for d in rec["dominates"]} == {"D separable", "F prune"}


def test_recommendation_wider_budget_takes_the_narrow_net(client: TestClient, table: str) -> None:
    rec = client.get("/recommendation", params={"base_model_id": table, "max_accuracy_drop": 3}).json()
    assert rec["chosen"]["label"] == "C narrow" and rec["excluded"] == []


def test_recommendation_impossible_budget_is_an_answer(client: TestClient, table: str) -> None:
    r = client.get("/recommendation", params={"base_model_id": table, "max_accuracy_drop": -5})
    assert r.status_code == 200
    rec = r.json()
    assert rec["chosen"] is None and rec["runner_up"] is None
    assert rec["message"].startswith("No row satisfies")
    assert len(rec["excluded"]) == len(TABLE) - 1  # the trial is not even listed in the table


def test_recommendation_errors(client: TestClient, table: str) -> None:
    assert client.get("/recommendation", params={"base_model_id": "nope"}).status_code == 404
    r = client.get("/recommendation", params={"base_model_id": table, "priority": "speed"})
    assert r.status_code == 422 and "balanced" in r.text


def test_recommendation_on_an_empty_table(client: TestClient, engine: Engine) -> None:
    mid = add_model(engine, status="untrained")
    rec = client.get("/recommendation", params={"base_model_id": mid}).json()
    assert rec["chosen"] is None and "empty" in rec["message"]


@pytest.mark.parametrize("x", ["bytes", "ops", "latency"])
def test_tradeoff_plot_png(client: TestClient, table: str, x: str) -> None:
    r = client.get("/comparison/plot.png", params={"base_model_id": table, "x": x})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_tradeoff_plot_svg(client: TestClient, table: str) -> None:
    r = client.get("/comparison/plot.svg", params={"base_model_id": table, "x": "ops"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "E ortho" in r.text and "Operations per sample" in r.text


def test_plot_errors(client: TestClient, table: str, engine: Engine) -> None:
    assert client.get("/comparison/plot.png", params={"base_model_id": table, "x": "weight"}).status_code == 422
    assert client.get("/comparison/plot.svg", params={"base_model_id": "nope"}).status_code == 404
    untrained = add_model(engine, status="untrained")
    r = client.get(f"/models/{untrained}/layers.png")
    assert r.status_code == 409 and "untrained" in r.json()["detail"]
    assert client.get("/models/nope/layers.svg").status_code == 404


def test_layer_plot(client: TestClient, table: str) -> None:
    png = client.get(f"/models/{table}/layers.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    svg = client.get(f"/models/{table}/layers.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    ET.fromstring(svg.content)
    assert "conv2 (Conv2d)" in svg.text and "relu1" not in svg.text  # layers with no params nor MACs left out


def test_report_markdown(client: TestClient, table: str) -> None:
    r = client.get("/comparison/report", params={"base_model_id": table, "format": "md", "priority": "ops"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    text = r.text
    assert "## Recommendation" in text and "**Keep:** E ortho (orthogonal)" in text
    table_lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert any("**E ortho** (chosen)" in line for line in table_lines)
    assert sum("★" in line for line in table_lines) == len(FRONT_DEFAULT)
    assert "data:image/svg+xml;base64," in text


def test_report_html(client: TestClient, table: str) -> None:
    r = client.get("/comparison/report", params={"base_model_id": table, "format": "html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<h2>Recommendation</h2>" in r.text and "B int8 (chosen)" in r.text
    assert len(re.findall(r'<tr class="front', r.text)) == len(FRONT_DEFAULT)
    assert "<svg" in r.text and "<script" not in r.text


def test_plots_draw_a_math_like_model_name_as_typed(client: TestClient, engine: Engine) -> None:
    """A model called 'a $x^$ b' made GET /models/{id}/layers.png and .svg answer 500 (math text)."""
    mid = add_model(engine)
    name = "a $x^$ b"
    with engine.begin() as conn:
        conn.execute(text("UPDATE base_models SET name = :n WHERE id = :id"), {"n": name, "id": mid})
    job = add_job(engine, mid, technique="train")
    add_row(engine, job, mid, 0, layers=[{**LAYERS[0], "name": "$conv^$"}, *LAYERS[1:]])
    png = client.get(f"/models/{mid}/layers.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    svg = client.get(f"/models/{mid}/layers.svg")
    assert svg.status_code == 200
    texts = {t.strip() for t in ET.fromstring(svg.content).itertext()}
    assert f"{name}: which layers to reduce first" in texts and "$conv^$ (Conv2d)" in texts
