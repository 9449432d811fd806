"""Jobs: submit, watch, list, cancel, download the stored model."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.responses import FileResponse, JSONResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.database import DatabaseDep
from api.deps import EnqueuerDep, SettingsDep
from api.job_service import (
    cancel_job,
    check_steps_on_model,
    create_answered_job,
    create_compress_job,
    get_job,
    job_out,
    job_rows,
    list_jobs,
    require_base_model,
    succeeded_twin,
    validate_job_steps,
)
from api.request_params import IdempotencyKeyHeader
from api.routers.submission import submit_job
from api.schemas import JobCreate, JobOut, JobPage, JobStatus
from compress.datasets import DatasetError, load_dataset
from compress.export_onnx import ExportError, OnnxExport
from store.artifacts import ArtifactStore
from store.data_roots import DataRootError, resolve_dataset_spec
from store.onnx_exports import calibration_for, export_stored, onnx_path
from store.settings import Settings
from store.tables import BASELINE_TECHNIQUE, JOB_SUCCEEDED, BaseModelRow, Job, ResultRow

router = APIRouter(prefix="/jobs", tags=["jobs"])

MAX_ID = 2**31 - 1
"""Ids and offsets fit PostgreSQL's integer columns; a larger one is a 422, not a database error."""
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="GET /jobs lists them.")]
ONNX_ROUTE_HEADER = "X-Netreduce-Onnx-Route"
"""On an ONNX download: the route that made it (fp32, ort-dynamic, ort-static-qdq), also for rows whose notes
predate exports."""


@router.post("", status_code=202, response_model=JobOut, responses={404: {"description": "Unknown base model"}})
async def post_job(
    req: JobCreate,
    db: DatabaseDep,
    settings: SettingsDep,
    enqueue: EnqueuerDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut:
    """Queue one technique or a chain on a base model. The row is committed before its id is queued.

    A recipe that already succeeded on this base model is answered from the table (202, status 'succeeded',
    ``notes.answered_by_job``, its rows), unless ``rerun`` is true."""
    steps = validate_job_steps(req.as_steps(), single=req.steps is None)

    def make(session: Session) -> Job:
        check_steps_on_model(require_base_model(session, req.base_model_id), steps, single=req.steps is None)
        twin = None if req.rerun else succeeded_twin(session, req.base_model_id, steps)
        if twin is not None:
            return create_answered_job(session, twin, steps)
        return create_compress_job(session, req.base_model_id, steps, settings.max_attempts)

    payload = req.model_dump(mode="json", exclude_none=True)
    return await submit_job(db, enqueue, response, "jobs", idempotency_key, payload, make)


@router.get("", response_model=JobPage)
async def get_jobs(
    db: DatabaseDep,
    settings: SettingsDep,
    status: JobStatus | None = None,
    base_model_id: str | None = Query(default=None, max_length=64),
    technique: str | None = Query(default=None, max_length=100),
    kind: Literal["train", "compress"] | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=MAX_ID),
) -> JobPage:
    """Newest first; filter by status, base model, technique (a chain matches any of its steps), kind."""
    limit = min(limit, settings.page_limit_max)

    def page(session: Session) -> JobPage:
        total, jobs = list_jobs(session, status, base_model_id, technique, kind, limit, offset)
        return JobPage(total=total, limit=limit, offset=offset, items=[job_out(j) for j in jobs])

    return await db.run(page)


@router.get("/{job_id}", response_model=JobOut)
async def get_job_detail(job_id: JobId, db: DatabaseDep) -> JobOut:
    """Status, progress (0-1), stage, timestamps, error, and the result rows once it has succeeded."""
    return await db.run(lambda session: job_out(get_job(session, job_id), job_rows(session, job_id)))


@router.delete("/{job_id}", response_model=JobOut, responses={202: {"model": JobOut}, 409: {}})
async def delete_job(job_id: JobId, db: DatabaseDep) -> JSONResponse:
    """Cancel: a queued job never starts (200); a running one stops at its next progress check (202);
    a finished one answers 409."""

    def cancel(session: Session) -> tuple[int, JobOut]:
        code, job = cancel_job(session, job_id)
        return code, job_out(job)

    code, job = await db.run(cancel, write=True)
    return JSONResponse(job.model_dump(mode="json"), status_code=code)


