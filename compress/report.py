"""One document for a course report: the comparison table with the front marked, the
recommendation with its reasoning, and the trade-off plot.

Markdown embeds the plot as an SVG data URI (an image, so it survives copy/paste into most
Markdown renderers); HTML is self-contained: inline CSS and inline SVG, no script, no external
asset, so it opens offline and prints as is.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

from compress.pareto import DEFAULT_OBJECTIVES, ObjectivesArg, objective_value, pareto_flags, parse_objectives
from compress.recommend import Recommendation, accuracy_drop, find_baseline
from compress.result_columns import REPORT_COLUMNS, columns, format_value
from compress.writeup import GROUP_COLUMNS, Writeup

ReportFormat = Literal["md", "html"]

_REPORT = columns(REPORT_COLUMNS)
COLUMNS = tuple(c.heading for c in _REPORT)
"""The table's headings, from the one declaration of a result row (``compress.result_columns``)."""
_ALIGN = {"front": "c", "text": "l"}
"""Cell alignment by column kind: the front mark centred, text left, numbers right."""
FRONT_MARK = format_value(True, "front")
_ARROWS = {"max": "↑", "min": "↓"}


def _share(v: float | None, base: float | None) -> float | None:
    return None if v is None or base is None or base <= 0 else v / base


def front_flags(
    rows: Sequence[Mapping[str, Any]], objectives: ObjectivesArg = DEFAULT_OBJECTIVES, include_trials: bool = False
) -> list[bool | None]:
    """The rows' own ``pareto`` flags when every row has one (as served by ``/comparison``, with
    the objectives the caller chose), else :func:`compress.pareto.pareto_flags`."""
    if rows and all("pareto" in r for r in rows):
        return [r["pareto"] for r in rows]
    return pareto_flags(rows, objectives, include_trials)


def table_cells(
    rows: Sequence[Mapping[str, Any]], objectives: ObjectivesArg = DEFAULT_OBJECTIVES, include_trials: bool = False
) -> list[list[str]]:
    """The report table as text cells, one list per row, in ``COLUMNS`` order. Ratios are
    ``variant / baseline`` in %; missing values are an em dash."""
    flags = front_flags(rows, objectives, include_trials)
    bi = find_baseline(rows)
    base = rows[bi] if bi is not None else None
    out = []
    for i, (r, flag) in enumerate(zip(rows, flags, strict=True)):
        values = _report_values(r, base, flag, is_baseline=i == bi)
        out.append([_cell(values[c.name], c.kind) for c in _REPORT])
    return out


def _report_values(
    r: Mapping[str, Any], base: Mapping[str, Any] | None, flag: bool | None, is_baseline: bool
) -> dict[str, Any]:
    """The report's columns of one row, the drop and ratios computed against ``base`` (the row may come
    from ``/comparison`` or straight from the runner, which fills neither)."""

    def value(key: str) -> float | None:
        return objective_value(r, key)

    def base_of(key: str) -> float | None:
        return objective_value(base, key) if base is not None else None

    return {
        "pareto": bool(flag),
        "label": str(r.get("label", "")),
        "technique": str(r.get("technique", "")),
        "accuracy": value("accuracy"),
        "accuracy_drop": accuracy_drop(r, base, is_baseline=is_baseline),
        "bytes": value("bytes"),
        "size_ratio": _share(value("bytes"), base_of("bytes")),
        "ops": value("ops"),
        "ops_ratio": _share(value("ops"), base_of("ops")),
        "latency_ms_bs64": value("latency_ms_bs64"),
        "trial": bool(r.get("trial")),
    }


def _cell(value: Any, kind: str) -> str:
    """As every table formats it, except that the report leaves a false flag blank."""
    if kind == "bool" and not value:
        return ""
    if kind == "int" and value is not None:
        value = round(value)
    return format_value(value, kind)


def _objectives_words(objectives: ObjectivesArg) -> str:
    return ", ".join(f"{o.name} {_ARROWS[o.direction]}" for o in parse_objectives(objectives))


def _svg_body(plot_svg: str | bytes) -> str:
    text = plot_svg.decode("utf-8", errors="replace") if isinstance(plot_svg, bytes) else plot_svg
    start = text.find("<svg")
    if start < 0:
        raise ValueError("plot_svg is not an SVG document (no <svg> element)")
    return text[start:]


