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
