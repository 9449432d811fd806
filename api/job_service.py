"""Jobs: validate a request into steps, create the row, list, cancel."""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from api.schemas import JobOut, RowOut
from api.service_errors import Conflict, InvalidInput, NotFound, unprocessable
from api.spec_limits import resolve_on_meta
from compress.layer_spec import ModelSpec
from compress.runner import (
    JobInputError,
    Step,
    StepLayerError,
    StepProblem,
    StepsInvalid,
    check_steps_against_spec,
    validate_steps,
)
from store import jobs
from store.json_safe import repaired
from store.tables import JOB_SUCCEEDED, MODEL_READY, BaseModelRow, Job, ResultRow, utcnow


def validate_job_steps(steps: list[Step], single: bool) -> list[Step]:
    """The job's steps through the one validator (``compress.runner.validate_steps``); each problem becomes a
    422 entry naming the field and what would be accepted."""
    try:
        validate_steps(steps)
    except StepsInvalid as exc:
        raise InvalidInput([_problem_out(p, single) for p in exc.problems]) from None
    return steps


def _problem_out(p: StepProblem, single: bool) -> dict[str, Any]:
    if p.step is None:
        loc: list[Any] = ["body", "params" if single else "steps"]
    else:
        loc = [*(["body"] if single else ["body", "steps", p.step]), *p.loc]
    out: dict[str, Any] = {"loc": loc, "msg": p.msg, "type": p.type}
    if p.type not in ("invalid_job", "unknown_technique"):
        out["input"] = p.input
    if p.accepted is not None:
        out["accepted"] = p.accepted
    if p.valid is not None:
        out["valid"] = p.valid
    return out


def existing_model_ids(session: Session, limit: int = 50) -> list[str]:
    return list(session.exec(select(BaseModelRow.id).order_by(BaseModelRow.created_at).limit(limit)))


def require_base_model(session: Session, model_id: str) -> BaseModelRow:
    base = session.get(BaseModelRow, model_id)
    if base is None:
        ids = existing_model_ids(session)
        raise NotFound(f"unknown base model '{model_id}'; existing: {', '.join(ids) or 'none'}")
    return base


@functools.lru_cache(maxsize=32)
def _builtin_spec(architecture: str, shape: tuple[int, int, int] | None, num_classes: int | None) -> ModelSpec:
    return resolve_on_meta(architecture, shape, num_classes)  # ~25 ms: once, not on every POST /jobs


def base_spec(base: BaseModelRow) -> ModelSpec | None:
    """The base model's stored spec; the preset (stored before any spec) resolved from its architecture."""
    try:
        if base.spec:
            return ModelSpec.model_validate(base.spec)
        if not isinstance(base.architecture, str):
            return None
        shape = tuple(base.input_shape) if base.input_shape else None
        return _builtin_spec(base.architecture, shape, base.num_classes)  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError, RuntimeError):
        return None  # nothing to check against here; the worker will say what is wrong


def check_steps_on_model(base: BaseModelRow, steps: list[Step], single: bool) -> None:
    """422 when a step names layers the base model does not have (or that its technique cannot use),
    listing the valid ones: known at once, instead of a failed job later. CPU work on the meta device
    (~10-35 ms) only when a step names layers; otherwise a stored spec is just parsed."""
    spec = base_spec(base)
    if spec is None:
        return
    try:
        check_steps_against_spec(steps, spec)
    except StepLayerError as exc:
        loc: list[Any] = ["body"] if single else ["body", "steps", exc.step]
        msg = f"{exc.technique}: {exc.detail}" if single else str(exc)
        raise unprocessable([*loc, "params", exc.field], msg, "unknown_layer", valid=exc.valid) from None
    except JobInputError as exc:
        raise unprocessable(["body", "params" if single else "steps"], str(exc), "invalid_job") from None