def _recommendation_lines(rec: Recommendation | None) -> list[tuple[str, str]]:
    """(heading, text) pairs shared by both formats; text is plain (escaped by the caller)."""
    if rec is None:
        return [("Recommendation", "none computed for this table")]
    out = [
        ("Keep", f"{rec.chosen.get('label')} ({rec.chosen.get('technique')})" if rec.chosen else "nothing qualifies"),
        ("Why", rec.message),
        ("Constraint", rec.constraint),
        ("Priority", f"{rec.priority} — score {rec.score_formula}" if rec.score_formula else rec.priority),
    ]
    if rec.runner_up is not None:
        out.append(("Runner-up", f"{rec.runner_up.label} ({rec.runner_up.technique})"))
    if rec.trade_off is not None:
        out.append(("Trade-off", rec.trade_off.text))
    if rec.chosen is not None:
        out.append(("Dominates", ", ".join(r.label for r in rec.dominates) or "no other row"))
    return out


class _Page(NamedTuple):
    """What both formats render: the table's cells, the chosen row, the recommendation's lines, the plot."""

    title: str
    intro: str
    cells: list[list[str]]
    chosen_i: int | None
    rec_lines: list[tuple[str, str]]
    excluded: Sequence[Any]
    plot_svg: str | bytes | None


def render_report(
    rows: Sequence[Mapping[str, Any]],
    recommendation: Recommendation | None,
    fmt: ReportFormat = "md",
    plot_svg: str | bytes | None = None,
    objectives: ObjectivesArg = DEFAULT_OBJECTIVES,
    include_trials: bool = False,
    title: str = "netreduce: which compressed model to keep",
    writeup: Writeup | None = None,
) -> str:
    """Render the report as Markdown (``md``) or a self-contained HTML page (``html``).

    ``rows``: the comparison table, baseline first. ``★`` marks the Pareto front (the rows' own
    ``pareto`` flags when present, else computed on ``objectives``). ``recommendation``: from
    :func:`compress.recommend.recommend`, its chosen row drawn in bold. ``plot_svg``: e.g.
    ``tradeoff_plot(rows, fmt="svg")``, embedded when given.
    """
    if fmt not in ("md", "html"):
        raise ValueError(f"unknown report format '{fmt}'; valid formats: md, html")
    cells = table_cells(rows, objectives, include_trials)
    chosen_i = recommendation.chosen_ref.index if recommendation and recommendation.chosen_ref else None
    n_front = sum(c[0] == FRONT_MARK for c in cells)
    intro = (
        f"{len(rows)} rows. {FRONT_MARK} = on the Pareto front ({n_front} rows): no other row is at least as good on "
        f"every objective ({_objectives_words(objectives)}) and better on one"
        f"{'' if include_trials else '; search trials take no part'}. Ratios are variant / baseline."
    )
    rec_lines = _recommendation_lines(recommendation)
    excluded = recommendation.excluded if recommendation else []
    page = _Page(title, intro, cells, chosen_i, rec_lines, excluded, plot_svg)
    if fmt == "md":
        text = _markdown(page)
        return text if writeup is None else _insert(text, "## Recommendation", _writeup_md(writeup))
    doc = _html(page)
    return doc if writeup is None else _insert(doc, "<h2>Recommendation</h2>", _writeup_html(writeup))


def _insert(text: str, before: str, block: str) -> str:
    i = text.index(before)
    return text[:i] + block + text[i:]


def _bold_md(text: str) -> str:
    """Escape a sentence for Markdown, keeping its ``**bold**`` spans."""
    return "**".join(_md(part) for part in text.split("**"))


def _writeup_md(w: Writeup) -> str:
    out = ["## Conclusion", ""]
    out += [f"- {_bold_md(line)}" for line in w.conclusion]
    out += ["", "## The lab, technique by technique", ""]
    for group, cells in w.groups:
        out += [f"### {_md(group)}", "", "| " + " | ".join(GROUP_COLUMNS) + " |"]
        out.append("|---|" + "--:|" * (len(GROUP_COLUMNS) - 1))
        out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in cells]
        out.append("")
    return "\n".join(out) + "\n"


