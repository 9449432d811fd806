"""A retime job: every stored network of a base model timed again, together, on this worker.

The baseline and every row with a stored artifact (search trials keep none: they are listed as skipped)
are loaded, exported to ONNX where they export, and handed to :func:`compress.retime.retime`, which times
them in interleaved rounds. Each row's latency columns and conditions (with the one session id) are
updated in the same transaction that ends the job; the job's notes log the interleaved order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from compress.export_onnx import ExportError
from compress.persistence import load_model
from compress.retime import RetimeResult, ToTime, retime, row_values
from compress.training import Cancelled
from store.onnx_exports import calibration_for, export_stored
from store.tables import BASELINE_TECHNIQUE, MODEL_READY, BaseModelRow, ResultRow
from worker.errors import JobFailed

if TYPE_CHECKING:
    from worker.execution import JobExecution


def rows_to_retime(run: JobExecution, base_id: str) -> tuple[list[ResultRow], list[dict[str, Any]]]:
    """The base model's rows that can be re-timed (the baseline and every stored variant), and the skipped."""
    with Session(run.engine) as session:
        rows = list(
            session.exec(select(ResultRow).where(ResultRow.base_model_id == base_id).order_by(col(ResultRow.id)))
        )
    latest_baseline = max((r.id or 0 for r in rows if r.technique == BASELINE_TECHNIQUE), default=None)
    keep, skipped = [], []
    for r in rows:
        if r.technique == BASELINE_TECHNIQUE:
            if r.id == latest_baseline:
                keep.append(r)
        elif r.artifact_path:
            keep.append(r)
        else:
            skipped.append({"row_id": r.id, "job_id": r.job_id, "label": r.label, "why": "no stored model (trial)"})
    return keep, skipped


def _to_time(run: JobExecution, base: BaseModelRow, row: ResultRow, notes: dict[str, Any]) -> ToTime:
    path = base.artifact_path if row.technique == BASELINE_TECHNIQUE else row.artifact_path
    model, spec = load_model(run.artifacts.path(path or ""))
    model.eval()
    onnx = None
    n, seed = calibration_for(row.recipe or [], row.seed, run.settings.calibration_samples)
    try:
        onnx = export_stored(run.artifacts, path or "", lambda: run.dataset_for(base).calibration_subset(n, seed)).data
    except ExportError as exc:
        notes.setdefault("onnx_skipped", []).append({"row_id": row.id, "why": str(exc)})
    return ToTime(str(row.id), model, tuple(spec.input_shape), onnx)


def run_retime(run: JobExecution, base_id: str) -> None:
    base = _ready_base(run, base_id)
    rows, skipped = rows_to_retime(run, base_id)
    notes: dict[str, Any] = {"skipped": skipped}
    run.reporter.progress(0.02, f"loading {len(rows)} networks", force=True)
    items = [_to_time(run, base, r, notes) for r in rows]
    if not items:
        raise JobFailed(f"base model '{base_id}' has no stored networks to time")
    s = run.settings
    result = retime(
        items,
        rounds=s.retime_rounds,
        runs=s.retime_runs,
        should_stop=lambda: run.reporter.should_cancel(force=True),
        on_round=lambda done, total: run.reporter.progress(0.05 + 0.9 * done / total, f"round {done} of {total}"),
    )
    if result.stopped_early:
        raise Cancelled("cancelled on request")
    updates = {int(key): row_values(fig) for key, fig in result.figures.items()}
    run.lease.succeed(
        [], stage=f"done: {len(updates)} row(s) re-timed", notes={**notes, **_log(result)}, updates=updates
    )


def _ready_base(run: JobExecution, base_id: str) -> BaseModelRow:
    with Session(run.engine) as session:
        base = session.get(BaseModelRow, base_id)
    if base is None or base.status != MODEL_READY or not base.artifact_path:
        raise JobFailed(f"base model '{base_id}' is not trained: nothing to time")
    return base


def _log(result: RetimeResult) -> dict[str, Any]:
    return {
        "session_id": result.session_id,
        "rounds": result.rounds,
        "runs_per_round": result.runs_per_round,
        "order": [[r, int(k)] for r, k in result.order],
        "conditions": next(iter(result.figures.values())).conditions.model_dump(mode="json"),
    }
