"""From table to decision: recommendation, trade-off and per-layer plots, and the report of a base model."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.decision_service import (
    PLOT_MEDIA_TYPES,
    REPORT_MEDIA_TYPES,
    BudgetQuery,
    ObjectivesQuery,
    PlotFormat,
    PriorityQuery,
    XAxis,
    objectives_or_422,
    recommendation_for,
    render_comparison_report,
    render_layers,
    render_tradeoff,
    rows_with_front,
)
from api.deps import SessionDep
from api.job_service import require_base_model
from compress.recommend import Priority, Recommendation

router = APIRouter(tags=["decision"])

ModelIdQuery = Query(max_length=64, description="GET /models lists them.", examples=["digits-cnn"])
TrialsQuery = Query(default=False, description="Let search trials take part (they are left out by default).")
XQuery = Query(default="bytes", description="x axis (log scale): bytes, ops or latency (ms per batch of 64).")


@router.get("/recommendation", response_model=Recommendation)
def get_recommendation(
    session: SessionDep,
    base_model_id: str = ModelIdQuery,
    max_accuracy_drop: float = BudgetQuery,
    priority: Priority = PriorityQuery,
    include_trials: bool = TrialsQuery,
    objectives: str = ObjectivesQuery,
) -> Recommendation:
    """The row to keep within the accuracy budget, ranked by the priority, and why: the constraint, the
    excluded rows with reasons, the rows it dominates, and the runner-up with the trade-off between them.
    A budget no row meets answers 200 with ``chosen: null`` and a message saying what to relax."""
    objs = objectives_or_422(objectives)
    rows = rows_with_front(session, base_model_id, include_trials, objs)
    return recommendation_for(rows, max_accuracy_drop, priority, include_trials, objs)


def _plot_response(body: bytes, fmt: PlotFormat, filename: str) -> Response:
    return Response(
        body, media_type=PLOT_MEDIA_TYPES[fmt], headers={"Content-Disposition": f'inline; filename="{filename}"'}
    )


def _tradeoff(session: SessionDep, base_model_id: str, x: XAxis, include_trials: bool, fmt: PlotFormat) -> Response:
    rows = rows_with_front(session, base_model_id, include_trials)
    return _plot_response(render_tradeoff(rows, x, fmt, include_trials), fmt, f"tradeoff-{base_model_id}-{x}.{fmt}")


_PNG = {200: {"content": {"image/png": {}}, "description": "PNG image"}}
_SVG = {200: {"content": {"image/svg+xml": {}}, "description": "SVG image"}}


@router.get("/comparison/plot.png", response_class=Response, responses=_PNG)
def tradeoff_png(
    session: SessionDep, base_model_id: str = ModelIdQuery, x: XAxis = XQuery, include_trials: bool = TrialsQuery
) -> Response:
    """Accuracy against size, operations or latency (log x), the front as a step line, points labelled."""
    return _tradeoff(session, base_model_id, x, include_trials, "png")


@router.get("/comparison/plot.svg", response_class=Response, responses=_SVG)
def tradeoff_svg(
    session: SessionDep, base_model_id: str = ModelIdQuery, x: XAxis = XQuery, include_trials: bool = TrialsQuery
) -> Response:
    """The trade-off plot as SVG (text kept as text)."""
    return _tradeoff(session, base_model_id, x, include_trials, "svg")


@router.get("/models/{model_id}/layers.png", response_class=Response, responses={**_PNG, 409: {}}, tags=["models"])
def layers_png(model_id: str, session: SessionDep) -> Response:
    """Parameters and MACs per layer of a trained base model: the coloured bars are the layers to reduce first."""
    return _plot_response(
        render_layers(session, require_base_model(session, model_id), "png"), "png", f"layers-{model_id}.png"
    )


@router.get("/models/{model_id}/layers.svg", response_class=Response, responses={**_SVG, 409: {}}, tags=["models"])
def layers_svg(model_id: str, session: SessionDep) -> Response:
    """The per-layer bar chart as SVG."""
    return _plot_response(
        render_layers(session, require_base_model(session, model_id), "svg"), "svg", f"layers-{model_id}.svg"
    )


@router.get(
    "/comparison/report",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}, "text/html": {}}, "description": "the report"}},
)
def comparison_report(
    session: SessionDep,
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
    base = require_base_model(session, base_model_id)
    rows = rows_with_front(session, base_model_id, include_trials, objs)
    rec = recommendation_for(rows, max_accuracy_drop, priority, include_trials, objs)
    text = render_comparison_report(base, rows, rec, format, x, include_trials, objs)
    return Response(
        text,
        media_type=REPORT_MEDIA_TYPES[format],
        headers={"Content-Disposition": f'inline; filename="report-{base_model_id}.{format}"'},
    )
