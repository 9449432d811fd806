"""API tests: a fresh migrated SQLite file per module, the session and enqueue dependencies overridden."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.deps import get_broker_check, get_enqueuer
from api.main import create_app
from store.db import create_engine, get_session
from store.migrate import upgrade_head
from store.settings import Settings, get_settings


class EnqueueRecorder:
    """Stands in for Celery: records job ids, and the job's status as committed at enqueue time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ids: list[int] = []
        self.status_at_enqueue: list[str | None] = []
        self.fail = False

    def __call__(self, job_id: int) -> None:
        from store.tables import Job

        with Session(self.engine) as s:  # a separate connection: sees only committed rows
            job = s.get(Job, job_id)
            self.status_at_enqueue.append(job.status if job else None)
        if self.fail:
            raise ConnectionError("broker down (test)")
        self.ids.append(job_id)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data_root")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Settings:
    tmp = tmp_path_factory.mktemp("api")
    return Settings(
        database_url=f"sqlite:///{tmp}/api.db",
        broker_url="redis://127.0.0.1:1/0",  # never used: the enqueuer and broker check are overridden
        artifact_dir=str(tmp / "artifacts"),
        data_roots=[str(data_root)],
    )


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[Engine]:
    upgrade_head(settings.database_url)
    engine = create_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def recorder(engine: Engine) -> EnqueueRecorder:
    return EnqueueRecorder(engine)


@contextlib.contextmanager
def app_client(engine: Engine, settings: Settings, recorder: EnqueueRecorder) -> Iterator[TestClient]:
    app = create_app()

    def session() -> Iterator[Session]:
        with Session(engine) as s:
            yield s

    app.dependency_overrides[get_session] = session
    app.dependency_overrides[get_settings] = lambda: settings
    app.dependency_overrides[get_enqueuer] = lambda: recorder
    app.dependency_overrides[get_broker_check] = lambda: lambda url: None
    with TestClient(app) as c:
        yield c


@pytest.fixture
def client(engine: Engine, settings: Settings, recorder: EnqueueRecorder) -> Iterator[TestClient]:
    with app_client(engine, settings, recorder) as c:
        yield c


@pytest.fixture
def make_client(
    engine: Engine, settings: Settings, recorder: EnqueueRecorder
) -> Callable[..., contextlib.AbstractContextManager[TestClient]]:
    """A client whose settings differ from the module's by the given fields (token, limits...)."""

    def make(**changes: Any) -> contextlib.AbstractContextManager[TestClient]:
        return app_client(engine, settings.model_copy(update=changes), recorder)

    return make
