"""One hostile value never gives a 500 nor poisons what is stored: lone surrogates, non-finite numbers, control
characters, stored rows that cannot be encoded, and retries with an Idempotency-Key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from store.db import create_engine
from store.migrate import upgrade_head
from store.tables import IdempotencyKey, Job
from tests.api.conftest import EnqueueRecorder
from tests.api.seed import add_job, add_model

JOB = '{"base_model_id": "digits-cnn", "technique": "prune-l1", "params": %s}'
MODEL = '{"name": %s, "architecture": "digits-cnn", "dataset": "digits", "training": %s}'


def jobs_count(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(Job)).one())


def post_raw(client: TestClient, path: str, body: str, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(path, content=body.encode("utf-8"), headers={"content-type": "application/json", **headers})


def assert_json_422(r) -> list[dict]:  # type: ignore[no-untyped-def]
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    json.dumps(detail, allow_nan=False).encode("utf-8")  # the body itself is strict JSON and valid UTF-8
    return detail


@pytest.mark.parametrize(
    "body",
    [
        JOB % '{"amount": 0.5, "layers": ["\\udfff"]}',
        JOB % '{"amount": 0.5, "layers": ["\\ud800x"]}',
        '{"base_model_id": "digits-cnn", "steps": [{"technique": "prune-l1", "params": {"layers": ["\\udfff"]}}]}',
        '{"base_model_id": "digits-\\ud800", "technique": "prune-l1", "params": {}}',
        JOB % '{"\\udfff": 1}',
    ],
)
def test_a_lone_surrogate_is_422_and_stores_nothing(
    client: TestClient, engine: Engine, recorder: EnqueueRecorder, body: str
) -> None:
    before = jobs_count(engine)
    (err,) = assert_json_422(post_raw(client, "/jobs", body))
    assert "valid Unicode" in err["msg"]
    assert jobs_count(engine) == before and recorder.ids == []
    assert client.get("/jobs").status_code == 200


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_422_everywhere(client: TestClient, engine: Engine, number: str) -> None:
    before = jobs_count(engine)
    for body in (
        JOB % f'{{"amount": {number}}}',
        JOB % f'{{"amount": 0.5, "seed": {number}}}',
        f'{{"base_model_id": "digits-cnn", "steps": [{{"technique": "prune-l1", "params": {{"amount": {number}}}}}]}}',
    ):
        (err,) = assert_json_422(post_raw(client, "/jobs", body))
        assert "finite" in err["msg"], err
    for body in (
        MODEL % ('"m"', f'{{"epochs": 1, "lr": {number}}}'),
        '{"name": "m", "dataset": "digits", "architecture": [{"name": "flat", "type": "Flatten"}, '
        f'{{"name": "act", "type": "LeakyReLU", "args": {{"negative_slope": {number}}}}}, '
        '{"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 10}}]}',
    ):
        assert_json_422(post_raw(client, "/models", body))
    assert jobs_count(engine) == before


def test_integers_past_64_bits_are_422(client: TestClient) -> None:
    (err,) = assert_json_422(post_raw(client, "/jobs", JOB % ('{"amount": 0.5, "seed": 1' + "0" * 30 + "}")))
    assert "out of range" in err["msg"]


@pytest.mark.parametrize("name", ['"\\ud800"', '"a\\nb"', '"tab\\there"', '"\\u0007"', '"f\\u007f"'])
def test_model_names_refuse_surrogates_and_control_characters(client: TestClient, engine: Engine, name: str) -> None:
    before = jobs_count(engine)
    assert_json_422(post_raw(client, "/models", MODEL % (name, "{}")))
    assert jobs_count(engine) == before


def test_a_stored_row_that_json_cannot_carry_does_not_break_reads(client: TestClient, engine: Engine) -> None:
    """Rows stored before requests were checked: each read shows them repaired instead of answering 500."""
    model = add_model(engine)
    job_id = add_job(engine, model)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET steps = :steps WHERE id = :id"),
            {"steps": json.dumps([{"technique": "prune-l1", "params": {"layers": ["\udfff"], "x": float("nan")}}]),
             "id": job_id},
        )  # fmt: skip
    r = client.get(f"/jobs/{job_id}")
    assert r.status_code == 200, r.text
    assert r.json()["steps"][0]["params"] == {"layers": ["\\udfff"], "x": None}
    page = client.get("/jobs", params={"limit": 500})
    assert page.status_code == 200 and job_id in [j["id"] for j in page.json()["items"]]
    assert client.get("/").status_code == 200  # the dashboard's job list


def test_migration_repairs_stored_values(tmp_path: Path) -> None:
    from alembic import command

    from store.migrate import alembic_config

    url = f"sqlite:///{tmp_path}/old.db"
    command.upgrade(alembic_config(url), "0002")
    engine = create_engine(url)
    bad = json.dumps([{"technique": "prune-l1", "params": {"layers": ["\udfff"], "amount": float("inf")}}])
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (kind, base_model_id, technique, steps, status, progress, cancel_requested, "
                "attempts, max_attempts, created_at) VALUES ('compress', 'digits-cnn', 'prune-l1', :s, 'queued', 0, "
                "0, 0, 3, '2026-12-01 00:00:00')"
            ),
            {"s": bad},
        )
    upgrade_head(url)
    with engine.connect() as conn:
        stored = json.loads(conn.execute(text("SELECT steps FROM jobs")).scalar_one())
    engine.dispose()
    assert stored == [{"technique": "prune-l1", "params": {"layers": ["\\udfff"], "amount": None}}]


def test_head_answers_like_get_without_a_body(client: TestClient) -> None:
    get, head = client.get("/jobs"), client.head("/jobs")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]
    assert client.head("/jobs/999999").status_code == 404


def test_idempotency_key_returns_the_same_job(client: TestClient, engine: Engine, recorder: EnqueueRecorder) -> None:
    body = {"base_model_id": "digits-cnn", "technique": "prune-l1", "params": {"amount": 0.25}}
    first = client.post("/jobs", json=body, headers={"Idempotency-Key": "k-123e4567"})
    again = client.post("/jobs", json=body, headers={"Idempotency-Key": "k-123e4567"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert recorder.ids == [first.json()["id"]]  # sent to the workers once
    other = client.post("/jobs", json={**body, "params": {"amount": 0.5}}, headers={"Idempotency-Key": "k-123e4567"})
    (err,) = assert_json_422(other)
    assert err["type"] == "idempotency_key_reused"
    fresh = client.post("/jobs", json=body, headers={"Idempotency-Key": "k-other"})
    assert fresh.json()["id"] != first.json()["id"]
    assert client.post("/jobs", json=body).json()["id"] not in (first.json()["id"], fresh.json()["id"])
    with Session(engine) as s:
        assert s.get(IdempotencyKey, ("jobs", "k-123e4567")).job_id == first.json()["id"]  # type: ignore[union-attr]
    assert_json_422(client.post("/jobs", json=body, headers={"Idempotency-Key": "x" * 201}))


def test_idempotency_key_returns_the_same_model(client: TestClient, recorder: EnqueueRecorder) -> None:
    body = {"name": "idem", "architecture": "digits-cnn", "dataset": "digits", "training": {"epochs": 1}}
    first = client.post("/models", json=body, headers={"Idempotency-Key": "model-1"})
    again = client.post("/models", json=body, headers={"Idempotency-Key": "model-1"})
    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert recorder.ids == [first.json()["training_job_id"]]
    names = [m["name"] for m in client.get("/models").json()]
    assert names.count("idem") == 1
