"""From table to decision: the Pareto front, the recommendation, plots and the report of one base model.

Thin glue between the comparison rows in the database and the pure ``compress`` decision layer
(``compress.pareto``, ``compress.recommend``, ``compress.plots``, ``compress.report``).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from sqlalchemy import Select, bindparam, func, select
from sqlmodel import Session

from api.comparison_table import CSV_COLUMNS, comparison_rows, for_decisions, to_csv
from api.job_service import require_base_model
from api.service_errors import Conflict, unprocessable
from compress.pareto import (
    DEFAULT_OBJECTIVES,
    OBJECTIVE_ALIASES,
    OBJECTIVE_DIRECTIONS,
    Objective,
    annotate_pareto,
    parse_objectives,
)
from compress.plots import layer_plot, tradeoff_plot
from compress.recommend import Priority, Recommendation, recommend
from compress.report import render_report
from compress.writeup import lab_writeup
from store.results import baseline_row
from store.tables import MODEL_READY, BaseModelRow, ResultRow

PlotFormat = Literal["png", "svg"]
XAxis = Literal["bytes", "ops", "latency", "ort-latency"]

PLOT_MEDIA_TYPES: dict[str, str] = {"png": "image/png", "svg": "image/svg+xml"}
REPORT_MEDIA_TYPES: dict[str, str] = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8"}

DEFAULT_OBJECTIVES_TEXT = ",".join(o.partition(":")[0] for o in DEFAULT_OBJECTIVES)

_plot_lock = threading.Lock()
"""matplotlib's text and font caches are shared by every figure: draw one plot at a time."""


def objectives_or_422(objectives: str) -> tuple[Objective, ...]:
    """Parse the ``objectives`` query parameter; 422 listing the valid names when it is wrong."""
    try:
        return parse_objectives(objectives)
    except ValueError as exc:
        raise unprocessable(
            ["query", "objectives"],
            str(exc),
            "invalid_objectives",
            valid=[*OBJECTIVE_DIRECTIONS, *OBJECTIVE_ALIASES],
        ) from None


T = TypeVar("T")

_TABLE_CACHE_SIZE = 64
_table_cache: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = OrderedDict()
_table_cache_lock = threading.Lock()


def _fingerprint_statement() -> Select[Any]:
    t, m = ResultRow.__table__.c, BaseModelRow.__table__.c
    model_id = bindparam("base_model_id")
    known = select(m.id).where(m.id == model_id).scalar_subquery()
    changed = select(m.updated_at).where(m.id == model_id).scalar_subquery()
    newest = select(t.created_at).where(t.base_model_id == model_id).order_by(t.id.desc()).limit(1)
    return select(known, func.count(), func.max(t.id), newest.scalar_subquery(), changed).where(
        t.base_model_id == model_id
    )


_FINGERPRINT = _fingerprint_statement()


def table_fingerprint(session: Session, base_model_id: str) -> tuple[Any, ...]:
    """Changes whenever the model's result rows do; 404 (listing the models) when the base model does not
    exist. Rows are inserted (their count and largest id change; the newest row's ``created_at`` also tells a
    database recreated with the same ids apart) or updated in place by a retime, which stamps the base model's
    ``updated_at`` in the same transaction (:meth:`store.jobs.Lease.succeed`). One query, answered from the
    primary key of base_models and the index ix_result_rows_base_model_id (~0.1 ms for 500 rows)."""
    known, *fingerprint = session.connection().execute(_FINGERPRINT, {"base_model_id": base_model_id}).one()
    if known is None:
        require_base_model(session, base_model_id)  # raises the 404 (unless the model was created meanwhile)
    return tuple(fingerprint)


def table_cached(session: Session, base_model_id: str, key: tuple[Any, ...], build: Callable[[], T]) -> T:
    """``build()``, kept per (database, base model, ``key``) until the model's result rows change (see
    :func:`table_fingerprint`, read before building: a value is never older than its fingerprint); 404
    when the base model does not exist. The value is shared between requests: never mutate it."""
    bind = session.get_bind()
    full_key = (id(bind), str(bind.url), base_model_id, *key)
    fingerprint = table_fingerprint(session, base_model_id)
    with _table_cache_lock:
        hit = _table_cache.get(full_key)
        if hit is not None and hit[0] == fingerprint:
            _table_cache.move_to_end(full_key)
            return hit[1]
    value = build()
    with _table_cache_lock:
        _table_cache[full_key] = (fingerprint, value)
        _table_cache.move_to_end(full_key)
        while len(_table_cache) > _TABLE_CACHE_SIZE:
            _table_cache.popitem(last=False)
    return value


