"""From table to decision: recommendation, trade-off and per-layer plots, and the report of a base model."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.database import Database, DatabaseDep
from api.decision_service import (
    PLOT_MEDIA_TYPES,
    REPORT_MEDIA_TYPES,
    PlotFormat,
    XAxis,
    objectives_or_422,
    recommendation_for,
    render_comparison_report,
    render_layers,
    render_tradeoff,
    rows_with_front,
)
from api.job_service import require_base_model
from api.request_params import BudgetQuery, ObjectivesQuery, PriorityQuery
from api.schemas import ModelId
from compress.recommend import Priority, Recommendation
from store.tables import BaseModelRow

router = APIRouter(tags=["decision"])

ModelIdQuery = Query(max_length=64, description="GET /models lists them.", examples=["digits-cnn"])
TrialsQuery = Query(default=False, description="Let search trials take part (they are left out by default).")
XQuery = Query(default="bytes", description="x axis (log scale): bytes, ops or latency (ms per batch of 64).")


@router.get("/recommendation", response_model=Recommendation)
async def get_recommendation(
    db: DatabaseDep,
    base_model_id: str = ModelIdQuery,
    max_accuracy_drop: float = BudgetQuery,
    priority: Priority = PriorityQuery,
    include_trials: bool = TrialsQuery,
    objectives: str = ObjectivesQuery,
    no_significant_drop: bool = Query(
        default=False,
        description="Also exclude rows whose accuracy is significantly below the baseline's (drop_significant: "
        "exact paired McNemar test on the same evaluation samples), whatever the budget.",
    ),
) -> Recommendation:
    """The row to keep within the accuracy budget, ranked by the priority, and why: the constraint, the
    excluded rows with reasons, the rows it dominates, and the runner-up with the trade-off between them.
    A budget no row meets answers 200 with ``chosen: null`` and a message saying what to relax."""
    objs = objectives_or_422(objectives)
    rows = await db.run(lambda session: rows_with_front(session, base_model_id, include_trials, objs))
    return await run_in_threadpool(
        recommendation_for, rows, max_accuracy_drop, priority, include_trials, objs, no_significant_drop
    )


def _plot_response(body: bytes, fmt: PlotFormat, filename: str) -> Response:
    return Response(
        body, media_type=PLOT_MEDIA_TYPES[fmt], headers={"Content-Disposition": f'inline; filename="{filename}"'}
    )


async def _tradeoff(db: Database, base_model_id: str, x: XAxis, include_trials: bool, fmt: PlotFormat) -> Response:
    rows = await db.run(lambda session: rows_with_front(session, base_model_id, include_trials))
    body = await run_in_threadpool(render_tradeoff, rows, x, fmt, include_trials)
    return _plot_response(body, fmt, f"tradeoff-{base_model_id}-{x}.{fmt}")


async def _layers(db: Database, model_id: str, fmt: PlotFormat) -> Response:
    body = await db.run(lambda session: render_layers(session, require_base_model(session, model_id), fmt))
    return _plot_response(body, fmt, f"layers-{model_id}.{fmt}")


_PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}
_SVG = {200: {"content": {"image/svg+xml": {}}, "description": "SVG image"}}


@router.get("/comparison/plot.png", response_class=Response, responses=_PNG)
async def tradeoff_png(
    db: DatabaseDep, base_model_id: str = ModelIdQuery, x: XAxis = XQuery, include_trials: bool = TrialsQuery
) -> Response:
    """Accuracy against size, operations or latency (log x), the front as a step line, points labelled."""
    return await _tradeoff(db, base_model_id, x, include_trials, "png")


@router.get("/comparison/plot.svg", response_class=Response, responses=_SVG)
async def tradeoff_svg(
    db: DatabaseDep, base_model_id: str = ModelIdQuery, x: XAxis = XQuery, include_trials: bool = TrialsQuery
) -> Response:
    """The trade-off plot as SVG (text kept as text)."""
    return await _tradeoff(db, base_model_id, x, include_trials, "svg")


@router.get("/models/{model_id}/layers.png", response_class=Response, responses={**_PNG, 409: {}}, tags=["models"])
async def layers_png(model_id: ModelId, db: DatabaseDep) -> Response:
    """Parameters and MACs per layer of a trained base model: the coloured bars are the layers to reduce first."""
    return await _layers(db, model_id, "png")


@router.get("/models/{model_id}/layers.svg", response_class=Response, responses={**_SVG, 409: {}}, tags=["models"])
async def layers_svg(model_id: ModelId, db: DatabaseDep) -> Response:
    """The per-layer bar chart as SVG."""
    return await _layers(db, model_id, "svg")


@router.get(
    "/comparison/report",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}, "text/html": {}}, "description": "the report"}},
)
async def comparison_report(
    db: DatabaseDep,
    base_model_id: str = ModelIdQuery,
    format: Literal["md", "html"] = Query(default="md", description="Markdown, or a self-contained HTML page."),
    max_accuracy_drop: float = BudgetQuery,
    priority: Priority = PriorityQuery,
    x: XAxis = XQuery,
    include_trials: bool = TrialsQuery,
    objectives: str = ObjectivesQuery,
) -> Response:
    """Table (front marked), recommendation with its reasoning, and the trade-off plot in one document a
    student can paste into a course report. Markdown embeds the plot as an SVG data URI; HTML inlines it."""
    objs = objectives_or_422(objectives)

    def read(session: Session) -> tuple[BaseModelRow, list[dict[str, Any]]]:
        return require_base_model(session, base_model_id), rows_with_front(session, base_model_id, include_trials, objs)

    base, rows = await db.run(read)

    def render() -> str:
        rec = recommendation_for(rows, max_accuracy_drop, priority, include_trials, objs)
        return render_comparison_report(base, rows, rec, format, x, include_trials, objs)

    text = await run_in_threadpool(render)
    return Response(
        text,
        media_type=REPORT_MEDIA_TYPES[format],
        headers={"Content-Disposition": f'inline; filename="report-{base_model_id}.{format}"'},
    )
