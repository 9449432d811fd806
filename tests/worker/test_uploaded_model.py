"""An uploaded base model is measured, not trained: its baseline row is its own weights' accuracy."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save as st_save
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.model_service import add_model, new_model_id
from api.schemas import ModelUpload
from api.upload_service import EVALUATE_TECHNIQUE, UPLOAD_TRAINING, store_uploaded_model
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
    model_id = new_model_id()
    spec, dataset, artifact = store_uploaded_model(req, st_save(digits_baseline.model.state_dict()), settings, model_id)
    with Session(engine) as s:
        _, eval_job = add_model(
            s, req, spec, dataset, UPLOAD_TRAINING, EVALUATE_TECHNIQUE, settings, artifact, model_id
        )
        s.commit()
    stored = Path(settings.artifact_dir) / artifact
    assert stored.is_file()

    assert execute_job(eval_job, engine, settings) == "succeeded"
    ready = base(engine, model_id)
    assert ready.status == "ready" and ready.artifact_path == artifact and stored.is_file()
    with Session(engine) as s:
        (row,) = s.exec(select(ResultRow).where(ResultRow.job_id == eval_job)).all()
    expected = measure(digits_baseline.model, digits_baseline.spec, None, latency=False).n_params
    assert row.technique == "baseline" and row.n_params == expected and row.notes["losses"] == []
    assert row.accuracy == digits_baseline.measurement.accuracy  # the uploaded weights, untouched by training
    assert job(engine, eval_job).progress == 1.0

    compress_job = add_job(engine, model_id)
    assert execute_job(compress_job, engine, settings) == "succeeded"  # and it compresses like any base model
