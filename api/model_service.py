"""Base models: check a request (architecture, data set under the data roots) and create the row + its job."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session

from api.job_service import row_out, unprocessable
from api.schemas import ModelCreate, ModelOut, ModelUpload
from api.spec_limits import SpecTooLarge, check_footprint, check_layer_count, resolve_on_meta
from compress.architectures import get_architecture
from compress.layer_spec import ModelSpec, SpecError, build_model
from compress.registry import UnknownNameError
from store.data_roots import DataRootError, resolve_dataset_spec
from store.results import baseline_row
from store.settings import Settings
from store.tables import BaseModelRow, Job, utcnow


def check_dataset(spec: str, roots: list[str], loc: list[Any] | None = None) -> str:
    try:
        return resolve_dataset_spec(spec, roots)
    except (DataRootError, UnknownNameError) as exc:
        raise unprocessable(loc or ["body", "dataset"], str(exc), "invalid_dataset") from None


def check_architecture(req: ModelCreate | ModelUpload, settings: Settings, loc: list[Any] | None = None) -> ModelSpec:
    """Resolve and check the requested network; its size is checked on the meta device before it is built."""
    loc = loc or ["body", "architecture"]
    arch = req.architecture
    try:
        if isinstance(arch, list):
            check_layer_count(arch, settings)
        shape = req.input_shape
        if isinstance(arch, str):
            shape = shape or get_architecture(arch).input_shape
        spec = resolve_on_meta(arch, shape, req.num_classes)
        check_footprint(spec, settings)
        build_model(spec)  # within the limits: build it for real once, as the worker will
        return spec
    except SpecTooLarge as exc:
        raise unprocessable(loc, str(exc), "spec_too_large") from None
    except UnknownNameError as exc:
        raise unprocessable(loc, str(exc), "unknown_architecture") from None
    except ValidationError as exc:
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise unprocessable(loc, f"invalid layer spec: {msg}", "invalid_spec") from None
    except (SpecError, ValueError, TypeError, RuntimeError, NotImplementedError, OverflowError) as exc:
        raise unprocessable(loc, f"cannot build the model: {exc}", "invalid_spec") from None


def create_model(session: Session, req: ModelCreate, settings: Settings) -> tuple[BaseModelRow, Job]:
    dataset = check_dataset(req.dataset, settings.data_roots)
    spec = check_architecture(req, settings)
    max_attempts = settings.max_attempts
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
    data: dict[str, Any] = base.model_dump(exclude={"spec", "artifact_path"})
    out = ModelOut.model_validate(data)
    if detail:
        baseline = baseline_row(session, base.id)
        out.baseline = row_out(baseline) if baseline else None
        out.layers = (baseline.layers or None) if baseline else None
    return out
