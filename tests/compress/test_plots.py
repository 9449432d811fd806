"""Plots: valid PNG/SVG bytes, labelled axes and legend, the front as a step line, no overlapping labels."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
import xml.etree.ElementTree as ET
from types import SimpleNamespace
from typing import Any

import matplotlib
import matplotlib.image
import pytest
from matplotlib.transforms import Bbox
from PIL import Image

from compress.plots import (
    LABEL_GID,
    compact_number,
    largest_covering,
    layer_figure,
    layer_plot,
    tradeoff_figure,
    tradeoff_plot,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(label: str, tech: str, acc: float, size: int, ops: int, lat: float | None, trial: bool = False) -> dict:
    return {
        "label": label,
        "technique": tech,
        "params": {},
        "n_params": size // 4,
        "bytes": size,
        "file_bytes": size + 900,
        "macs": ops - 2_000,
        "flops": 2 * ops,
        "ops": ops,
        "sparse_macs": ops,
        "accuracy": acc,
        "accuracy_drop": round(98.1 - acc, 4),
        "latency_ms_bs1": None if lat is None else lat / 20,
        "latency_ms_bs64": lat,
        "size_ratio": None,
        "ops_ratio": None,
        "trial": trial,
        "job_id": label,
        "created_at": "2025-01-01T00:00:00",
    }


def table15() -> list[dict[str, Any]]:
    """A normal comparison table: 15 rows, several of them close together on every axis."""
    return [
        row("baseline", "baseline", 98.1, 412_000, 2_900_000, 4.1),
        row("quantize int8", "quantize", 97.9, 103_000, 2_900_000, 3.2),
        row("quantize int8 (per-channel)", "quantize", 98.0, 104_500, 2_900_000, 3.3),
        row("prune-channels (ratio=0.25)", "prune-channels", 97.8, 240_000, 1_700_000, 2.9),
        row("prune-channels (ratio=0.5)", "prune-channels", 97.1, 110_000, 800_000, 1.8),
        row("prune-channels (ratio=0.6)", "prune-channels", 96.4, 75_000, 560_000, 1.5),
        row("prune-weights (sparsity=0.5)", "prune-weights", 98.0, 210_000, 2_900_000, 4.0),
        row("prune-weights (sparsity=0.8)", "prune-weights", 97.5, 86_000, 2_900_000, 4.1),
        row("prune-weights (sparsity=0.9)", "prune-weights", 96.0, 44_000, 2_900_000, 4.0),
        row("lowrank (rank=16)", "lowrank", 97.7, 150_000, 1_200_000, 2.6),
        row("lowrank (rank=8)", "lowrank", 97.0, 98_000, 760_000, 2.0),
        row("orthogonal", "orthogonal", 97.6, 230_000, 2_900_000, 4.6),
        row("distill (width=0.5)", "distill", 97.2, 105_000, 740_000, 1.7),
        row("prune-channels → quantize int8", "chain", 96.9, 28_000, 800_000, 1.6),
        row("lowrank → quantize int8", "chain", 97.4, 38_000, 1_200_000, 2.3),
    ]


TECHNIQUES = ["quantize", "prune-channels", "prune-weights", "lowrank", "orthogonal", "distill", "chain"]


def svg_text(svg: bytes) -> str:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return "\n".join(t.strip() for t in root.itertext() if t.strip())


def test_tradeoff_png_is_a_readable_image(tmp_path: Any) -> None:
    png = tradeoff_plot(table15(), x="bytes", fmt="png")
    assert png[:8] == PNG_MAGIC
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size == (1100, 660)
    arr = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert arr.shape[:2] == (660, 1100)
    assert arr[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.parametrize(
    ("x", "axis_label"),
    [
        ("bytes", "Size (bytes of stored parameters, log scale)"),
        ("ops", "Operations per sample (MACs + activation ops, log scale)"),
        ("latency", "Latency (ms per batch of 64, log scale)"),
    ],
)
def test_tradeoff_svg_has_axis_labels_legend_and_point_labels(x: str, axis_label: str) -> None:
    svg = tradeoff_plot(table15(), x=x, fmt="svg")
    text = svg_text(svg)
    assert axis_label in text
    assert "Top-1 accuracy (%)" in text
    lines = set(text.splitlines())
    for name in [*TECHNIQUES, "baseline", "Pareto front", "technique"]:
        assert name in lines, name  # legend entries
    for r in table15():
        assert r["label"] in lines  # every point labelled
    assert matplotlib.rcParams["svg.fonttype"] == "path"  # the rc change did not leak


def test_front_is_the_hand_computed_step_line() -> None:
    fig = tradeoff_figure(table15(), x="bytes")
    ax = fig.axes[0]
    (front,) = [ln for ln in ax.get_lines() if ln.get_label() == "Pareto front"]
    # accuracy up, bytes down, sorted by bytes: each step is more accurate than the one before.
    # 28k/96.9 (pc→q), 38k/97.4 (lr→q), 86k/97.5 (pw .8), 103k/97.9 (q), 104.5k/98.0 (q pc), 412k/98.1 (baseline).
    # Off the front e.g. pw .5 (210k, 98.0): quantize per-channel has the same accuracy at 104.5k.
    assert list(front.get_xdata()) == [28_000, 38_000, 86_000, 103_000, 104_500, 412_000]
    assert list(front.get_ydata()) == [96.9, 97.4, 97.5, 97.9, 98.0, 98.1]
    assert front.get_drawstyle() == "steps-post"
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "Size (bytes of stored parameters, log scale)"


@pytest.mark.parametrize("x", ["bytes", "ops", "latency"])
def test_fifteen_labels_do_not_overlap(x: str) -> None:
    fig = tradeoff_figure(table15(), x=x)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    labels = [t for t in ax.texts if t.get_gid() == LABEL_GID]
    assert sorted(t.get_text() for t in labels) == sorted(r["label"] for r in table15())
    boxes = [t.get_window_extent(renderer) for t in labels]
    for (ta, a), (tb, b) in itertools.combinations(zip(labels, boxes, strict=True), 2):
        assert not a.overlaps(b), f"'{ta.get_text()}' overlaps '{tb.get_text()}'"
    frame = ax.get_window_extent(renderer)
    for t, b in zip(labels, boxes, strict=True):
        assert frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1, t.get_text()
    # Labels do not cover any point either (marker radius ~6 px at 110 dpi).
    key = {"bytes": "bytes", "ops": "ops", "latency": "latency_ms_bs64"}[x]
    for r in table15():
        px, py = ax.transData.transform((r[key], r["accuracy"]))
        marker = Bbox.from_extents(px - 5, py - 5, px + 5, py + 5)
        for t, b in zip(labels, boxes, strict=True):
            assert not b.overlaps(marker), f"label '{t.get_text()}' covers point '{r['label']}'"
    # The figure keeps them apart in the rendered PNG too: saving does not re-layout.
    assert tradeoff_plot(table15(), x=x)[:8] == PNG_MAGIC


def test_hidden_trials_and_missing_values_are_counted() -> None:
    rows = table15()
    rows.append(row("prune-channels trial 3", "prune-channels", 97.3, 100_000, 900_000, 1.9, trial=True))
    rows[5]["latency_ms_bs64"] = None
    fig = tradeoff_figure(rows, x="latency")
    notes = [t.get_text() for t in fig.texts]
    assert notes == ["1 row(s) not drawn: no accuracy or no latency_ms_bs64; 1 search trial(s) hidden"]
    assert len([t for t in fig.axes[0].texts if t.get_gid() == LABEL_GID]) == 14

    with_trials = tradeoff_figure(rows, x="bytes", include_trials=True)
    labels = {t.get_text() for t in with_trials.axes[0].texts if t.get_gid() == LABEL_GID}
    assert "prune-channels trial 3" in labels and len(labels) == 16
    legend = with_trials.axes[0].get_legend()
    assert legend is not None
    assert "faded: search trial" in [t.get_text() for t in legend.get_texts()]


def test_empty_table_still_renders() -> None:
    png = tradeoff_plot([], fmt="png")
    assert png[:8] == PNG_MAGIC


def test_invalid_choices() -> None:
    with pytest.raises(ValueError, match="unknown x axis 'size'; valid: bytes, ops, latency"):
        tradeoff_plot(table15(), x="size")
    with pytest.raises(ValueError, match="unknown plot format 'jpg'; valid formats: png, svg"):
        tradeoff_plot(table15(), fmt="jpg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown plot format"):
        layer_plot(LAYERS, fmt="pdf")  # type: ignore[arg-type]


LAYERS: list[dict[str, Any]] = [
    {"name": "conv1", "type": "Conv2d", "params": 160, "macs": 92_160},
    {"name": "relu1", "type": "ReLU", "params": 0, "macs": 0},
    {"name": "conv2", "type": "Conv2d", "params": 4_640, "macs": 663_552},
    {"name": "pool", "type": "MaxPool2d", "params": 0, "macs": 0},
    {"name": "fc1", "type": "Linear", "params": 73_792, "macs": 73_728},
    {"name": "fc2", "type": "Linear", "params": 650, "macs": 640},
]


def test_layer_plot_png_and_svg() -> None:
    png = layer_plot(LAYERS, fmt="png")
    assert png[:8] == PNG_MAGIC
    with Image.open(io.BytesIO(png)) as im:
        w, h = im.size
    assert w == 1210 and 350 <= h <= 500
    text = svg_text(layer_plot(LAYERS, fmt="svg"))
    for needle in (
        "conv2 (Conv2d)",
        "fc1 (Linear)",
        "Parameters — total 79,242",
        "MACs per sample — total 830,080",
        "73,792 (93.1 %)",
        "663,552 (79.9 %)",
        "parameters",
        "multiply-accumulates per sample (log scale)",  # 663,552 / 640 > 1000x -> log
    ):
        assert needle in text.splitlines(), needle
    assert "relu1" not in text and "pool" not in text  # no params, no MACs: left out


def test_layer_plot_colours_the_layers_to_reduce_first() -> None:
    # params 160, 4640, 73792, 650: fc1 alone is 93.1 % >= 75 %. MACs: conv2 alone is 79.9 %.
    assert largest_covering([160, 4_640, 73_792, 650]) == {2}
    assert largest_covering([92_160, 663_552, 73_728, 640]) == {1}
    assert largest_covering([92_160, 663_552, 73_728, 640], cover=0.85) == {0, 1}
    assert largest_covering([0, 0]) == set()
    fig = layer_figure([SimpleNamespace(**lyr) for lyr in LAYERS])  # objects with attributes work too
    params_ax, macs_ax = fig.axes
    grey = matplotlib.colors.to_rgba("0.78")
    assert [p.get_facecolor() != grey for p in params_ax.patches] == [False, False, True, False]
    assert [p.get_facecolor() != grey for p in macs_ax.patches] == [False, True, False, False]
    assert params_ax.get_xscale() == "linear" and macs_ax.get_xscale() == "log"


def test_compact_numbers() -> None:
    assert [compact_number(v) for v in (0.5, 2, 1500, 30_000, 2_000_000, 1.2e9)] == [
        "0.5",
        "2",
        "1.5k",
        "30k",
        "2M",
        "1.2G",
    ]


def test_no_pyplot_import() -> None:
    code = (
        "import sys; from compress.plots import tradeoff_plot, layer_plot; "
        "tradeoff_plot([{'label': 'b', 'technique': 'baseline', 'accuracy': 90.0, 'bytes': 10}], fmt='svg'); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


MATH_LIKE = ["a $x^$ b", "$\\frac{", "cost $5 and $", "50% off $$"]


@pytest.mark.parametrize("text", MATH_LIKE)
def test_user_text_is_drawn_as_plain_text(text: str) -> None:
    """Dollar signs in a title, a row label, a technique or a layer name are shown as typed, not parsed
    as math text (which raised ValueError: a 500 on GET /models/{id}/layers.png)."""
    rows = table15()
    rows[1] = {**rows[1], "label": text, "technique": text}
    rows.append({**rows[2], "label": f"{text} trial", "trial": True})
    for fmt in ("png", "svg"):
        out = tradeoff_plot(rows, fmt=fmt, include_trials=True, title=text)  # type: ignore[arg-type]
        assert out[:8] == PNG_MAGIC if fmt == "png" else text in svg_text(out).splitlines()
    layers = [{**LAYERS[0], "name": text}, *LAYERS[1:]]
    for fmt in ("png", "svg"):
        out = layer_plot(layers, fmt=fmt, title=text)  # type: ignore[arg-type]
        assert out[:8] == PNG_MAGIC if fmt == "png" else {text, f"{text} (Conv2d)"} <= set(svg_text(out).splitlines())
