"""uvicorn + a real Celery worker against Redis and PostgreSQL, the way compose runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.integration.conftest import (
    ROOT,
    Proc,
    child_env,
    free_port,
    uvicorn_cmd,
    wait_healthy,
    worker_cmd,
)
from tests.integration.flow import run_flow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_full_stack_on_redis_and_postgres(
    postgres_schema: str, redis_db: str, procs: list[Proc], tmp_path: Path
) -> None:
    env = child_env(
        database_url=postgres_schema,
        broker_url=redis_db,
        queue="netreduce-it",
        artifact_dir=str(tmp_path / "artifacts"),
        data_roots=str(tmp_path),
        latency_runs="2",
        torch_threads="1",
        progress_interval_s="0.2",
    )
    migrate = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    procs.append(Proc("api", uvicorn_cmd(port), env, tmp_path))
    procs.append(Proc("worker", worker_cmd("netreduce-it"), env, tmp_path))
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(base_url, procs)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert client.get("/healthz").json()["broker"] == "ok"
        assert any(m["id"] == "digits-cnn" for m in client.get("/models").json())  # the migration's preset
        run_flow(client, procs)
    engine = create_engine(postgres_schema)
    with engine.connect() as conn:
        dupes = conn.execute(
            text("SELECT job_id, row_index, count(*) FROM result_rows GROUP BY 1, 2 HAVING count(*) > 1")
        ).all()
        assert dupes == []
        assert conn.execute(text("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")).scalar() == 0
    engine.dispose()
