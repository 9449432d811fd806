"""Base models: check a request (architecture, data set under the data roots) and create the row + its job."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, col, select

from api.job_service import row_out, unprocessable
from api.schemas import ModelCreate, ModelOut
from compress.architectures import get_architecture
from compress.baseline import resolve_spec
from compress.layer_spec import ModelSpec, SpecError
from compress.registry import UnknownNameError
from store.data_roots import DataRootError, resolve_dataset_spec
from store.tables import BASELINE_TECHNIQUE, BaseModelRow, Job, ResultRow, utcnow


def check_dataset(spec: str, roots: list[str]) -> str:
    try:
        return resolve_dataset_spec(spec, roots)
    except (DataRootError, UnknownNameError) as exc:
        raise unprocessable(["body", "dataset"], str(exc), "invalid_dataset") from None


def check_architecture(req: ModelCreate) -> ModelSpec:
    arch = req.architecture
    try:
        if isinstance(arch, str):
            shape = req.input_shape or get_architecture(arch).input_shape
            return resolve_spec(arch, shape, req.num_classes)
        return resolve_spec(arch, req.input_shape, req.num_classes)
    except UnknownNameError as exc:
        raise unprocessable(["body", "architecture"], str(exc), "unknown_architecture") from None
    except ValidationError as exc:
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise unprocessable(["body", "architecture"], f"invalid layer spec: {msg}", "invalid_spec") from None
    except (SpecError, ValueError, TypeError, RuntimeError) as exc:
        raise unprocessable(["body", "architecture"], f"cannot build the model: {exc}", "invalid_spec") from None


def create_model(session: Session, req: ModelCreate, roots: list[str], max_attempts: int) -> tuple[BaseModelRow, Job]:
    dataset = check_dataset(req.dataset, roots)
    spec = check_architecture(req)
    now = utcnow()
    base = BaseModelRow(
        id=f"m-{uuid.uuid4().hex[:12]}",
        name=req.name,
        architecture=req.architecture,
        spec=spec.model_dump(mode="json"),
        input_shape=list(spec.input_shape),
        num_classes=spec.num_classes,
        dataset=dataset,
        training=req.training.model_dump(mode="json"),
        created_at=now,
        updated_at=now,
    )
    session.add(base)
    session.flush()
    job = Job(
        kind="train",
        base_model_id=base.id,
        technique="train",
        steps=None,
        max_attempts=max_attempts,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    base.training_job_id = job.id
    session.add(base)
    session.commit()
    session.refresh(base)
    session.refresh(job)
    return base, job


def model_out(session: Session, base: BaseModelRow, detail: bool) -> ModelOut:
    data: dict[str, Any] = base.model_dump(exclude={"baseline", "spec", "artifact_path"})
    out = ModelOut.model_validate(data)
    if detail:
        baseline = session.exec(
            select(ResultRow)
            .where(ResultRow.base_model_id == base.id, ResultRow.technique == BASELINE_TECHNIQUE)
            .order_by(col(ResultRow.id).desc())
        ).first()
        out.baseline = row_out(baseline) if baseline else None
        out.layers = (base.baseline or {}).get("layers") if base.baseline else None
    return out
