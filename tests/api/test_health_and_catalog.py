"""/healthz (503 naming what is down), the catalog listings, and the OpenAPI docs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.deps import check_broker, get_broker_check
from api.main import create_app
from store.db import create_engine, get_session
from store.settings import Settings, get_settings


def test_healthz_ok(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "api": "ok", "database": "ok", "broker": "ok"}


def _app(engine: Engine, settings: Settings) -> TestClient:
    app = create_app()

    def session() -> Iterator[Session]:
        with Session(engine) as s:
            yield s

    app.dependency_overrides[get_session] = session
    app.dependency_overrides[get_settings] = lambda: settings
    app.dependency_overrides[get_broker_check] = lambda: check_broker  # the real check
    return TestClient(app)


def test_healthz_503_when_broker_is_down(engine: Engine, settings: Settings) -> None:
    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})  # nothing listens on port 1
    r = _app(engine, down).get("/healthz")
    assert r.status_code == 503
    body = r.json()
    assert body["detail"] == "unreachable: broker"
    assert body["database"] == "ok" and body["broker"].startswith("down")


def test_healthz_ok_with_the_serverless_broker(engine: Engine, settings: Settings, tmp_path) -> None:  # noqa: ANN001
    local = settings.model_copy(update={"broker_url": f"sqla+sqlite:///{tmp_path}/broker.db"})
    assert _app(engine, local).get("/healthz").status_code == 200


def test_database_down_is_503_not_500(settings: Settings) -> None:
    dead = create_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none?connect_timeout=2")
    local = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    client = _app(dead, local)
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["detail"] == "unreachable: database, broker"
    r = client.get("/jobs")
    assert r.status_code == 503 and r.json()["detail"].startswith("database unavailable")


def test_techniques_listing(client: TestClient) -> None:
    techniques = {t["name"]: t for t in client.get("/techniques").json()}
    assert {"prune-l1", "quantize-int8", "quantize-dynamic"} <= set(techniques)
    schema = techniques["prune-l1"]["params_schema"]
    assert "amount" in schema["properties"] and techniques["prune-l1"]["search"] is True


def test_architectures_and_datasets(client: TestClient) -> None:
    archs = client.get("/architectures").json()
    assert "digits-cnn" in {a["name"] for a in archs["architectures"]}
    assert "Conv2d" in archs["layer_types"]
    datasets = {d["name"]: d for d in client.get("/datasets").json()}
    assert datasets["idx"]["takes_path"] is True and datasets["digits"]["takes_path"] is False


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_openapi_docs(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200
