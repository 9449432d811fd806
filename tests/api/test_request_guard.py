"""The request guard: bearer token, body limits counted while streaming, NUL bytes; SQL-looking text stored as is."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.deps import get_enqueuer
from api.main import create_app
from store.db import get_session
from store.settings import Settings, get_settings
from tests.api.conftest import EnqueueRecorder

JOB = {"base_model_id": "digits-cnn", "technique": "prune-l1", "params": {"amount": 0.5}}
TOKEN = "s3cret-token"


# -- who may do what ---------------------------------------------------------------------------------


def test_without_a_token_setting_everything_is_open(client: TestClient) -> None:
    assert client.post("/jobs", json=JOB).status_code == 202
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_token_guards_every_mutating_request(make_client: Any, recorder: EnqueueRecorder) -> None:
    with make_client(api_token=TOKEN) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}):
            r = client.post("/jobs", json=JOB, headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert client.delete("/jobs/1").status_code == 401
        assert client.post("/models", json={"name": "x", "architecture": "digits-cnn"}).status_code == 401
        assert client.post("/models/upload", files={"weights": ("w", b"x")}).status_code == 401
        assert recorder.ids == []
        ok = {"Authorization": f"Bearer {TOKEN}"}
        r = client.post("/jobs", json=JOB, headers=ok)
        assert r.status_code == 202 and recorder.ids == [r.json()["id"]]
        assert client.delete(f"/jobs/{r.json()['id']}", headers=ok).status_code == 200
        for path in ("/jobs", "/models", "/techniques", "/comparison?base_model_id=digits-cnn", "/"):
            assert client.get(path).status_code == 200, path  # reads stay open
        schema = client.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
        assert schema["paths"]["/jobs"]["post"]["security"] == [{"bearerToken": []}]
        assert "401" in schema["paths"]["/jobs"]["post"]["responses"]
        assert "security" not in schema["paths"]["/jobs"]["get"]


def test_protect_reads_guards_reads_but_not_health_or_docs(make_client: Any) -> None:
    with make_client(api_token=TOKEN, protect_reads=True) as client:
        for path in ("/jobs", "/models", "/comparison?base_model_id=digits-cnn", "/"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
        assert client.get("/healthz").status_code == 200
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
        assert schema["paths"]["/jobs"]["get"]["security"] == [{"bearerToken": []}]
        assert "security" not in schema["paths"]["/healthz"]["get"]


def test_empty_token_setting_means_no_token() -> None:
    assert Settings(api_token="").api_token is None  # compose passes NETREDUCE_API_TOKEN= when unset
    assert Settings(api_token="  ").api_token is None


# -- body size, counted as it arrives ----------------------------------------------------------------


def test_declared_oversized_json_body_is_413(make_client: Any, recorder: EnqueueRecorder) -> None:
    with make_client(max_request_bytes=2048) as client:
        big = {**JOB, "params": {"amount": 0.5, "pad": "x" * 4000}}
        r = client.post("/jobs", json=big)
        assert r.status_code == 413 and "larger than 2048 bytes" in r.json()["detail"]
        assert client.post("/jobs", json=JOB).status_code == 202
        assert len(recorder.ids) == 1


def _raw_asgi(app: Any, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """Send a request straight to the ASGI app: headers as given (a lying Content-Length), body in chunks."""
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if pending:
            read += 1
            return pending.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body + f"|chunks read: {read}".encode()


@pytest.fixture
def small_limit_app(engine: Engine, settings: Settings, recorder: EnqueueRecorder) -> Iterator[Any]:
    app = create_app()
    limited = settings.model_copy(update={"max_request_bytes": 4096, "max_upload_bytes": 8192})

    def session() -> Iterator[Session]:
        with Session(engine) as s:
            yield s

    app.dependency_overrides[get_session] = session
    app.dependency_overrides[get_settings] = lambda: limited
    app.dependency_overrides[get_enqueuer] = lambda: recorder
    yield app


def test_a_lying_content_length_is_caught_while_streaming(small_limit_app: Any, recorder: EnqueueRecorder) -> None:
    body = json.dumps({**JOB, "params": {"amount": 0.5}, "pad": "x" * 50_000}).encode()
    chunks = [body[i : i + 1024] for i in range(0, len(body), 1024)]
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    status, answer = _raw_asgi(small_limit_app, "/jobs", chunks, headers)
    assert status == 413 and b"larger than 4096 bytes" in answer
    assert answer.endswith(b"chunks read: 5")  # 4 x 1024 bytes fit; the 5th chunk passes the limit: no more read
    # the upload route has its own, larger limit, enforced the same way
    multipart = [b'--b\r\nContent-Disposition: form-data; name="spec"\r\n\r\n' + b"x" * 1000] * 20
    headers = [(b"content-type", b"multipart/form-data; boundary=b"), (b"content-length", b"10")]
    status, answer = _raw_asgi(small_limit_app, "/models/upload", multipart, headers)
    assert status == 413 and b"larger than 8192 bytes" in answer
    assert recorder.ids == []


def test_chunked_body_without_length_is_counted(small_limit_app: Any) -> None:
    chunks = [b"{" + b" " * 1000] * 10
    status, answer = _raw_asgi(small_limit_app, "/jobs", chunks, [(b"content-type", b"application/json")])
    assert status == 413 and answer.endswith(b"chunks read: 5")


# -- NUL bytes and SQL-looking strings ----------------------------------------------------------------


def test_nul_bytes_are_422_everywhere(client: TestClient, recorder: EnqueueRecorder) -> None:
    for url in (
        "/jobs?technique=prune%00",
        "/jobs?base_model_id=%00",
        "/models/digits%00cnn",
        "/comparison?base_model_id=a%00",
    ):
        r = client.get(url)
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "nul_byte", url
    for body in (
        {**JOB, "base_model_id": "digits\x00cnn"},
        {**JOB, "params": {"amount": 0.5, "note\x00": 1}},
        {"base_model_id": "digits-cnn", "steps": [{"technique": "prune-l1", "params": {"x": ["a", "b\x00"]}}]},
    ):
        r = client.post("/jobs", json=body)
        assert r.status_code == 422 and "NUL" in r.json()["detail"][0]["msg"], body
    r = client.post("/models", json={"name": "a\x00b", "architecture": "digits-cnn"})
    assert r.status_code == 422 and "'name' contains a NUL byte" in r.json()["detail"][0]["msg"]
    assert recorder.ids == []


SQLISH = ["x'); DROP TABLE jobs; --", "' OR '1'='1", 'Robert"; DELETE FROM base_models WHERE 1=1; --', "%_\\"]


def test_sql_looking_strings_are_stored_literally(client: TestClient) -> None:
    for name in SQLISH:
        r = client.post("/models", json={"name": name, "architecture": "digits-cnn"})
        assert r.status_code == 202, r.text
        assert client.get(f"/models/{r.json()['id']}").json()["name"] == name
    assert client.get("/jobs", params={"technique": SQLISH[1]}).json()["total"] == 0
    assert client.get("/jobs", params={"technique": "%"}).json()["total"] == 0  # LIKE wildcards are escaped
    assert client.get("/models/" + SQLISH[1]).status_code == 404
    assert {m["name"] for m in client.get("/models").json()} >= set(SQLISH)
    assert client.get("/jobs").json()["total"] >= len(SQLISH)  # the jobs table is still there


def test_numbers_beyond_the_integer_columns_are_422_not_500(client: TestClient) -> None:
    """SQLite raised OverflowError (a 500) for these; PostgreSQL a DataError."""
    for url in (f"/jobs/{2**64}", f"/jobs/{2**31}/artifact", f"/jobs?offset={2**63}", "/jobs/0"):
        r = client.get(url)
        assert r.status_code == 422, (url, r.text)
    assert client.delete(f"/jobs/{2**64}").status_code == 422
    assert client.get(f"/jobs/{2**31 - 1}").status_code == 404


def test_405_allow_lists_every_method_of_the_path(client: TestClient) -> None:
    for path, allow in (("/jobs", "POST, GET"), ("/jobs/1", "GET, DELETE"), ("/models/upload", "POST")):
        r = client.put(path)
        assert r.status_code == 405 and sorted(r.headers["allow"].split(", ")) == sorted(allow.split(", ")), path
