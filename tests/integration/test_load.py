"""200 job submissions from 20 concurrent clients on the real stack: exactly 200 jobs, each run once,
and /comparison answering all along. uvicorn + two Celery worker processes, Redis and PostgreSQL.

The load driver is ``bench/load.py`` (the benchmark prints the same figures); what is counted here
comes from the database itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.load import run_load
from store.db import create_engine
from store.migrate import upgrade_head
from store.settings import Settings
from tests.integration.conftest import (
    PG_ADMIN_URL,
    Proc,
    child_env,
    free_port,
    unavailable,
    uvicorn_cmd,
    wait_jobs,
    worker_cmd,
)
from tests.integration.conftest import wait_healthy as wait_api
from tests.worker.conftest import add_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SCHEMA = "netreduce_load"
URL = f"{PG_ADMIN_URL}?options=-csearch_path%3D{SCHEMA}"
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('IT_REDIS_LOAD_DB', '11')}"
JOBS, CLIENTS = 200, 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine, list[Proc]]]:
    """uvicorn + one Celery worker with two processes on a fresh schema and Redis DB; the preset trained."""
    try:
        admin = sa_create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        admin.dispose()
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).flushdb()
    except Exception as exc:
        unavailable("PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379", exc)
    tmp = tmp_path_factory.mktemp("load")
    queue = f"netreduce-load-{os.getpid()}"
    values = {
        "database_url": URL,
        "broker_url": REDIS_URL,
        "queue": queue,
        "artifact_dir": str(tmp / "artifacts"),
        "data_roots": str(tmp),
        "latency_runs": "1",
        "torch_threads": "1",
        "progress_interval_s": "1",
    }
    upgrade_head(URL)
    from worker.execution import execute_job

    engine = create_engine(URL)
    settings = Settings(**{**values, "data_roots": [str(tmp)]})
    assert execute_job(add_job(engine, "digits-cnn", kind="train"), engine, settings) == "succeeded"  # the baseline
    port = free_port()
    env = child_env(**values)
    procs = [
        Proc("api", [*uvicorn_cmd(port), "--log-level", "warning"], env, tmp),
        Proc("worker", worker_cmd(queue, name="load", concurrency=2), env, tmp),
    ]
    try:
        wait_api(f"http://127.0.0.1:{port}", procs)
        yield f"http://127.0.0.1:{port}", engine, procs
    finally:
        for proc in reversed(procs):
            proc.stop()
        engine.dispose()


def test_200_submissions_from_20_clients(stack: tuple[str, Engine, list[Proc]]) -> None:
    base_url, engine, procs = stack
    report = run_load(base_url, jobs=JOBS, clients=CLIENTS, technique="quantize-dynamic", drain_timeout_s=240)
    summary = report.summary()
    print("\nload:", summary)
    logs = "\n".join(p.tail() for p in procs)

    assert report.accepted == JOBS and summary["unique_ids"] == JOBS, (summary, logs)
    assert report.pending == [] and report.completed == JOBS, (summary, logs)
    assert report.comparison_errors == {} and len(report.comparison_ms) >= 20, summary
    assert summary["comparison_p99_ms"] < 5000, summary
    assert report.duplicates == 0, summary

    ids = ", ".join(str(i) for i in report.job_ids)
    with engine.connect() as conn:
        jobs = conn.execute(
            text(f"SELECT count(*), count(DISTINCT id), max(attempts), min(attempts) FROM jobs WHERE id IN ({ids})")
        ).one()
        assert tuple(jobs) == (JOBS, JOBS, 1, 1)  # 200 jobs, each claimed exactly once
        assert conn.execute(text("SELECT count(*) FROM jobs WHERE kind = 'compress'")).scalar() == JOBS
        per_job = conn.execute(
            text(
                "SELECT j.id, count(r.id) FROM jobs j LEFT JOIN result_rows r ON r.job_id = j.id "
                f"WHERE j.id IN ({ids}) GROUP BY j.id HAVING count(r.id) <> 1"
            )
        ).all()
        assert per_job == []  # one result row per job: none lost, none written twice


def test_an_uploaded_model_is_measured_by_a_worker(stack: tuple[str, Engine, list[Proc]]) -> None:
    """The preset's stored weights, uploaded back as a new model: the worker measures the same accuracy."""
    base_url, _, procs = stack
    with httpx.Client(base_url=base_url, timeout=30) as client:
        preset = client.get("/models/digits-cnn").json()
        weights = client.get(f"/jobs/{preset['training_job_id']}/artifact").content
        spec = {"name": "uploaded preset", "architecture": "digits-cnn", "input_shape": [1, 8, 8]}
        r = client.post("/models/upload", data={"spec": json.dumps(spec)}, files={"weights": ("w", weights)})
        assert r.status_code == 202, r.text
        model_id, job_id = r.json()["id"], r.json()["training_job_id"]
        (job,) = wait_jobs(client, [job_id], procs, timeout_s=60).values()
        assert job["status"] == "succeeded" and job["technique"] == "evaluate", job
        model = client.get(f"/models/{model_id}").json()
    assert model["status"] == "ready" and model["baseline"]["notes"]["losses"] == []  # measured, not trained
    assert model["baseline"]["accuracy"] == preset["baseline"]["accuracy"]
