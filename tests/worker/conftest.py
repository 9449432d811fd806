"""Worker tests: the task's function called in-process on a migrated SQLite file, with tiny digits jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from store.db import create_engine
from store.migrate import upgrade_head
from store.settings import Settings
from store.tables import BaseModelRow, Job, utcnow


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp = tmp_path_factory.mktemp("worker")
    return Settings(
        database_url=f"sqlite:///{tmp}/worker.db",
        artifact_dir=str(tmp / "artifacts"),
        work_dir=str(tmp / "work"),
        data_roots=[str(tmp)],
        latency_runs=2,
        progress_interval_s=0.0,
        torch_threads=1,
    )


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[Engine]:
    upgrade_head(settings.database_url)
    engine = create_engine(settings.database_url)
    yield engine
    engine.dispose()


def add_base_model(engine: Engine, model_id: str, epochs: int = 2, dataset: str = "digits") -> str:
    with Session(engine) as s:
        s.add(
            BaseModelRow(
                id=model_id,
                name=model_id,
                architecture="digits-cnn",
                input_shape=[1, 8, 8],
                num_classes=10,
                dataset=dataset,
                training={"epochs": epochs, "seed": 0},
                created_at=utcnow(),
            )
        )
        s.commit()
    return model_id


def add_job(engine: Engine, base_model_id: str, kind: str = "compress", steps: list | None = None) -> int:
    steps = steps if steps is not None else [{"technique": "quantize-dynamic", "params": {}}]
    with Session(engine) as s:
        job = Job(
            kind=kind,
            base_model_id=base_model_id,
            technique="train" if kind == "train" else " → ".join(st["technique"] for st in steps),
            steps=None if kind == "train" else steps,
            created_at=utcnow(),
        )
        s.add(job)
        s.commit()
        assert job.id is not None
        return job.id


def job(engine: Engine, job_id: int) -> Job:
    with Session(engine) as s:
        found = s.get(Job, job_id)
        assert found is not None
        return found


def base(engine: Engine, model_id: str) -> BaseModelRow:
    with Session(engine) as s:
        found = s.get(BaseModelRow, model_id)
        assert found is not None
        return found


@pytest.fixture(scope="module")
def trained(engine: Engine, settings: Settings) -> str:
    """A digits-cnn trained for 2 epochs by a train job."""
    from worker.execution import execute_job

    mid = add_base_model(engine, "trained")
    assert execute_job(add_job(engine, mid, kind="train"), engine, settings) == "succeeded"
    return mid


def artifacts(settings: Settings) -> list[Path]:
    return sorted(Path(settings.artifact_dir).glob("*.safetensors"))
