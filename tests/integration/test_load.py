"""200 job submissions from 20 concurrent clients on the real stack: exactly 200 jobs, each run once,
and /comparison answering all along. uvicorn + two Celery worker processes, Redis and PostgreSQL.

The load driver is ``bench/load.py`` (the benchmark prints the same figures); what is counted here
comes from the database itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import text

from bench.load import run_load
from store.db import create_engine
from store.migrate import upgrade_head
from store.settings import Settings
from tests.integration.conftest import PG_ADMIN_URL, Proc, child_env, free_port, unavailable, uvicorn_cmd, worker_cmd
from tests.integration.conftest import wait_healthy as wait_api
from tests.worker.conftest import add_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SCHEMA = "netreduce_load"
URL = f"{PG_ADMIN_URL}?options=-csearch_path%3D{SCHEMA}"
REDIS_URL = "redis://127.0.0.1:6379/11"
JOBS, CLIENTS = 200, 20


@pytest.fixture
def fresh_services() -> None:
    try:
        admin = sa_create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        admin.dispose()
    except Exception as exc:
        unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).flushdb()
    except Exception as exc:
        unavailable("Redis at 127.0.0.1:6379", exc)


def test_200_submissions_from_20_clients(fresh_services: None, procs: list[Proc], tmp_path: Path) -> None:
    queue = f"netreduce-load-{os.getpid()}"
    values = {
        "database_url": URL,
        "broker_url": REDIS_URL,
        "queue": queue,
        "artifact_dir": str(tmp_path / "artifacts"),
        "data_roots": str(tmp_path),
        "latency_runs": "1",
        "torch_threads": "1",
        "progress_interval_s": "1",
    }
    upgrade_head(URL)
    from worker.execution import execute_job

    engine = create_engine(URL)
    settings = Settings(**{**values, "data_roots": [str(tmp_path)]})
    assert execute_job(add_job(engine, "digits-cnn", kind="train"), engine, settings) == "succeeded"  # the baseline

    port = free_port()
    env = child_env(**values)
    procs.append(Proc("api", [*uvicorn_cmd(port), "--log-level", "warning"], env, tmp_path))
    procs.append(Proc("worker", worker_cmd(queue, name="load", concurrency=2), env, tmp_path))
    base_url = f"http://127.0.0.1:{port}"
    wait_api(base_url, procs)

    report = run_load(base_url, jobs=JOBS, clients=CLIENTS, technique="quantize-dynamic", drain_timeout_s=240)
    summary = report.summary()
    print("\nload:", summary)
    logs = "\n".join(p.tail() for p in procs)

    assert report.accepted == JOBS and summary["unique_ids"] == JOBS, (summary, logs)
    assert report.pending == [] and report.completed == JOBS, (summary, logs)
    assert report.comparison_errors == {} and len(report.comparison_ms) >= 20, summary
    assert summary["comparison_p99_ms"] < 5000, summary
    assert report.duplicates == 0, summary

    with engine.connect() as conn:
        jobs = conn.execute(
            text("SELECT count(*), count(DISTINCT id), max(attempts), min(attempts) FROM jobs WHERE kind = 'compress'")
        ).one()
        assert tuple(jobs) == (JOBS, JOBS, 1, 1)  # exactly 200 jobs, each claimed exactly once
        per_job = conn.execute(
            text(
                "SELECT j.id, count(r.id) FROM jobs j LEFT JOIN result_rows r ON r.job_id = j.id "
                "WHERE j.kind = 'compress' GROUP BY j.id HAVING count(r.id) <> 1"
            )
        ).all()
        assert per_job == []  # one result row per job: none lost, none written twice
        assert set(report.job_ids) == set(conn.execute(text("SELECT id FROM jobs WHERE kind = 'compress'")).scalars())
    engine.dispose()
