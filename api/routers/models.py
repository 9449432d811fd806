"""Base models: create (trained by a job), list, show with the baseline row and per-layer table."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from pydantic import ValidationError
from sqlmodel import Session, col, select

from api.deps import Enqueuer, EnqueuerDep, SessionDep, SettingsDep
from api.job_service import defer_enqueue, require_base_model
from api.model_service import create_model, model_out
from api.schemas import ModelCreate, ModelCreated, ModelOut, ModelUpload
from api.upload_service import create_uploaded_model, spec_field_error
from store.tables import BaseModelRow, Job

router = APIRouter(prefix="/models", tags=["models"])


@router.post("", status_code=202, response_model=ModelCreated)
def post_model(
    req: ModelCreate, session: SessionDep, settings: SettingsDep, enqueue: EnqueuerDep, response: Response
) -> ModelCreated:
    """Register a base model and queue its training job (202: it trains in the background)."""
    base, job = create_model(session, req, settings)
    return _queued(session, base, job, enqueue, response)


@router.post("/upload", status_code=202, response_model=ModelCreated)
def upload_model(
    spec: Annotated[
        str,
        Form(
            max_length=1_000_000,
            description='JSON: {"name", "architecture" (a built-in name or a layer spec list), "input_shape", '
            '"num_classes", "dataset"}.',
        ),
    ],
    weights: Annotated[UploadFile, File(description="The trained weights as .safetensors (nothing else is read).")],
    session: SessionDep,
    settings: SettingsDep,
    enqueue: EnqueuerDep,
    response: Response,
) -> ModelCreated:
    """Register a pretrained base model: a layer spec plus its weights as safetensors (202: a job measures it).

    Pickles, zip archives (``torch.save``, TorchScript, ``.pt2``) and anything else that is not safetensors are
    refused with 422 without being loaded; the tensors must match the spec's names and shapes. The body is
    limited to ``NETREDUCE_MAX_UPLOAD_BYTES`` (413), and the file is stored under a generated name."""
    try:
        req = ModelUpload.model_validate_json(spec)
    except ValidationError as exc:
        raise spec_field_error(exc) from None
    data = weights.file.read()
    base, job = create_uploaded_model(session, req, data, settings)
    return _queued(session, base, job, enqueue, response)


def _queued(session: Session, base: BaseModelRow, job: Job, enqueue: Enqueuer, response: Response) -> ModelCreated:
    assert job.id is not None
    try:
        enqueue(job.id)
    except Exception:
        defer_enqueue(session, job)
    response.headers["Location"] = f"/models/{base.id}"
    return ModelCreated(id=base.id, training_job_id=job.id, status=base.status)


@router.get("", response_model=list[ModelOut])
def get_models(session: SessionDep) -> list[ModelOut]:
    rows = session.exec(select(BaseModelRow).order_by(col(BaseModelRow.created_at)))
    return [model_out(session, b, detail=False) for b in rows]


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str, session: SessionDep) -> ModelOut:
    """Status, the baseline row and the per-layer table (params, MACs, shares) once trained."""
    return model_out(session, require_base_model(session, model_id), detail=True)
