"""Rows written straight into the database, for API tests that need finished jobs and results."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from store.tables import BaseModelRow, Job, ResultRow, utcnow


def add_model(engine: Engine, status: str = "ready") -> str:
    mid = f"m-test-{uuid.uuid4().hex[:8]}"
    with Session(engine) as s:
        s.add(
            BaseModelRow(
                id=mid,
                name="seeded",
                architecture="digits-cnn",
                input_shape=[1, 8, 8],
                num_classes=10,
                dataset="digits",
                training={"epochs": 1},
                status=status,
                created_at=utcnow(),
            )
        )
        s.commit()
    return mid


def add_job(engine: Engine, base_model_id: str, status: str = "succeeded", technique: str = "prune-l1") -> int:
    with Session(engine) as s:
        job = Job(
            kind="train" if technique == "train" else "compress",
            base_model_id=base_model_id,
            technique=technique,
            steps=[{"technique": technique, "params": {}}] if technique != "train" else None,
            status=status,
            progress=1.0 if status == "succeeded" else 0.3,
            created_at=utcnow(),
        )
        s.add(job)
        s.commit()
        assert job.id is not None
        return job.id


SEED_CONDITIONS: dict[str, Any] = {
    "torch_threads": 1,
    "quantized_engine": "x86",
    "torch_version": "2.14.1",
    "cpu_model": "seed CPU",
    "machine": "x86_64",
    "host": "seed-host",
    "measured_at": "2026-12-04T00:00:00+00:00",
    "session_id": "seed-session",
}
"""Every seeded row's latency conditions: one measuring session, so their latencies compare."""


def add_row(engine: Engine, job_id: int, base_model_id: str, row_index: int, **values: Any) -> None:
    defaults: dict[str, Any] = {
        "label": values.get("technique", "baseline"),
        "technique": "baseline",
        "params": {},
        "recipe": [],
        "n_params": 1000,
        "bytes": 4000,
        "file_bytes": 4200,
        "macs": 500,
        "flops": 1000,
        "ops": 600,
        "sparse_macs": 500,
        "accuracy": 95.0,
        "accuracy_drop": 0.0,
        "latency_ms_bs1": 0.1,
        "latency_ms_bs64": 1.0,
        "latency_conditions": SEED_CONDITIONS,
        "trial": False,
        "seed": 0,
    }
    defaults.update(values)
    with Session(engine) as s:
        s.add(
            ResultRow(job_id=job_id, row_index=row_index, base_model_id=base_model_id, created_at=utcnow(), **defaults)
        )
        s.commit()
