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
# Concurrent runs on one machine (several work trees) can each take a database and Redis DBs of their own.
PG_DATABASE = os.environ.get("IT_PG_DATABASE", "test")
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('IT_REDIS_DB', '13')}"
PG_ADMIN_URL = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{PG_DATABASE}"
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


def worker_cmd(queue: str, name: str = "it", concurrency: int = 1) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=prefork",
        f"--concurrency={concurrency}", "-Q", queue, "--loglevel=INFO", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "-n", f"{name}-{os.getpid()}@%h",
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
def own_postgres_schema() -> Iterator[str]:
    """A schema of this test's own in database ``test`` (dropped afterwards): a concurrent run cannot touch it."""
    import uuid

    schema = f"netreduce_it_{uuid.uuid4().hex[:10]}"
    try:
        engine = sa_create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def redis_db() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).flushdb()
    except Exception as exc:
        unavailable("Redis at 127.0.0.1:6379", exc)
    return REDIS_URL


class PrivateRedis:
    """A redis-server of our own on a free loopback port (no persistence), for tests that restart it."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Proc | None = None

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = Proc(f"redis-{self.port}", cmd, dict(os.environ), self.folder)
        self.wait()

    def wait(self, timeout_s: float = 10.0) -> None:
        import redis

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=1).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def shutdown_nosave(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, timeout=10)
        if self.proc:
            self.proc.popen.wait(timeout=10)
            self.proc.stop()

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    import shutil

    if not shutil.which("redis-server"):
        unavailable("redis-server", FileNotFoundError("redis-server"))
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb in a temp dir, trust auth) on a free loopback port.

    Run as the ``postgres`` user when we are root (PostgreSQL refuses root); stopped and removed in teardown.
    """

    def __init__(self, bindir: Path) -> None:
        import tempfile

        self.bindir, self.port = bindir, free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="netreduce-pg-"))
        self.data = self.folder / "data"
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        out = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.stdout}{out.stderr}")

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-o", opts,
                  "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        import shutil

        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _pg_bin()
    if bindir is None:
        unavailable("PostgreSQL's initdb", FileNotFoundError("/usr/lib/postgresql/*/bin/initdb"))
    assert bindir is not None
    server = PrivatePostgres(bindir)
    try:
        server.init()
        server.start()
    except Exception as exc:
        server.remove()
        unavailable("a private PostgreSQL cluster", exc)
    yield server
    server.remove()
