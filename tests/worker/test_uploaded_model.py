"""An uploaded base model is measured, not trained: its baseline row is its own weights' accuracy."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save as st_save
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.schemas import ModelUpload
from api.upload_service import create_uploaded_model
from compress.baseline import Baseline
from compress.measure import measure
from store.settings import Settings
from store.tables import ResultRow
from tests.worker.conftest import add_job, base, job
from worker.execution import execute_job


def test_uploaded_weights_are_measured_not_trained(
    engine: Engine, settings: Settings, digits_baseline: Baseline
) -> None:
    req = ModelUpload(name="pretrained", architecture="digits-cnn", input_shape=(1, 8, 8), dataset="digits")
    with Session(engine) as s:
        model, eval_job = create_uploaded_model(s, req, st_save(digits_baseline.model.state_dict()), settings)
    stored = Path(settings.artifact_dir) / str(model.artifact_path)
    assert stored.is_file()

    assert execute_job(eval_job.id, engine, settings) == "succeeded"
    ready = base(engine, model.id)
    assert ready.status == "ready" and ready.artifact_path == model.artifact_path and stored.is_file()
    with Session(engine) as s:
        (row,) = s.exec(select(ResultRow).where(ResultRow.job_id == eval_job.id)).all()
    expected = measure(digits_baseline.model, digits_baseline.spec, None, latency=False).n_params
    assert row.technique == "baseline" and row.n_params == expected and row.notes["losses"] == []
    assert row.accuracy == digits_baseline.measurement.accuracy  # the uploaded weights, untouched by training
    assert job(engine, eval_job.id).progress == 1.0

    compress_job = add_job(engine, model.id)
    assert execute_job(compress_job, engine, settings) == "succeeded"  # and it compresses like any base model
