"""Server-side plots of a comparison table: accuracy vs size / operations / latency, and per-layer bars.

Built on ``matplotlib.figure.Figure`` with its own Agg canvas: no pyplot, no global figure registry,
no backend switch, so plots can be drawn from a web worker thread. ``*_figure`` functions return the
figure (for notebooks and tests); ``*_plot`` functions return PNG or SVG bytes. SVG keeps text as
text (``svg.fonttype = none``, set only while saving), so labels stay searchable and the file small.
Every text that can carry a user's string (titles, row labels, legend entries, layer names) is drawn
with ``parse_math=False``: a model called ``a $x^$ b`` is shown as typed, never parsed as math text.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox, ScaledTranslation

from compress.pareto import objective_value, pareto_flags, takes_part

PlotFormat = Literal["png", "svg"]
XAxis = Literal["bytes", "ops", "latency", "ort-latency"]

X_AXES: dict[str, tuple[str, str, str]] = {
    "bytes": ("bytes", "Size (bytes of stored parameters, log scale)", "size"),
    "ops": ("ops", "Operations per sample (MACs + activation ops, log scale)", "operations"),
    "latency": ("latency_ms_bs64", "Latency (ms per batch of 64, log scale)", "latency"),
    "ort-latency": (
        "ort_latency_ms_bs64",
        "onnxruntime latency (ms per batch of 64, log scale)",
        "onnxruntime latency",
    ),
}
"""x choice -> (row column, axis label with unit, short word)."""

Y_LABEL = "Top-1 accuracy (%)"
LABEL_GID = "point-label"
"""gid of every point label, so tests and callers can find them among the axes' texts."""

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
_MARKER_SIZE_PT = 8.0
_LABEL_FONT_PT = 8.0
_LABEL_MAX_CHARS = 30
_RINGS_PT = (6.0, 14.0, 24.0, 36.0, 50.0, 66.0, 84.0)
_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))


def _new_figure(width_in: float, height_in: float, dpi: float = 110.0) -> tuple[Figure, FigureCanvasAgg]:
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    return fig, FigureCanvasAgg(fig)


def render_figure(fig: Figure, fmt: PlotFormat = "png") -> bytes:
    """PNG (at the figure's dpi) or SVG (text kept as text, no timestamp) bytes of ``fig``."""
    buf = io.BytesIO()
    if fmt == "png":
        fig.savefig(buf, format="png", dpi="figure")
    elif fmt == "svg":
        # rc_context restores the global rcParams on exit; svg.* only affects this save.
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "netreduce"}):
            fig.savefig(buf, format="svg", metadata={"Date": None})
    else:
        raise ValueError(f"unknown plot format '{fmt}'; valid formats: png, svg")
    return buf.getvalue()


