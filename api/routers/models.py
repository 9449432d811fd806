"""Base models: create (trained by a job), list, show with the baseline row and per-layer table."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from pydantic import ValidationError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from api.database import Database, DatabaseDep
from api.deps import Enqueuer, EnqueuerDep, SettingsDep
from api.idempotency import create_once
from api.job_service import create_retime_job, require_base_model
from api.model_service import add_model, check_model_request, model_out, new_model_id
from api.request_params import IdempotencyKeyHeader
from api.routers.submission import send_job, submit_job
from api.schemas import JobOut, ModelCreate, ModelCreated, ModelId, ModelOut, ModelUpload
from api.upload_service import EVALUATE_TECHNIQUE, UPLOAD_TRAINING, spec_field_error, store_uploaded_model
from store.artifacts import ArtifactStore
from store.tables import BaseModelRow

router = APIRouter(prefix="/models", tags=["models"])


@router.post(
    "/{model_id}/retime",
    status_code=202,
    response_model=JobOut,
    responses={404: {"description": "Unknown base model"}, 409: {"description": "The base model is not trained"}},
)
async def post_retime(
    model_id: ModelId,
    db: DatabaseDep,
    settings: SettingsDep,
    enqueue: EnqueuerDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut:
    """Time the base model and every stored variant again, together: interleaved rounds on one worker, one
    session id. Afterwards every re-timed row's ``latency_conditions`` carry that session id, and
    ``/comparison``'s speedups compare figures of one measuring session. Search trials (no stored model) keep
    their figures. The job's ``notes`` log the interleaved order."""

    return await submit_job(
        db,
        enqueue,
        response,
        "retime",
        idempotency_key,
        {"model_id": model_id},
        lambda s: create_retime_job(s, model_id, settings.max_attempts),
    )


@router.post("", status_code=202, response_model=ModelCreated)
async def post_model(
    req: ModelCreate,
    db: DatabaseDep,
    settings: SettingsDep,
    enqueue: EnqueuerDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> ModelCreated:
    """Register a base model and queue its training job (202: it trains in the background)."""
    spec, dataset = await run_in_threadpool(check_model_request, req, settings)
    training = req.training.model_dump(mode="json")

    def create(session: Session) -> tuple[int | None, str | None]:
        model_id, job_id = add_model(session, req, spec, dataset, training, "train", settings)
        return job_id, model_id

    def insert(session: Session) -> tuple[ModelCreated, bool]:
        payload = req.model_dump(mode="json")
        job_id, model_id, replayed = create_once(session, "models", idempotency_key, payload, create)
        return created(session, model_id), replayed

    made, replayed = await db.run(insert, write=True)
    return await _queued(db, made, replayed, enqueue, response)


@router.post("/upload", status_code=202, response_model=ModelCreated)
async def upload_model(
    spec: Annotated[
        str,
        Form(
            min_length=2,
            max_length=1_000_000,
            description='JSON: {"name", "architecture" (a built-in name or a layer spec list), "input_shape", '
            '"num_classes", "dataset"}.',
        ),
    ],
    weights: Annotated[UploadFile, File(description="The trained weights as .safetensors (nothing else is read).")],
    db: DatabaseDep,
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
    data = await weights.read()
    model_id = new_model_id()
    model_spec, dataset, artifact = await run_in_threadpool(store_uploaded_model, req, data, settings, model_id)

    def insert(session: Session) -> ModelCreated:
        add_model(session, req, model_spec, dataset, UPLOAD_TRAINING, EVALUATE_TECHNIQUE, settings, artifact, model_id)
        session.commit()
        return created(session, model_id)

    try:
        made = await db.run(insert, write=True)
    except BaseException:
        ArtifactStore(settings.artifact_dir).delete(artifact)
        raise
    return await _queued(db, made, False, enqueue, response)


def created(session: Session, model_id: str | None) -> ModelCreated:
    base = require_base_model(session, model_id or "")
    assert base.training_job_id is not None
    return ModelCreated(id=base.id, training_job_id=base.training_job_id, status=base.status)


async def _queued(
    db: Database, made: ModelCreated, replayed: bool, enqueue: Enqueuer, response: Response
) -> ModelCreated:
    await send_job(db, enqueue, made.training_job_id, replayed, response)
    response.headers["Location"] = f"/models/{made.id}"
    return made


@router.get("", response_model=list[ModelOut])
async def get_models(db: DatabaseDep) -> list[ModelOut]:
    def listing(session: Session) -> list[ModelOut]:
        rows = session.exec(select(BaseModelRow).order_by(col(BaseModelRow.created_at)))
        return [model_out(session, b, detail=False) for b in rows]

    return await db.run(listing)


@router.get("/{model_id}", response_model=ModelOut)
async def get_model(model_id: ModelId, db: DatabaseDep) -> ModelOut:
    """Status, the baseline row and the per-layer table (params, MACs, shares) once trained."""
    return await db.run(lambda session: model_out(session, require_base_model(session, model_id), detail=True))