def create_compress_job(session: Session, base_model_id: str, steps: list[Step], max_attempts: int) -> Job:
    job = Job(
        kind="compress",
        base_model_id=base_model_id,
        technique=" → ".join(s.technique for s in steps),
        steps=[s.model_dump(mode="json") for s in steps],
        max_attempts=max_attempts,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    session.add(job)
    session.flush()  # the caller commits (with its idempotency key, if any)
    return job


def create_retime_job(session: Session, base_model_id: str, max_attempts: int) -> Job:
    """A job that times every stored network of a trained base model again, together (404 unknown, 409 untrained)."""
    base = require_base_model(session, base_model_id)
    if base.status != MODEL_READY or not base.artifact_path:
        raise Conflict(
            f"base model '{base_model_id}' is '{base.status}': a retime needs a trained model and its stored variants"
        )
    job = Job(
        kind="retime",
        base_model_id=base_model_id,
        technique="retime",
        max_attempts=max_attempts,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    session.add(job)
    session.flush()
    return job


def recipe_key(steps: list[Step] | list[dict[str, Any]]) -> str | None:
    """The recipe as one comparable string: every step's params validated, defaults filled (so ``{}`` and the
    explicit defaults match); None when a stored recipe no longer validates."""
    try:
        resolved = validate_steps([Step.model_validate(s) for s in steps])
    except (JobInputError, ValueError):
        return None
    return json.dumps([[t.name, p.model_dump(mode="json")] for t, p in resolved], sort_keys=True)


def succeeded_twin(session: Session, base_model_id: str, steps: list[Step]) -> Job | None:
    """The latest succeeded job of the same recipe on the same base model (one that ran, not one answered)."""
    key = recipe_key(steps)
    stmt = (
        select(Job)
        .where(
            Job.base_model_id == base_model_id,
            Job.kind == "compress",
            Job.status == JOB_SUCCEEDED,
            Job.technique == " → ".join(s.technique for s in steps),
        )
        .order_by(col(Job.id).desc())
    )
    for job in session.exec(stmt):
        if not (job.notes or {}).get("answered_by_job") and recipe_key(job.steps or []) == key:
            return job
    return None


def create_answered_job(session: Session, twin: Job, steps: list[Step]) -> Job:
    """A job answered from the table: created succeeded, pointing at the job that ran the same recipe."""
    now = utcnow()
    job = Job(
        kind="compress",
        base_model_id=twin.base_model_id,
        technique=twin.technique,
        steps=[s.model_dump(mode="json") for s in steps],
        status=JOB_SUCCEEDED,
        progress=1.0,
        stage=f"answered from job {twin.id}: the same recipe already succeeded ('rerun': true runs it again)",
        notes={"answered_by_job": twin.id},
        created_at=now,
        started_at=now,
        finished_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    return job


ENQUEUE_DEFERRED = "saved; the broker is unreachable, so the reconciler will send it when the broker is back"


def defer_enqueue(session: Session, job_id: int) -> Job:
    """The broker refused the job id: the row stays queued (nothing is lost) and says so in its stage.

    The workers' reconciler re-sends queued jobs nobody claimed (NETREDUCE_REQUEUE_AFTER_S), so the
    client gets its 202 and must not post again (a retry would make a second job).
    """
    jobs.note_deferred(session.connection(), job_id, ENQUEUE_DEFERRED)
    session.commit()
    return get_job(session, job_id)


def job_rows(session: Session, job_id: int) -> list[ResultRow]:
    """The job's rows; a job answered from the table shows the rows of the job that ran its recipe."""
    job = session.get(Job, job_id)
    source = (job.notes or {}).get("answered_by_job", job_id) if job is not None else job_id
    stmt = select(ResultRow).where(ResultRow.job_id == source).order_by(col(ResultRow.row_index))
    return list(session.exec(stmt))


def row_out(row: ResultRow) -> RowOut:
    """Stored values that JSON cannot carry (written before requests were checked) are shown repaired, so
    one bad row never fails the whole answer."""
    data = repaired(row.model_dump())
    data["has_artifact"] = row.artifact_path is not None
    return RowOut.model_validate(data)


def job_out(job: Job, rows: list[ResultRow] | None = None) -> JobOut:
    out = JobOut.model_validate(repaired(job.model_dump()))
    if rows is not None:
        out.rows = [row_out(r) for r in rows]
    return out


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def list_jobs(
    session: Session,
    status: str | None,
    base_model_id: str | None,
    technique: str | None,
    kind: str | None,
    limit: int,
    offset: int,
) -> tuple[int, list[Job]]:
    conds = []
    if status:
        conds.append(Job.status == status)
    if base_model_id:
        conds.append(Job.base_model_id == base_model_id)
    if kind:
        conds.append(Job.kind == kind)
    if technique:  # a chain matches any of its steps
        conds.append(
            or_(
                Job.technique == technique,
                col(Job.technique).startswith(f"{technique} → ", autoescape=True),
                col(Job.technique).endswith(f" → {technique}", autoescape=True),
                col(Job.technique).contains(f" → {technique} → ", autoescape=True),
            )
        )
    total = session.exec(select(func.count()).select_from(Job).where(*conds)).one()
    jobs = session.exec(select(Job).where(*conds).order_by(col(Job.id).desc()).limit(limit).offset(offset))
    return int(total), list(jobs)


def cancel_job(session: Session, job_id: int) -> tuple[int, Job]:
    """Queued -> cancelled at once (it will never start); running -> cancel requested; finished -> 409."""
    try:
        at_once = jobs.request_cancel(session.connection(), job_id)
    except jobs.JobFinished:
        session.rollback()
        job = get_job(session, job_id)
        raise Conflict(f"job {job_id} has already finished (status '{job.status}')") from None
    session.commit()
    job = get_job(session, job_id)
    session.refresh(job)
    return (200 if at_once else 202), job