@router.get(
    "/{job_id}/artifact",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "headers": {
                ONNX_ROUTE_HEADER: {
                    "description": "format=onnx: fp32, ort-dynamic or ort-static-qdq",
                    "schema": {"type": "string"},
                }
            },
        },
        409: {"description": "The job has not succeeded"},
        422: {"description": "format=onnx: the variant cannot be exported (the detail says why)"},
    },
)
async def get_artifact(
    job_id: JobId,
    db: DatabaseDep,
    settings: SettingsDep,
    row_index: int | None = Query(default=None, ge=0, le=MAX_ID),
    format: Literal["safetensors", "onnx"] = Query(
        default="safetensors",
        description="safetensors: weights + the JSON layer spec (netreduce rebuilds it); onnx: opset 17, dynamic "
        "batch, runs in onnxruntime (int8 variants quantized by onnxruntime's static QDQ quantizer on the same "
        "calibration samples, sparse ones dense). Made once and kept: the same bytes on every download.",
    ),
) -> FileResponse:
    """The stored model of a finished job (the kept variant, or ``row_index``'s), never a pickle."""
    row, base = await db.run(lambda session: artifact_row(session, job_id, row_index))
    store = ArtifactStore(settings.artifact_dir)
    path = store.path(row.artifact_path or "")
    if not path.is_file():
        raise HTTPException(404, detail=f"the model file of job {job_id} row {row.row_index} is missing")
    name = f"job-{job_id}-row-{row.row_index}"
    if format == "onnx":
        try:
            export = await run_in_threadpool(onnx_for_row, store, row, base, settings)
        except (ExportError, DatasetError, DataRootError) as exc:
            detail = f"job {job_id} row {row.row_index} cannot be exported to ONNX: {exc}"
            raise HTTPException(422, detail=detail) from None
        return FileResponse(
            onnx_path(store, row.artifact_path or ""),
            media_type="application/octet-stream",
            filename=f"{name}.onnx",
            headers={ONNX_ROUTE_HEADER: str(export.info.get("route", ""))},
        )
    return FileResponse(path, media_type="application/octet-stream", filename=f"{name}.safetensors")


def artifact_row(session: Session, job_id: int, row_index: int | None) -> tuple[ResultRow, BaseModelRow]:
    job = get_job(session, job_id)
    if job.status != JOB_SUCCEEDED:
        raise HTTPException(409, detail=f"job {job_id} is '{job.status}'; its model is stored once it has succeeded")
    rows = [r for r in job_rows(session, job_id) if r.artifact_path]
    if row_index is not None:
        rows = [r for r in rows if r.row_index == row_index]
    else:
        rows.sort(key=lambda r: (r.technique == BASELINE_TECHNIQUE, r.row_index))
    if not rows:
        which = f"row {row_index} of job {job_id}" if row_index is not None else f"job {job_id}"
        raise HTTPException(404, detail=f"{which} has no stored model (search trials are not stored)")
    return rows[0], require_base_model(session, job.base_model_id)


def onnx_for_row(store: ArtifactStore, row: ResultRow, base: BaseModelRow, settings: Settings) -> OnnxExport:
    """Make (once) and keep the row's ONNX export; an int8 row is calibrated on the samples it was made with
    (loading them may fail: DatasetError / DataRootError, like an ExportError a reason the export cannot be)."""
    n, seed = calibration_for(row.recipe or [], row.seed, settings.calibration_samples)

    def calibration() -> torch.Tensor:
        spec = resolve_dataset_spec(base.dataset, settings.data_roots)
        data = load_dataset(
            spec,
            root=settings.data_root,
            allow_download=settings.allow_download,
            seed=int((base.training or {}).get("seed", 0)),
        )
        return data.calibration_subset(n, seed)

    return export_stored(store, row.artifact_path or "", calibration)
