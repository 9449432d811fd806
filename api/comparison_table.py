"""The comparison table: the baseline row first, then every variant, with ratios against the baseline."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sqlalchemy import Select, select
from sqlmodel import Session

from api.schemas import as_utc
from store.tables import BASELINE_TECHNIQUE, ResultRow

COLUMNS = (
    "label",
    "technique",
    "params",
    "n_params",
    "bytes",
    "file_bytes",
    "macs",
    "flops",
    "ops",
    "sparse_macs",
    "accuracy",
    "accuracy_drop",
    "latency_ms_bs1",
    "latency_ms_bs64",
    "size_ratio",
    "ops_ratio",
    "trial",
    "job_id",
    "created_at",
)
CSV_COLUMNS = (*COLUMNS, "pareto")
"""What /comparison serves: the stored columns, then the Pareto flag (so the first CSV order stays a prefix)."""


def _ratio(value: int | None, base: int | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 6)


def compact_json(value: Any) -> str:
    return json.dumps(value if value is not None else {}, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


_FETCHED = tuple(c for c in COLUMNS if c not in ("size_ratio", "ops_ratio"))
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
    base_bytes = baseline["bytes"] if baseline else None
    base_ops = baseline["ops"] if baseline else None
    out = []
    for r in rows:
        created = as_utc(r["created_at"])
        out.append(
            {
                "label": r["label"],
                "technique": r["technique"],
                "params": compact_json(r["params"]),
                "n_params": r["n_params"],
                "bytes": r["bytes"],
                "file_bytes": r["file_bytes"],
                "macs": r["macs"],
                "flops": r["flops"],
                "ops": r["ops"],
                "sparse_macs": r["sparse_macs"],
                "accuracy": r["accuracy"],
                "accuracy_drop": r["accuracy_drop"],
                "latency_ms_bs1": r["latency_ms_bs1"],
                "latency_ms_bs64": r["latency_ms_bs64"],
                "size_ratio": _ratio(r["bytes"], base_bytes),
                "ops_ratio": _ratio(r["ops"], base_ops),
                "trial": r["trial"],
                "job_id": r["job_id"],
                "created_at": created.isoformat() if created else None,
            }
        )
    return out


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
