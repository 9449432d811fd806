"""A torchvision base model through the worker: trained by a job, pruned through the dependency graph, reloaded."""

from __future__ import annotations

import torch
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from compress.persistence import load_model
from store.settings import Settings
from store.tables import BaseModelRow, ResultRow, utcnow
from tests.worker.conftest import add_job, base, job
from worker.execution import execute_job


def test_a_resnet18_job_trains_prunes_and_its_artifact_reloads(engine: Engine, settings: Settings) -> None:
    with Session(engine) as s:
        s.add(
            BaseModelRow(
                id="tv-resnet18",
                name="resnet18 on digits",
                architecture="resnet18",
                input_shape=[1, 8, 8],
                num_classes=10,
                dataset="digits",
                training={"epochs": 1, "seed": 0, "batch_size": 256},
                created_at=utcnow(),
            )
        )
        s.commit()
    steps = [{"technique": "prune-channels", "params": {"amount": 0.5, "mode": "remove", "epochs": 0}}]
    job_id = add_job(engine, "tv-resnet18", steps=steps)
    assert execute_job(job_id, engine, settings) == "succeeded", job(engine, job_id).error
    with Session(engine) as s:
        rows = list(s.exec(select(ResultRow).where(ResultRow.job_id == job_id).order_by(ResultRow.row_index)).scalars())
    baseline, pruned = rows
    assert (baseline.technique, pruned.technique) == ("baseline", "prune-channels")
    assert pruned.macs < 0.3 * baseline.macs and baseline.extra["other_ops"] > pruned.extra["other_ops"] > 0
    assert {r["name"] for r in baseline.layers} >= {"layer1.0.conv1", "layer1.0", "fc"}
    assert pruned.artifact_path and base(engine, "tv-resnet18").status == "ready"
    model, spec = load_model(f"{settings.artifact_dir}/{pruned.artifact_path}")
    assert spec.network is not None and spec.transforms[0]["kind"] == "prune-channels"
    assert model.layer1[0].conv1.out_channels == 32 and model.fc.out_features == 10
    assert model.eval()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_int8_on_a_resnet_job_goes_through_pt2e_and_reloads(engine: Engine, settings: Settings) -> None:
    """quantize-int8 with no params on a network that is not Sequential: PT2E (x86 quantizer), residual adds
    quantized, the row saying which path produced it, the artifact reloading to the same outputs."""
    with Session(engine) as s:
        if s.get(BaseModelRow, "tv-resnet18-int8") is None:
            s.add(
                BaseModelRow(
                    id="tv-resnet18-int8", name="resnet18 int8", architecture="resnet18", input_shape=[1, 8, 8],
                    num_classes=10, dataset="digits", training={"epochs": 1, "seed": 0, "batch_size": 256},
                    created_at=utcnow(),
                )
            )  # fmt: skip
            s.commit()
    steps = [{"technique": "quantize-int8", "params": {"runtime": "exported", "calibration_samples": 64}}]
    job_id = add_job(engine, "tv-resnet18-int8", steps=steps)
    assert execute_job(job_id, engine, settings) == "succeeded", job(engine, job_id).error
    with Session(engine) as s:
        rows = list(s.exec(select(ResultRow).where(ResultRow.job_id == job_id).order_by(ResultRow.row_index)).scalars())
    baseline, int8 = rows
    assert int8.notes["path"] == "pt2e" and int8.notes["quantized_adds"] > 0
    assert int8.bytes < 0.3 * baseline.bytes and int8.accuracy is not None
    assert "error" in int8.notes["onnx"]  # a PT2E program has no ONNX export: the row says why
    model, _ = load_model(f"{settings.artifact_dir}/{int8.artifact_path}")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
