"""Faults that must lose nothing: real uvicorn and Celery worker processes, Redis and PostgreSQL on loopback.

Timings come from settings so each test takes seconds: heartbeat every 0.5 s, stale after 3 s, the
reaper and reconciler every 0.5 s, a queued job sent again after 4 s. Each test has a redis-server
of its own on a free port and a PostgreSQL schema of its own (the PostgreSQL restart: a cluster of
its own), so a restart disturbs nobody and a concurrent run of other tests cannot disturb these.
Faults inside a job use the test-only techniques of ``tests/worker/fault_techniques.py``, which the workers
load as an extra task module (``NETREDUCE_EXTRA_TASK_MODULES``, the repository root on their ``PYTHONPATH``):
the API does not know them, so those jobs are inserted and sent the way ``api/job_service`` does it.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from store.db import create_engine
from store.migrate import upgrade_head
from store.settings import Settings
from store.tables import Job, ResultRow, utcnow
from tests.integration.conftest import (
    TERMINAL,
    PrivatePostgres,
    PrivateRedis,
    Proc,
    child_env,
    free_port,
    uvicorn_cmd,
    wait_healthy,
    wait_jobs,
    worker_cmd,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]

FAST = {
    "latency_runs": "2",
    "torch_threads": "1",
    "calibration_samples": "200",
    "progress_interval_s": "0.2",
    "heartbeat_interval_s": "0.5",
    "stale_after_s": "3",
    "reaper_interval_s": "0.5",
    "requeue_after_s": "4",
    "max_attempts": "3",
}


@dataclass
class Stack:
    """uvicorn and Celery workers sharing one database, broker and queue; the test's view of them."""

    folder: Path
    procs: list[Proc]
    database_url: str
    broker_url: str
    settings: dict[str, str]
    queue: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:8]}")
    base_url: str = ""
    workers: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = child_env(
            database_url=self.database_url,
            broker_url=self.broker_url,
            queue=self.queue,
            artifact_dir=str(self.folder / "artifacts"),
            work_dir=str(self.folder / "work"),
            data_roots=str(self.folder),
            **{**FAST, **self.settings},
        )
        self.env["NETREDUCE_EXTRA_TASK_MODULES"] = "tests.worker.fault_techniques"
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), self.env.get("PYTHONPATH")]))
        self.engine: Engine = create_engine(self.database_url)
        self.client = httpx.Client(timeout=30)

    @property
    def work_dir(self) -> Path:
        return (self.folder / "work").resolve()

    def start_api(self) -> None:
        upgrade_head(self.database_url)
        port = free_port()
        self.procs.append(Proc("api", uvicorn_cmd(port), self.env, self.folder))
        self.base_url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.base_url, timeout=30)
        wait_healthy(self.base_url, self.procs)

    def start_worker(self, name: str = "w", concurrency: int = 1) -> Proc:
        cmd = worker_cmd(self.queue, name, concurrency)
        proc = Proc(f"worker-{name}-{len(self.workers)}", cmd, self.env, self.folder)
        self.procs.append(proc)
        self.workers.append(proc)
        deadline = time.monotonic() + 60
        while "ready." not in proc.log.read_text(errors="replace"):
            if not proc.alive() or time.monotonic() > deadline:
                pytest.fail(f"{proc.name} did not start:\n{proc.tail()}")
            time.sleep(0.2)
        return proc

    def logs(self) -> str:
        return "\n".join(p.log.read_text(errors="replace") for p in self.procs)

    def post_model(self, epochs: int) -> tuple[str, int]:
        r = self.client.post(
            "/models",
            json={"name": "faults", "architecture": "digits-cnn", "dataset": "digits", "training": {"epochs": epochs}},
        )
        assert r.status_code == 202, r.text
        return r.json()["id"], r.json()["training_job_id"]

    def post_job(self, model_id: str, technique: str = "quantize-dynamic", params: dict | None = None) -> int:
        body = {"base_model_id": model_id, "technique": technique, "params": params or {}, "rerun": True}
        r = self.client.post("/jobs", json=body)  # rerun: each post is a job that runs, as these tests need
        assert r.status_code == 202, r.text
        return int(r.json()["id"])

    def submit_hook(self, model_id: str, technique: str, **params: Any) -> int:
        """Commit the job row, then send its id (api/job_service's order) for a test-only technique."""
        from celery import Celery

        with Session(self.engine) as s:
            job = Job(
                kind="compress",
                base_model_id=model_id,
                technique=technique,
                steps=[{"technique": technique, "params": params}],
                max_attempts=int(FAST["max_attempts"]),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            s.add(job)
            s.commit()
            assert job.id is not None
            job_id = job.id
        app = Celery("faults-test", broker=self.broker_url)
        try:
            app.send_task("netreduce.run_job", args=[job_id], queue=self.queue)
        finally:
            app.close()
        return job_id

    def train_here(self, job_id: int) -> None:
        """Run a training job in the test process (setup for workers whose limits would not allow it)."""
        from worker.execution import execute_job

        settings = Settings(
            database_url=self.database_url,
            artifact_dir=str(self.folder / "artifacts"),
            work_dir=str(self.folder / "work-setup"),
            data_roots=[str(self.folder)],
            latency_runs=2,
        )
        assert execute_job(job_id, self.engine, settings) == "succeeded"

    def job(self, job_id: int) -> dict[str, Any]:
        r = self.client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, job_id: int, what: str, ok: Any, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if ok(job):
                return job
            time.sleep(0.1)
        pytest.fail(f"job {job_id} never {what}: {self.job(job_id)}\n" + "\n".join(p.tail() for p in self.procs))

    def wait(self, ids: list[int], timeout_s: float = 120) -> dict[int, dict]:
        return wait_jobs(self.client, ids, self.procs, timeout_s)

    def rows(self) -> list[tuple[int, int, str]]:
        with self.engine.connect() as conn:
            found = conn.execute(select(ResultRow.job_id, ResultRow.row_index, ResultRow.technique))
            return sorted((int(a), int(b), str(c)) for a, b, c in found)

    def all_jobs(self) -> dict[int, tuple[str, int]]:
        with self.engine.connect() as conn:
            return {int(i): (s, int(a)) for i, s, a in conn.execute(select(Job.id, Job.status, Job.attempts))}

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()


@pytest.fixture
def make_stack(procs: list[Proc], tmp_path: Path) -> Iterator[Any]:
    made: list[Stack] = []

    def make(database_url: str, broker_url: str, **settings: str) -> Stack:
        stack = Stack(tmp_path, procs, database_url, broker_url, settings)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.close()


def pool_children(pid: int) -> list[int]:
    """The prefork pool processes of a Celery worker's main process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def assert_rows_once(stack: Stack, model_id: str, compress_jobs: list[int]) -> None:
    """One baseline row for the model, one row per compress job, nothing twice."""
    rows = stack.rows()
    assert len(rows) == len(set((j, i) for j, i, _ in rows)), rows
    assert [t for _, _, t in rows].count("baseline") == 1, rows
    for jid in compress_jobs:
        assert [i for j, i, _ in rows if j == jid and i > 0] == [1], (jid, rows)


def training(job: dict[str, Any]) -> bool:
    return job["status"] == "running" and "epoch" in (job["stage"] or "") and 0.05 < job["progress"] < 0.6


# -- 1 ---------------------------------------------------------------------------------------------------


def test_sigkill_of_the_pool_process_mid_job_finishes_it_once(
    own_postgres_schema: str, private_redis: PrivateRedis, make_stack: Any
) -> None:
    stack = make_stack(own_postgres_schema, private_redis.url)
    stack.start_api()
    worker = stack.start_worker()
    model_id, train = stack.post_model(epochs=60)
    compress = stack.post_job(model_id)
    stack.wait_for(train, "trained", training)
    (child,) = pool_children(worker.popen.pid)
    os.kill(child, signal.SIGKILL)
    time.sleep(0.5)
    assert stack.job(train)["status"] == "running"  # nobody has taken it back yet: the reaper will
    done = stack.wait([train, compress])
    assert {j["status"] for j in done.values()} == {"succeeded"}, done
    assert done[train]["attempts"] == 2  # the killed attempt and the one after the reaper put it back
    assert done[compress]["attempts"] == 1
    assert_rows_once(stack, model_id, [compress])
    assert worker.alive() and "requeued" in stack.logs()


# -- 2 ---------------------------------------------------------------------------------------------------


def test_sigkill_of_the_whole_worker_then_a_new_worker_picks_the_job_up(
    own_postgres_schema: str, private_redis: PrivateRedis, make_stack: Any
) -> None:
    stack = make_stack(own_postgres_schema, private_redis.url)
    stack.start_api()
    worker = stack.start_worker("first")
    model_id, train = stack.post_model(epochs=60)
    compress = stack.post_job(model_id)
    stack.wait_for(train, "trained", training)
    os.killpg(worker.popen.pid, signal.SIGKILL)  # main process and pool children at once
    worker.popen.wait(timeout=10)
    time.sleep(float(FAST["stale_after_s"]) + 1)
    assert stack.job(train)["status"] == "running"  # no worker, no reaper: it waits for one
    stack.start_worker("second")
    done = stack.wait([train, compress])
    assert {j["status"] for j in done.values()} == {"succeeded"}, done
    assert done[train]["attempts"] == 2
    assert_rows_once(stack, model_id, [compress])


# -- 3 ---------------------------------------------------------------------------------------------------


def test_a_job_longer_than_the_visibility_timeout_runs_once(
    own_postgres_schema: str, private_redis: PrivateRedis, make_stack: Any
) -> None:
    stack = make_stack(own_postgres_schema, private_redis.url, broker_visibility_timeout_s="2")
    stack.start_api()
    worker = stack.start_worker(concurrency=2)  # a free pool process to take the redelivered message
    model_id, train = stack.post_model(epochs=1)
    stack.wait([train])
    long = stack.submit_hook(model_id, "test-sleep", seconds=9)  # silent: only the heartbeat thread beats
    done = stack.wait([long], timeout_s=60)[long]
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    assert [(j, i) for j, i, _ in stack.rows() if j == long] == [(long, 1)]
    log = worker.log.read_text(errors="replace")
    task_ids = re.findall(r"Task netreduce\.run_job\[([0-9a-f-]+)\] received", log)
    assert len(task_ids) > len(set(task_ids)), "the broker never delivered the long job's message again"
    assert "succeeded in" in log and "'skipped'" in log  # the redelivery was a no-op


# -- 4 ---------------------------------------------------------------------------------------------------


def test_a_poison_job_fails_after_max_attempts_and_others_keep_draining(
    own_postgres_schema: str, private_redis: PrivateRedis, make_stack: Any
) -> None:
    stack = make_stack(own_postgres_schema, private_redis.url)
    stack.start_api()
    worker = stack.start_worker()
    model_id, train = stack.post_model(epochs=1)
    stack.wait([train])
    poison = stack.submit_hook(model_id, "test-crash")
    others = [stack.post_job(model_id) for _ in range(3)]
    done = stack.wait([poison, *others], timeout_s=120)
    assert done[poison]["status"] == "failed" and done[poison]["attempts"] == 3, done[poison]
    assert done[poison]["error"].startswith("worker lost 3 time(s) (last heartbeat 20"), done[poison]["error"]
    assert all(done[j]["status"] == "succeeded" for j in others), done
    assert [j for j, _, _ in stack.rows() if j == poison] == []
    assert worker.alive()


# -- 5 ---------------------------------------------------------------------------------------------------


def test_redis_restarted_with_jobs_queued_every_job_still_ends(
    own_postgres_schema: str, private_redis: PrivateRedis, make_stack: Any
) -> None:
    import redis

    stack = make_stack(own_postgres_schema, private_redis.url, requeue_after_s="6")
    stack.start_api()
    stack.start_worker()
    model_id, train = stack.post_model(epochs=1)
    stack.wait([train])
    busy = stack.submit_hook(model_id, "test-sleep", seconds=3)
    queued = [stack.post_job(model_id) for _ in range(4)]
    stack.wait_for(busy, "started", lambda j: j["status"] == "running")
    r = redis.Redis(port=private_redis.port)
    assert r.llen(stack.queue) >= 3  # their messages wait in Redis ...
    private_redis.shutdown_nosave()
    during = stack.client.post(
        "/jobs", json={"base_model_id": model_id, "technique": "quantize-dynamic", "rerun": True}
    )
    assert during.status_code == 202, during.text  # committed as queued; the broker is down
    assert "broker is unreachable" in during.json()["stage"]
    private_redis.start()
    assert r.llen(stack.queue) == 0  # ... and are gone
    ids = [busy, *queued]
    lost = [int(during.json()["id"])]
    done = stack.wait(ids + lost, timeout_s=120)
    assert {j["status"] for j in done.values()} == {"succeeded"}, done
    assert all(status in TERMINAL for status, _ in stack.all_jobs().values()), stack.all_jobs()
    assert lost, during.text
    assert_rows_once(stack, model_id, [*queued, *lost])
    assert "re-sent" in stack.logs()


# -- 6 ---------------------------------------------------------------------------------------------------


def test_postgres_restarted_the_api_answers_503_then_recovers(
    private_postgres: PrivatePostgres, private_redis: PrivateRedis, make_stack: Any
) -> None:
    stack = make_stack(private_postgres.url, private_redis.url)
    stack.start_api()
    job_id = stack.post_job("digits-cnn")  # no worker: it stays queued
    requests = [
        ("GET", "/jobs", None),
        ("GET", f"/jobs/{job_id}", None),
        ("GET", "/models", None),
        ("GET", "/models/digits-cnn", None),
        ("GET", "/comparison?base_model_id=digits-cnn", None),
        ("GET", "/comparison?base_model_id=digits-cnn&format=csv", None),
        ("POST", "/jobs", {"base_model_id": "digits-cnn", "technique": "quantize-dynamic"}),
        ("DELETE", f"/jobs/{job_id + 100}", None),
        ("GET", "/healthz", None),
    ]

    def answers() -> list[httpx.Response]:
        return [stack.client.request(m, u, json=b) for m, u, b in requests]

    assert all(r.status_code < 500 for r in answers())
    private_postgres.stop()
    try:
        for _ in range(2):  # the pooled connections are dead, then no new one can be made
            for r in answers():
                assert r.status_code == 503, (r.request.url, r.status_code, r.text)
                body = r.json()
                assert "database" in str(body["detail"]), body
    finally:
        private_postgres.start()
    deadline = time.monotonic() + 20
    while stack.client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    after = answers()
    assert [r.status_code for r in after] == [200, 200, 200, 200, 200, 200, 202, 404, 200], [r.text for r in after]
    assert "Traceback" not in stack.logs()


# -- 7 ---------------------------------------------------------------------------------------------------


def test_soft_time_limit_fails_the_job_with_timeout_and_removes_its_temp_files(
    own_postgres_schema: str, private_redis: PrivateRedis, make_stack: Any
) -> None:
    stack = make_stack(
        own_postgres_schema, private_redis.url, worker_soft_time_limit_s="10", worker_hard_time_limit_s="60"
    )
    stack.start_api()
    model_id, train = stack.post_model(epochs=1)
    stack.train_here(train)  # before the worker starts: its 10 s limit would not leave room for training
    worker = stack.start_worker()
    slow = stack.submit_hook(model_id, "test-sleep", seconds=60, write_temp=True)
    folder = stack.work_dir / f"job-{slow}"
    deadline = time.monotonic() + 30
    while not list(folder.glob("test-sleep-*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(folder.glob("test-sleep-*.tmp")), "the job's temporary file was not written in its folder"
    done = stack.wait([slow], timeout_s=30)[slow]
    assert done["status"] == "failed" and done["stage"] == "timeout", done
    assert done["error"].startswith("timeout"), done["error"]
    assert not folder.exists() and list(stack.work_dir.iterdir()) == []
    assert [j for j, _, _ in stack.rows() if j == slow] == []
    after = stack.post_job(model_id)  # the same worker process goes on with the next job
    assert stack.wait([after])[after]["status"] == "succeeded"
    assert worker.alive()


# -- 8 ---------------------------------------------------------------------------------------------------


def test_twenty_writers_and_two_workers_on_sqlite_never_meet_a_locked_database(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack(f"sqlite:///{tmp_path}/netreduce.db", f"sqla+sqlite:///{tmp_path}/broker.db")
    stack.start_api()
    stack.start_worker("one")
    stack.start_worker("two")
    answers: list[httpx.Response] = []
    ids: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def writer(n: int) -> None:
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            barrier.wait()
            for technique in ("quantize-dynamic", "prune-l1"):
                params = {"amount": 0.3, "epochs": 0} if technique == "prune-l1" else {}
                r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": technique, "params": params})
                seen = [r, client.get("/jobs", params={"limit": 5})]
                if r.status_code == 202:
                    seen.append(client.get(f"/jobs/{r.json()['id']}"))
                with lock:
                    answers.extend(seen)
                    if r.status_code == 202:
                        ids.append(int(r.json()["id"]))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    bad = [(r.status_code, r.text[:200]) for r in answers if r.status_code >= 400 or "locked" in r.text]
    assert bad == [] and len(ids) == 40, bad
    done = stack.wait(ids, timeout_s=150)
    errors = {jid: j["error"] for jid, j in done.items() if j["status"] != "succeeded"}
    assert errors == {}, errors
    assert_rows_once(stack, "digits-cnn", ids)
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs WHERE error LIKE '%locked%'")).scalar() == 0
    assert "database is locked" not in stack.logs()
