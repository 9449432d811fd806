"""Base models: check a request (architecture, data set under the data roots) and create the row + its job."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session

from api.job_service import row_out
from api.schemas import ModelCreate, ModelOut, ModelUpload
from api.service_errors import unprocessable
from api.spec_limits import SpecTooLarge, check_footprint, check_layer_count, resolve_on_meta
from compress.architectures import get_architecture
from compress.datasets import DatasetError, describe_dataset
from compress.layer_spec import ModelSpec, SpecError, build_model
from compress.registry import UnknownNameError
from store.data_roots import DataRootError, resolve_dataset_spec
from store.json_safe import repaired
from store.results import baseline_row
from store.settings import Settings
from store.tables import BaseModelRow, Job, utcnow


def check_dataset(spec: str, roots: list[str], loc: list[Any] | None = None) -> str:
    try:
        return resolve_dataset_spec(spec, roots)
    except (DataRootError, UnknownNameError) as exc:
        raise unprocessable(loc or ["body", "dataset"], str(exc), "invalid_dataset") from None


def check_dataset_fits(
    dataset: str, given: str, spec: ModelSpec, settings: Settings, loc: list[Any] | None = None
) -> None:
    """422 when the model could never train on ``dataset`` (the checked spec; ``given`` is how the client
    wrote it): absent here, empty or malformed, or its samples/classes do not fit ``spec``. Reads headers
    and labels only; messages name the data set as the client gave it, never a server path."""
    try:
        info = describe_dataset(dataset, settings.data_root, settings.allow_download)
        dataclasses.replace(info, name=given).check_fits(spec.input_shape, spec.num_classes)
    except DatasetError as exc:
        msg = str(exc)
        msg = msg if msg.startswith("model ") else f"data set '{given}': {msg}"
        raise unprocessable(loc or ["body", "dataset"], msg, "unusable_dataset") from None


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
    except (SpecError, ValueError, TypeError, RuntimeError, NotImplementedError, ArithmeticError, IndexError) as exc:
        raise unprocessable(loc, f"cannot build the model: {exc}", "invalid_spec") from None


def check_model_request(req: ModelCreate, settings: Settings) -> tuple[ModelSpec, str]:
    """The resolved spec and data set of a ``POST /models`` (CPU work: no database)."""
    dataset = check_dataset(req.dataset, settings.data_roots)
    spec = check_architecture(req, settings)
    check_dataset_fits(dataset, req.dataset, spec, settings)
    return spec, dataset


def new_model_id() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def add_model(
    session: Session,
    req: ModelCreate | ModelUpload,
    spec: ModelSpec,
    dataset: str,
    training: dict[str, Any],
    technique: str,
    settings: Settings,
    artifact_path: str | None = None,
    model_id: str | None = None,
) -> tuple[str, int]:
    """A base model row and its job (train, or measure uploaded weights), flushed: the caller commits."""
    now = utcnow()
    base = BaseModelRow(
        id=model_id or new_model_id(),
        name=req.name,
        architecture=req.architecture,
        spec=spec.model_dump(mode="json"),
        input_shape=list(spec.input_shape),
        num_classes=spec.num_classes,
        dataset=dataset,
        training=training,
        artifact_path=artifact_path,
        created_at=now,
        updated_at=now,
    )
    session.add(base)
    session.flush()
    job = Job(
        kind="train",
        base_model_id=base.id,
        technique=technique,
        steps=None,
        max_attempts=settings.max_attempts,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    assert job.id is not None
    base.training_job_id = job.id
    session.add(base)
    session.flush()
    return base.id, job.id


def model_out(session: Session, base: BaseModelRow, detail: bool) -> ModelOut:
    data: dict[str, Any] = repaired(base.model_dump(exclude={"spec", "artifact_path"}))
    out = ModelOut.model_validate(data)
    if detail:
        baseline = baseline_row(session, base.id)
        out.baseline = row_out(baseline) if baseline else None
        out.layers = repaired(baseline.layers or None) if baseline else None
    return out
