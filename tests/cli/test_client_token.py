"""The CLI client against an API with NETREDUCE_API_TOKEN set: ``--token`` or the environment variable."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.deps import get_broker_check, get_enqueuer
from api.main import create_app
from store.db import get_session
from store.settings import Settings, get_settings
from tests.api.seed import add_model
from tests.cli.test_client import Capture, FakeWorker, _free_port, run

TOKEN = "cli-token"


@pytest.fixture(scope="module")
def guarded(engine: Engine, settings: Settings) -> Iterator[str]:
    app = create_app()
    with_token = settings.model_copy(update={"api_token": TOKEN})

    def session() -> Iterator[Session]:
        with Session(engine) as s:
            yield s

    app.dependency_overrides[get_session] = session
    app.dependency_overrides[get_settings] = lambda: with_token
    app.dependency_overrides[get_enqueuer] = lambda: FakeWorker(engine)
    app.dependency_overrides[get_broker_check] = lambda: lambda url: None
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_submit_needs_the_token(guarded: str, engine: Engine, capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    model = add_model(engine)
    monkeypatch.delenv("NETREDUCE_API_TOKEN", raising=False)
    submit = ("submit", "--url", guarded, "--model", model, "--technique", "prune-l1")
    code, _, err = run(capsys, *submit)
    assert code == 1 and "HTTP 401" in err and "--token" in err
    code, _, err = run(capsys, *submit, "--token", "wrong")
    assert code == 1 and "HTTP 401" in err
    code, out, _ = run(capsys, *submit, "--token", TOKEN)
    assert code == 0 and "queued" in out
    monkeypatch.setenv("NETREDUCE_API_TOKEN", TOKEN)
    code, out, _ = run(capsys, *submit)
    assert code == 0 and "queued" in out
    monkeypatch.delenv("NETREDUCE_API_TOKEN")
    code, out, _ = run(capsys, "status", "--url", guarded)  # reads stay open
    assert code == 0 and "prune-l1" in out
