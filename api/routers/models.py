"""Base models: create (trained by a job), list, show with the baseline row and per-layer table."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from sqlmodel import col, select

from api.deps import EnqueuerDep, SessionDep, SettingsDep
from api.job_service import require_base_model
from api.model_service import create_model, model_out
from api.schemas import ModelCreate, ModelCreated, ModelOut
from store.tables import BaseModelRow

router = APIRouter(prefix="/models", tags=["models"])


@router.post("", status_code=202, response_model=ModelCreated)
def post_model(
    req: ModelCreate, session: SessionDep, settings: SettingsDep, enqueue: EnqueuerDep, response: Response
) -> ModelCreated:
    """Register a base model and queue its training job (202: it trains in the background)."""
    base, job = create_model(session, req, settings.data_roots, settings.max_attempts)
    assert job.id is not None
    try:
        enqueue(job.id)
    except Exception as exc:
        raise HTTPException(
            503, detail=f"model {base.id} saved, but its training job {job.id} could not be queued: broker: {exc}"
        ) from None
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