def _short(label: str, limit: int = _LABEL_MAX_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _overlap_area(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside_area(box: Bbox, frame: Bbox) -> float:
    return box.width * box.height - _overlap_area(box, frame)


def _pad(box: Bbox, px: float) -> Bbox:
    return Bbox.from_extents(box.x0 - px, box.y0 - px, box.x1 + px, box.y1 + px)


def _point_box_distance(p: Sequence[float], box: Bbox) -> float:
    dx = max(box.x0 - p[0], 0.0, p[0] - box.x1)
    dy = max(box.y0 - p[1], 0.0, p[1] - box.y1)
    return math.hypot(dx, dy)


def place_labels(
    ax: Axes,
    points: Sequence[tuple[float, float]],
    labels: Sequence[str],
    renderer: RendererAgg,
    soft_obstacles: Sequence[Bbox] = (),
    **text_kw: Any,
) -> list[Text]:
    """Label each data point without overlaps: a greedy label-repel.

    For each label (most crowded points first) try offsets on growing rings around the point, in
    eight directions, and measure the text box with the renderer. The first position that is
    inside the axes, overlaps no label already placed and no point's marker, and is closer to its
    own point than to any other point (so it reads as that point's label) wins; positions that
    also avoid ``soft_obstacles`` (display-space boxes, e.g. the front line) are preferred. When no
    position qualifies, the least-overlapping one is kept. Labels away from their point get a thin
    leader line. Positions are offsets in points from the data point, so the layout must be final
    (axes position and limits) before calling this.
    """
    fig = ax.get_figure()
    assert fig is not None
    dpi_scale = fig.dpi_scale_trans
    frame = ax.get_window_extent(renderer)
    disp = [tuple(ax.transData.transform(p)) for p in points]
    r_px = (_MARKER_SIZE_PT / 2 + 1.5) * fig.dpi / 72.0
    markers = [Bbox.from_extents(x - r_px, y - r_px, x + r_px, y + r_px) for x, y in disp]
    crowd = [sum(math.dist(p, q) < 80 for q in disp) for p in disp]
    order = sorted(range(len(points)), key=lambda i: (-crowd[i], i))

    def put(t: Text, ox: float, oy: float) -> Bbox:
        t.set_transform(ax.transData + ScaledTranslation(ox / 72.0, oy / 72.0, dpi_scale))
        t.set_horizontalalignment("left" if ox > 0 else "right" if ox < 0 else "center")
        t.set_verticalalignment("bottom" if oy > 0 else "top" if oy < 0 else "center")
        return _pad(t.get_window_extent(renderer), 1.5)

    texts: dict[int, Text] = {}
    placed: list[Bbox] = []
    for i in order:
        t = ax.text(
            *points[i],
            labels[i],
            fontsize=_LABEL_FONT_PT,
            clip_on=False,
            gid=LABEL_GID,
            zorder=6,
            parse_math=False,
            **text_kw,
        )
        # Tier 0: free, unambiguous, off the soft obstacles; 1: free and unambiguous; 2: free; 3: least overlap.
        best: tuple[int, float, float, float, float] | None = None
        for ring in _RINGS_PT:
            for dx, dy in _DIRECTIONS:
                scale = 0.75 if dx and dy else 1.0
                ox, oy = dx * ring * scale, dy * ring * scale
                box = put(t, ox, oy)
                hard = (
                    sum(_overlap_area(box, b) for b in placed)
                    + sum(_overlap_area(box, m) for m in markers)
                    + 4 * _outside_area(box, frame)
                )
                own = _point_box_distance(disp[i], box)
                ambiguous = any(_point_box_distance(q, box) < own - 1.0 for j, q in enumerate(disp) if j != i)
                soft = sum(_overlap_area(box, b) for b in soft_obstacles)
                tier = 3 if hard else 2 if ambiguous else 1 if soft else 0
                if best is None or (tier, hard) < (best[0], best[1]):
                    best = (tier, hard, ox, oy, ring)
                if tier == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        _, _, ox, oy, ring = best
        placed.append(put(t, ox, oy))
        if ring > _RINGS_PT[0]:
            ax.annotate(
                "",
                xy=points[i],
                xytext=(ox, oy),
                textcoords="offset points",
                arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 0, "shrinkB": 4},
                zorder=1,
            )
        texts[i] = t
    return [texts[i] for i in range(len(points))]


def _log_ticks(ax: Axes, lo: float, hi: float) -> None:
    """Readable log ticks: 30k, 100k, 2M instead of 3x10^4."""
    decades = math.log10(hi / lo)
    subs = (1.0,) if decades > 4 else (1.0, 2.0, 5.0) if decades > 1.2 else (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
    ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: compact_number(v)))
    ax.xaxis.set_minor_locator(LogLocator(base=10.0, subs="auto"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def compact_number(v: float) -> str:
    """1500 -> '1.5k', 2_000_000 -> '2M', 0.5 -> '0.5' (SI prefixes, 1k = 1000)."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g}{suffix}"
    return f"{v:.3g}"


def _log_limits(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = math.log10(min(values)), math.log10(max(values))
    span = max(hi - lo, 0.6)
    mid = (lo + hi) / 2
    lo, hi = min(lo, mid - span / 2), max(hi, mid + span / 2)
    return 10 ** (lo - 0.14 * span), 10 ** (hi + 0.14 * span)


def _lin_limits(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    span = max(hi - lo, 1.0)
    return lo - 0.18 * span, hi + 0.18 * span


def tradeoff_figure(
    rows: Sequence[Mapping[str, Any]],
    x: str = "bytes",
    include_trials: bool = False,
    title: str | None = None,
) -> Figure:
    """Accuracy (%) against size, operations or latency (log x) for a comparison table.

    One colour and marker per technique (legend), the baseline as a large star, the 2-D Pareto
    front of the plotted pair (accuracy up, x down) as a dashed step line, and every point labelled
    with its row label, placed by :func:`place_labels`. Rows missing accuracy or x (or with x <= 0)
    and, unless ``include_trials``, search trials are not drawn; a footnote counts them.
    """
    if x not in X_AXES:
        raise ValueError(f"unknown x axis '{x}'; valid: {', '.join(X_AXES)}")
    key, x_label, word = X_AXES[x]
    shown: list[Mapping[str, Any]] = []
    skipped_missing = skipped_trials = 0
    for r in rows:
        xv, acc = objective_value(r, key), objective_value(r, "accuracy")
        if not takes_part(r, include_trials):
            skipped_trials += 1
        elif xv is None or acc is None or xv <= 0:
            skipped_missing += 1
        else:
            shown.append(r)

    fig, canvas = _new_figure(10.0, 6.0)
    ax = fig.add_axes((0.08, 0.11, 0.65, 0.81))
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(Y_LABEL)
    ax.set_title(title or f"Accuracy vs {word}: up and to the left is better", parse_math=False)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)

    techniques: list[str] = []
    for r in shown:
        tech = str(r.get("technique", "?"))
        if tech not in techniques and tech != "baseline":
            techniques.append(tech)
    cmap = matplotlib.colormaps["tab10"]
    style = {t: (cmap(i % 10), _MARKERS[i % len(_MARKERS)]) for i, t in enumerate(techniques)}

    xs = [objective_value(r, key) or 0.0 for r in shown]
    ys = [objective_value(r, "accuracy") or 0.0 for r in shown]
    if shown:
        x_lo, x_hi = _log_limits(xs)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(*_lin_limits(ys))
        _log_ticks(ax, x_lo, x_hi)

    front = [f is True for f in pareto_flags(shown, objectives=("accuracy", key), include_trials=True)]
    fx = sorted((xv, yv) for xv, yv, on in zip(xs, ys, front, strict=True) if on)
    if fx:
        ax.step(
            [p[0] for p in fx],
            [p[1] for p in fx],
            where="post",
            color="0.25",
            ls="--",
            lw=1.2,
            zorder=2,
            label="Pareto front",
        )

    for tech in ["baseline", *techniques]:
        idx = [i for i, r in enumerate(shown) if str(r.get("technique", "?")) == tech]
        if not idx:
            continue
        for trial in (False, True):
            sel = [i for i in idx if bool(shown[i].get("trial", False)) == trial]
            if not sel:
                continue
            name = _short(tech, 28)
            kw: dict[str, Any] = {"zorder": 4, "alpha": 0.45 if trial else 0.95, "label": None if trial else name}
            if tech == "baseline":
                kw |= {"marker": "*", "s": 320, "c": "gold", "edgecolors": "black", "linewidths": 1.2, "zorder": 5}
            else:
                color, marker = style[tech]
                kw |= {"marker": marker, "s": _MARKER_SIZE_PT**2, "color": color, "edgecolors": "white"}
            ax.scatter([xs[i] for i in sel], [ys[i] for i in sel], **kw)
            if trial and not any(not bool(shown[i].get("trial", False)) for i in idx):
                ax.scatter([], [], **(kw | {"label": name}))

    handles, names = ax.get_legend_handles_labels()
    if include_trials and any(r.get("trial") for r in shown):
        handles.append(Line2D([], [], ls="", marker="o", color="0.5", alpha=0.45))
        names.append("faded: search trial")
    renderer = canvas.get_renderer()
    if handles:
        legend = ax.legend(
            handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, title="technique"
        )
        for text in legend.get_texts():
            text.set_parse_math(False)
        # Fix the layout before placing labels: the axes give the legend the room it measures.
        legend_w = legend.get_window_extent(renderer).width / fig.bbox.width
        left, bottom, _, height = ax.get_position().bounds
        ax.set_position((left, bottom, max(0.35, 1.0 - left - legend_w - 0.03), height))

    notes = []
    if skipped_missing:
        notes.append(f"{skipped_missing} row(s) not drawn: no accuracy or no {key}")
    if skipped_trials:
        notes.append(f"{skipped_trials} search trial(s) hidden")
    if notes:
        fig.text(0.08, 0.015, "; ".join(notes), fontsize=8, color="0.35", parse_math=False)
    if not shown:
        ax.text(0.5, 0.5, "nothing to plot", transform=ax.transAxes, ha="center", va="center", color="0.4")
        return fig

    labels = [_short(str(r.get("label", "?"))) for r in shown]
    line_boxes = []
    for (x0, y0), (x1, y1) in itertools.pairwise(fx):
        for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1))):
            (ax0, ay0), (ax1, ay1) = ax.transData.transform([a, b])
            line_boxes.append(_pad(Bbox.from_extents(min(ax0, ax1), min(ay0, ay1), max(ax0, ax1), max(ay0, ay1)), 1.5))
    texts = place_labels(ax, list(zip(xs, ys, strict=True)), labels, renderer, soft_obstacles=line_boxes)
    for t, r in zip(texts, shown, strict=True):
        if r.get("technique") == "baseline":
            t.set_fontweight("bold")
    return fig


def tradeoff_plot(
    rows: Sequence[Mapping[str, Any]],
    x: str = "bytes",
    fmt: PlotFormat = "png",
    include_trials: bool = False,
    title: str | None = None,
) -> bytes:
    """PNG or SVG bytes of :func:`tradeoff_figure`."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"unknown plot format '{fmt}'; valid formats: png, svg")
    return render_figure(tradeoff_figure(rows, x=x, include_trials=include_trials, title=title), fmt)


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def layer_figure(layers: Sequence[Any], title: str | None = None, cover: float = 0.75) -> Figure:
    """Per-layer parameters and MACs of one model as two horizontal bar panels, layers in network
    order (top to bottom), each bar labelled with its count and share of the total.

    In each panel the largest layers that together hold at least ``cover`` of the total are drawn
    in colour, the rest in grey: those are the layers to reduce first. Layers with neither
    parameters nor MACs (activations, pooling, flatten) are left out. The x axis is linear, so bar
    lengths compare honestly, unless the values span more than 1000x (then log).

    ``layers``: dicts (or objects) with ``name``, ``type``, ``params`` and ``macs``.
    """
    kept = [lyr for lyr in layers if (_field(lyr, "params") or 0) > 0 or (_field(lyr, "macs") or 0) > 0]
    n = max(len(kept), 1)
    fig, _ = _new_figure(11.0, max(3.2, 0.38 * n + 1.6))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, 2, sharey=True)
    names = [f"{_field(lyr, 'name')} ({_field(lyr, 'type')})" for lyr in kept]
    panels = (
        ("params", "Parameters", "parameters", "tab:blue"),
        ("macs", "MACs per sample", "multiply-accumulates per sample", "tab:orange"),
    )
    for ax, (key, panel_title, unit, color) in zip(axes, panels, strict=True):
        values = [int(_field(lyr, key) or 0) for lyr in kept]
        total = sum(values)
        positive = [v for v in values if v > 0]
        log = bool(positive) and max(positive) / min(positive) > 1000
        strong = largest_covering(values, cover)
        ys = list(range(len(values)))
        widths = [v if v > 0 else (math.nan if log else 0) for v in values]
        ax.barh(
            ys,
            widths,
            color=[color if i in strong else "0.78" for i in ys],
            edgecolor="0.3",
            linewidth=0.5,
            height=0.7,
        )
        if log:
            ax.set_xscale("log")
            ax.set_xlim(min(positive) / 3, max(positive) * 12)
        elif positive:
            ax.set_xlim(0, max(positive) * 1.4)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: compact_number(v)))
        for i, v in enumerate(values):
            share = f" ({100 * v / total:.1f} %)" if total else ""
            anchor = v if v > 0 else (ax.get_xlim()[0] if log else 0)
            ax.text(anchor, i, f" {v:,}{share}", va="center", fontsize=8, fontweight="bold" if i in strong else None)
        ax.set_title(f"{panel_title} — total {total:,}")
        ax.set_xlabel(f"{unit}{' (log scale)' if log else ''}")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    for label in axes[0].get_yticklabels():
        label.set_parse_math(False)
    axes[0].invert_yaxis()
    fig.suptitle(
        title
        or f"Which layers to reduce first: coloured bars hold ≥ {100 * cover:.0f} % of the parameters / operations",
        parse_math=False,
    )
    return fig


def largest_covering(values: Sequence[int], cover: float = 0.75) -> set[int]:
    """Indices of the fewest largest values whose sum reaches ``cover`` of the total."""
    total = sum(values)
    out: set[int] = set()
    acc = 0
    for i in sorted(range(len(values)), key=lambda i: -values[i]):
        if total <= 0 or acc >= cover * total:
            break
        out.add(i)
        acc += values[i]
    return out


def layer_plot(layers: Sequence[Any], fmt: PlotFormat = "png", title: str | None = None) -> bytes:
    """PNG or SVG bytes of :func:`layer_figure`."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"unknown plot format '{fmt}'; valid formats: png, svg")
    return render_figure(layer_figure(layers, title=title), fmt)