def rows_with_front(
    session: Session,
    base_model_id: str,
    include_trials: bool,
    objectives: Sequence[Objective] | Sequence[str] = DEFAULT_OBJECTIVES,
) -> list[dict[str, Any]]:
    """The comparison rows of a base model (404 if unknown), each with ``pareto: bool`` appended.
    Cached until the model's rows change (:func:`table_cached`); the caller gets its own copies."""
    objs = parse_objectives(objectives)

    def build() -> list[dict[str, Any]]:
        rows = comparison_rows(session, base_model_id, include_trials)
        judged = annotate_pareto(for_decisions(rows), objs, include_trials)  # latencies compared only when comparable
        return [{**row, "pareto": j["pareto"]} for row, j in zip(rows, judged, strict=True)]

    rows = table_cached(session, base_model_id, ("rows", include_trials, objs), build)
    return [dict(r) for r in rows]


def comparison_body(
    session: Session, base_model_id: str, include_trials: bool, objectives: tuple[Objective, ...], as_csv: bool
) -> bytes:
    """The /comparison body, JSON or CSV, rendered once and kept until the model's result rows change
    (:func:`table_cached`: one query on a hit); 404 when the base model does not exist."""

    def build() -> bytes:
        rows = rows_with_front(session, base_model_id, include_trials, objectives)
        if as_csv:
            return to_csv(rows, CSV_COLUMNS).encode("utf-8")
        # the values are plain str/int/float/bool/None: the bytes Starlette's JSONResponse renders
        return json.dumps(rows, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()

    return table_cached(session, base_model_id, ("comparison", include_trials, objectives, as_csv), build)


def recommendation_for(
    rows: Sequence[dict[str, Any]],
    max_accuracy_drop: float,
    priority: Priority,
    include_trials: bool,
    objectives: Sequence[Objective],
    no_significant_drop: bool = False,
) -> Recommendation:
    """The recommended row; a budget that excludes every row is an answer (``chosen`` None), not an error."""
    try:
        return recommend(
            for_decisions(list(rows)),
            max_accuracy_drop,
            priority,
            include_trials=include_trials,
            objectives=objectives,
            no_significant_drop=no_significant_drop,
        )
    except ValueError as exc:  # a table without its baseline row: nothing to measure against
        raise Conflict(f"cannot recommend: {exc}") from None


def render_tradeoff(rows: Sequence[dict[str, Any]], x: XAxis, fmt: PlotFormat, include_trials: bool) -> bytes:
    with _plot_lock:
        return tradeoff_plot(for_decisions(list(rows)), x=x, fmt=fmt, include_trials=include_trials)


def render_layers(session: Session, base: BaseModelRow, fmt: PlotFormat) -> bytes:
    """Per-layer parameters and MACs of a trained base model (from its baseline row); 409 while it is not trained."""
    baseline = baseline_row(session, base.id) if base.status == MODEL_READY else None
    layers = baseline.layers if baseline else None
    if not layers:
        raise Conflict(
            f"base model '{base.id}' has no per-layer table yet (status '{base.status}'); "
            "it is measured when the model has been trained",
        )
    with _plot_lock:
        return layer_plot(layers, fmt=fmt, title=f"{base.name}: which layers to reduce first")


def render_comparison_report(
    base: BaseModelRow,
    rows: Sequence[dict[str, Any]],
    recommendation: Recommendation,
    fmt: Literal["md", "html"],
    x: XAxis,
    include_trials: bool,
    objectives: Sequence[Objective],
) -> str:
    """The write-up: the conclusion (the row to keep per priority, what is within noise, what each technique
    cost), the rows grouped as the lab groups them, the recommendation asked for, the table and the plot."""
    plot = render_tradeoff(rows, x, "svg", include_trials)
    budget = recommendation.max_accuracy_drop
    per_priority = {
        p: recommendation if p == recommendation.priority else recommendation_for(rows, budget, p, False, objectives)
        for p in ("size", "ops", "latency", "balanced")
    }
    return render_report(
        rows,
        recommendation,
        fmt=fmt,
        plot_svg=plot,
        objectives=objectives,
        include_trials=include_trials,
        title=f"netreduce: which compressed version of '{base.name}' to keep",
        writeup=lab_writeup(rows, per_priority, budget),
    )
