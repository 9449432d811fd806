"""The dashboard at ``/``: one server-rendered page over the JSON API, kept live by a small script.

Everything it loads is served from here (``/static``): no CDN, it works offline. The first render
already holds the models, jobs, comparison table (front marked) and recommendation; the script then
polls ``/jobs`` and refreshes the table, plot and recommendation when a job finishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlmodel import Session, col, select

from api.database import DatabaseDep
from api.decision_service import DEFAULT_OBJECTIVES_TEXT, recommendation_for, rows_with_front
from api.job_service import job_out, list_jobs
from compress.result_columns import SUMMARY_COLUMNS, columns, format_value
from compress.stats import split_adequacy
from compress.techniques.base import list_techniques
from store.tables import MODEL_READY, PRESET_MODEL_ID, BaseModelRow

API_DIR = Path(__file__).resolve().parents[1]
STATIC_DIR = API_DIR / "static"
templates = Jinja2Templates(directory=API_DIR / "templates")

TABLE_COLUMNS: list[dict[str, str]] = [
    {"key": c.name, "title": c.heading, "kind": c.kind, "help": c.description} for c in columns(SUMMARY_COLUMNS)
]
"""The dashboard's table: a readable subset of /comparison (the CSV has every column), from the declaration."""

router = APIRouter(include_in_schema=False)


def format_cell(value: Any, kind: str) -> str:
    """The same formats as ``fmt`` in dashboard.js, so the first render and the live one agree."""
    return format_value(value, kind)


templates.env.filters["cell"] = format_cell


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _pick_model(models: list[BaseModelRow], wanted: str | None) -> str | None:
    """The one asked for, else the first trained model, else the preset, else the first one."""
    if wanted:
        return wanted
    ready = [m.id for m in models if m.status == MODEL_READY]
    if ready:
        return ready[0]
    ids = [m.id for m in models]
    if PRESET_MODEL_ID in ids:
        return PRESET_MODEL_ID
    return ids[0] if ids else None


@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request, db: DatabaseDep, model: str | None = Query(default=None, max_length=64)
) -> HTMLResponse:
    context = await db.run(lambda session: dashboard_context(session, model))
    return templates.TemplateResponse(request, "dashboard.html", context)


def trials_by_job(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """A search's trials, by job: shown under the job's chosen row (they take no part in the front)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("trial"):
            out.setdefault(int(r["job_id"]), []).append({**r, "pareto": False})
    return out


def split_warning(rows: list[dict[str, Any]], budget: float) -> str | None:
    """Whether the evaluation split is too small to resolve the accuracy budget (with the samples it would take)."""
    base = next((r for r in rows if r.get("technique") == "baseline"), None)
    if base is None or not base.get("eval_samples"):
        return None
    adequacy = split_adequacy(int(base["eval_samples"]), budget, base.get("accuracy"))
    return adequacy.message if adequacy.too_small else None


def dashboard_context(session: Session, model: str | None) -> dict[str, Any]:
    models = list(session.exec(select(BaseModelRow).order_by(col(BaseModelRow.created_at))))
    selected = _pick_model(models, model)
    selected_model = next((m for m in models if m.id == selected), None)
    known = selected_model is not None
    rows: list[dict[str, Any]] = []
    trials: dict[int, list[dict[str, Any]]] = {}
    rec = None
    if known:
        assert selected is not None
        rows = rows_with_front(session, selected, include_trials=False)
        if rows:
            rec = recommendation_for(rows, 1.0, "size", False, DEFAULT_OBJECTIVES_TEXT.split(","))
        trials = trials_by_job(rows_with_front(session, selected, include_trials=True))
    _, jobs = list_jobs(session, None, None, None, None, 15, 0)
    context = {
        "models": models,
        "selected": selected,
        "selected_model": selected_model,
        "known": known,
        "rows": rows,
        "columns": TABLE_COLUMNS,
        "rec": rec,
        "trials": trials,
        "split_warning": split_warning(rows, 1.0),
        "jobs": [job_out(j).model_dump(mode="json") for j in jobs],
        "techniques": [t.name for t in list_techniques()],
        "objectives": DEFAULT_OBJECTIVES_TEXT,
    }
    return context