def _writeup_html(w: Writeup) -> str:
    e = html.escape
    out = ["<h2>Conclusion</h2>", "<ul>"]
    for line in w.conclusion:
        parts = [e(p) for p in line.split("**")]
        out.append("<li>" + "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts)) + "</li>")
    out += ["</ul>", "<h2>The lab, technique by technique</h2>"]
    for group, cells in w.groups:
        out += [
            f"<h3>{e(group)}</h3>",
            "<table>",
            "<tr>" + "".join(f"<th>{e(c)}</th>" for c in GROUP_COLUMNS) + "</tr>",
        ]
        for row in cells:
            tds = [f'<td class="l">{e(row[0])}</td>', *(f"<td>{e(c)}</td>" for c in row[1:])]
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</table>")
    return "\n".join(out) + "\n"


_MD_SPECIAL = re.compile(r"([\\|*_`\[\]<>#])")


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def _markdown(page: _Page) -> str:
    title, intro, cells, chosen_i, rec_lines, excluded, plot_svg = page
    out = [f"# {_md(title)}", "", "## Recommendation", ""]
    out += [f"- **{head}:** {_md(text)}" for head, text in rec_lines]
    if excluded:
        out += ["", "Excluded rows:", "", "| row | why |", "|---|---|"]
        out += [f"| {_md(e.row.label)} | {_md(e.detail)} |" for e in excluded]
    out += ["", "## Comparison table", "", _md(intro), ""]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "|".join({"c": ":-:", "l": "---"}.get(_ALIGN.get(c.kind, ""), "--:") for c in _REPORT) + "|")
    for i, row in enumerate(cells):
        vals = [_md(v) for v in row]
        if i == chosen_i:
            vals[1] = f"**{vals[1]}** (chosen)"
        out.append("| " + " | ".join(vals) + " |")
    if plot_svg is not None:
        data = base64.b64encode(_svg_body(plot_svg).encode("utf-8")).decode("ascii")
        out += ["", "## Trade-off plot", "", f"![Accuracy trade-off plot](data:image/svg+xml;base64,{data})"]
    return "\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; } td.l { text-align: left; } td.c { text-align: center; color: #b8860b; }
tr.front td { background: #fff9e0; } tr.chosen td { font-weight: bold; background: #e6f4ea; }
dl.rec dt { font-weight: bold; float: left; clear: left; width: 7rem; } dl.rec dd { margin: 0 0 0.4rem 7.5rem; }
figure svg { max-width: 100%; height: auto; }
"""


def _html(page: _Page) -> str:
    title, intro, cells, chosen_i, rec_lines, excluded, plot_svg = page
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
        "<h2>Recommendation</h2>",
        '<dl class="rec">',
    ]
    out += [f"<dt>{e(head)}</dt><dd>{e(text)}</dd>" for head, text in rec_lines]
    out.append("</dl>")
    if excluded:
        out += ["<p>Excluded rows:</p>", "<table>", "<tr><th>row</th><th>why</th></tr>"]
        out += [f'<tr><td class="l">{e(x.row.label)}</td><td class="l">{e(x.detail)}</td></tr>' for x in excluded]
        out.append("</table>")
    out += ["<h2>Comparison table</h2>", f"<p>{e(intro)}</p>", "<table>"]
    out.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in COLUMNS) + "</tr>")
    for i, row in enumerate(cells):
        classes = [c for c, on in (("front", row[0] == FRONT_MARK), ("chosen", i == chosen_i)) if on]
        attr = f' class="{" ".join(classes)}"' if classes else ""
        tds = []
        for col, v in zip(_REPORT, row, strict=True):
            cls = f' class="{_ALIGN[col.kind]}"' if col.kind in _ALIGN else ""
            shown = f"{v} (chosen)" if col.name == "label" and i == chosen_i else v
            tds.append(f"<td{cls}>{e(shown)}</td>")
        out.append(f"<tr{attr}>" + "".join(tds) + "</tr>")
    out.append("</table>")
    if plot_svg is not None:
        out += ["<h2>Trade-off plot</h2>", "<figure>", _svg_body(plot_svg), "</figure>"]
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
