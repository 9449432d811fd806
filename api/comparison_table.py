"""The comparison table: the baseline row first, then every variant, with ratios against the baseline."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlmodel import Session

from api.schemas import as_utc
from compress.latency_conditions import LatencyConditions
from compress.measure import speed_figure
from compress.result_columns import COMPARISON_COLUMNS, FRONT, RESULT_COLUMNS
from store.tables import BASELINE_TECHNIQUE, ResultRow

COLUMNS = COMPARISON_COLUMNS
CSV_COLUMNS = (*COLUMNS, FRONT.name)
"""What /comparison serves: the declared columns, then the Pareto flag (so the column order only grows at the
end of the declared ones)."""


def _ratio(value: int | None, base: int | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 6)


def compact_json(value: Any) -> str:
    return json.dumps(value if value is not None else {}, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


_SHOWN = tuple(c for c in RESULT_COLUMNS if c.in_comparison)
_FETCHED = tuple(
    dict.fromkeys([c.name for c in _SHOWN if c.origin in ("measurement", "variant", "record")] + ["latency_conditions"])
)
"""The result_rows columns the table is made of (the ratios are computed): only these are loaded, not the
per-layer table, notes, extra and recipe JSON of every row, which the table does not show."""


def _select_columns() -> Select:
    table = ResultRow.__table__
    return select(*(table.c[name] for name in _FETCHED))


def comparison_rows(session: Session, base_model_id: str, include_trials: bool) -> list[dict[str, Any]]:
    """One dict per row, keys in COLUMNS order; the latest baseline row of the model comes first."""
    t = ResultRow.__table__.c
    baseline = (
        session.connection()
        .execute(
            _select_columns()
            .where(t.base_model_id == base_model_id, t.technique == BASELINE_TECHNIQUE)
            .order_by(t.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    stmt = _select_columns().where(t.base_model_id == base_model_id, t.technique != BASELINE_TECHNIQUE)
    if not include_trials:
        stmt = stmt.where(t.trial.is_(False))
    variants = session.connection().execute(stmt.order_by(t.job_id, t.row_index)).mappings().all()
    rows = ([baseline] if baseline else []) + list(variants)
    return [_served(r, baseline) for r in rows]


def _served(r: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> dict[str, Any]:
    """One stored row as /comparison serves it: JSON as compact text, times in UTC ISO, ratios to the baseline."""
    out: dict[str, Any] = {}
    speed = latency_comparison(r, baseline)
    for c in _SHOWN:
        if c.origin == "speedup":
            out[c.name] = speed[c.name]
        elif c.ratio_of is not None:
            out[c.name] = _ratio(r[c.ratio_of], baseline[c.ratio_of] if baseline else None)
        elif c.is_json:
            out[c.name] = compact_json(r[c.name])
        elif c.type is datetime:
            created = as_utc(r[c.name])
            out[c.name] = created.isoformat() if created else None
        else:
            out[c.name] = r[c.name]
    return out


def latency_comparison(r: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row's speedups over the baseline, and a note when they are empty or not from one measuring session.

    A speedup is only given between latencies measured under the same conditions (threads, PyTorch, CPU and its
    int8 instructions, host); otherwise it is empty and ``latency_note`` says which conditions differ (a retime
    measures them together).
    """
    out: dict[str, Any] = {"speedup_bs1": None, "speedup_bs64": None, "latency_note": None}
    if baseline is None:
        return out
    if r is baseline:
        return {**out, **{f"speedup_bs{bs}": 1.0 for bs in (1, 64) if r.get(f"latency_ms_bs{bs}")}}
    mine, theirs = _conditions(r.get("latency_conditions")), _conditions(baseline.get("latency_conditions"))
    if mine is None or theirs is None:
        out["latency_note"] = "no recorded latency conditions: not compared with the baseline (retime the model)"
        return out
    differ = mine.differences(theirs)
    if differ:
        shown = "; ".join(f"{k} {a} vs {b}" for k, (a, b) in differ.items())
        out["latency_note"] = f"measured under other conditions than the baseline ({shown}): retime the model"
        return out
    for bs in (1, 64):
        if r.get(f"latency_ms_bs{bs}") and baseline.get(f"latency_ms_bs{bs}"):
            quartile = bool(r.get(f"latency_ms_bs{bs}_p25") and baseline.get(f"latency_ms_bs{bs}_p25"))
            out[f"speedup_bs{bs}"] = round(_speed(baseline, bs, quartile) / _speed(r, bs, quartile), 4)
    if mine.session_id is None or mine.session_id != theirs.session_id:
        out["latency_note"] = (
            "same conditions as the baseline, timed in separate sessions (a retime times them together)"
        )
    return out


def _speed(row: Mapping[str, Any], bs: int, quartile: bool) -> float:
    """The figure a speedup divides (:func:`compress.measure.speed_figure`): the lower quartile when both rows
    have one, else the medians (never one of each)."""
    return float(speed_figure(row.get(f"latency_ms_bs{bs}_p25") if quartile else None, row[f"latency_ms_bs{bs}"]))


LATENCY_FIGURES = {
    "latency_ms_bs1": "speedup_bs1",
    "latency_ms_bs64": "speedup_bs64",
    "ort_latency_ms_bs1": "speedup_bs1",
    "ort_latency_ms_bs64": "speedup_bs64",
}
"""Each latency figure and the speedup that says whether it was measured like the baseline's (the onnxruntime
figures are timed with the eager ones, under the same conditions)."""


def for_decisions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of served rows for the front, the recommendation and the plots: a latency that cannot be compared
    with the baseline's (no speedup: other conditions, or none recorded) is left out (None), never mixed."""
    out = []
    for row in rows:
        blank = {
            k: None
            for k, speedup in LATENCY_FIGURES.items()
            if row.get("technique") != BASELINE_TECHNIQUE and row.get(k) is not None and row.get(speedup) is None
        }
        out.append({**row, **blank})
    return out


def _conditions(value: Any) -> LatencyConditions | None:
    if not isinstance(value, dict):
        return None
    try:
        return LatencyConditions.model_validate(value)
    except ValueError:
        return None


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    """One header row, no index column; empty cells for missing values, booleans as true/false."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for c in columns:
            v = row[c]
            cells.append("" if v is None else ("true" if v is True else "false" if v is False else v))
        writer.writerow(cells)
    return buf.getvalue()
