"""GET /comparison: one row per variant, baseline first, as JSON or CSV."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response

from api.database import DatabaseDep
from api.decision_service import comparison_body, objectives_or_422
from api.request_params import ObjectivesQuery

router = APIRouter(tags=["comparison"])


@router.get(
    "/comparison",
    responses={200: {"content": {"text/csv": {}, "application/json": {}}, "description": "rows, baseline first"}},
)
async def comparison(
    db: DatabaseDep,
    base_model_id: str = Query(max_length=64, description="GET /models lists them.", examples=["digits-cnn"]),
    format: Literal["json", "csv"] | None = Query(
        default=None, description="Default: JSON, or CSV for Accept: text/csv."
    ),
    include_trials: bool = Query(default=False, description="Also the search trials (trial=true rows)."),
    objectives: str = ObjectivesQuery,
    accept: str | None = Header(default=None),
) -> Response:
    """Columns in this order: label, technique, params, n_params, bytes, file_bytes, macs, flops, ops,
    sparse_macs, accuracy, accuracy_drop, latency_ms_bs1, latency_ms_bs64, size_ratio, ops_ratio, trial,
    job_id, created_at, pareto. ``params`` is compact JSON; size_ratio = bytes / baseline bytes, ops_ratio = ops /
    baseline ops. Search trials are left out unless include_trials=true (and then take part in the front).
    ``pareto``: no other row is at least as good on every objective and better on one."""
    objs = objectives_or_422(objectives)
    as_csv = format == "csv" or (format is None and bool(accept) and "text/csv" in accept)

    content = await db.run(lambda session: comparison_body(session, base_model_id, include_trials, objs, as_csv))
    if as_csv:
        return Response(
            content,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'inline; filename="comparison-{base_model_id}.csv"'},
        )
    return Response(content, media_type="application/json")
