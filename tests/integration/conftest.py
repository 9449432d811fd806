"""Integration: real processes (alembic, uvicorn, a Celery worker) against real services on loopback.

Redis at 127.0.0.1:6379 (a dedicated DB number, flushed first) and PostgreSQL at 127.0.0.1:5432,
database ``test`` (a dedicated schema, dropped and recreated, so reruns start clean). When a service
is not running the tests skip, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/13"
PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
PG_SCHEMA = "netreduce_it"
PG_URL = f"{PG_ADMIN_URL}?options=-csearch_path%3D{PG_SCHEMA}"
TERMINAL = {"succeeded", "failed", "cancelled"}


def unavailable(what: str, exc: Exception) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not reachable under CI: {exc}")
    pytest.skip(f"{what} is not reachable: {exc}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child in its own process group; ``stop`` always ends the whole group."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log = cwd / f"{name}.log"
        self._fh = self.log.open("wb")
        self.popen = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, grace_s: float = 10.0) -> None:
        if self.alive():
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._fh.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process a test starts goes here and is killed in teardown, whatever happened."""
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()


def child_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETREDUCE_")}
    env.update({f"NETREDUCE_{k.upper()}": v for k, v in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def uvicorn_cmd(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]


def worker_cmd(queue: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=prefork", "--concurrency=1",
        "-Q", queue, "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"it-{os.getpid()}@%h",
    ]  # fmt: skip


def wait_healthy(base_url: str, procs: list[Proc], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                pytest.fail(f"{p.name} exited early ({p.popen.returncode}):\n{p.tail()}")
        try:
            r = httpx.get(f"{base_url}/healthz", timeout=3)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.3)
    pytest.fail(f"not healthy after {timeout_s} s: {last}\n" + "\n".join(p.tail() for p in procs))


def wait_jobs(client: httpx.Client, ids: list[int], procs: list[Proc], timeout_s: float = 120.0) -> dict[int, dict]:
    deadline = time.monotonic() + timeout_s
    done: dict[int, dict] = {}
    while time.monotonic() < deadline and len(done) < len(ids):
        for jid in ids:
            if jid not in done:
                job = client.get(f"/jobs/{jid}").json()
                if job["status"] in TERMINAL:
                    done[jid] = job
        time.sleep(0.3)
    if len(done) < len(ids):
        pending = {jid: client.get(f"/jobs/{jid}").json() for jid in ids if jid not in done}
        pytest.fail(f"jobs not finished in {timeout_s} s: {pending}\n" + "\n".join(p.tail() for p in procs))
    return done


@pytest.fixture
def postgres_schema() -> str:
    """A fresh schema in database ``test``; `alembic upgrade head` creates the tables in it."""
    try:
        engine = sa_create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {PG_SCHEMA}"))
        engine.dispose()
    except Exception as exc:
        unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    return PG_URL


@pytest.fixture
def redis_db() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).flushdb()
    except Exception as exc:
        unavailable("Redis at 127.0.0.1:6379", exc)
    return REDIS_URL
