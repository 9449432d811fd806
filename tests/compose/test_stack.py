"""The compose stack for real: build the images, run ``docker-compose.yml``, scale and kill workers.

``make compose-test`` runs this module (``-m compose``); ``make test`` leaves it out. It drives the
same commands the README gives, with ``docker compose`` (v2) when the Docker CLI has it, else
``docker-compose`` (v1); ``NETREDUCE_COMPOSE="docker-compose"`` chooses. On this network it adds
``docker-compose.local-network.yml`` (``NETREDUCE_COMPOSE_OVERRIDE``; empty: the compose file alone)
after building its base images (``deploy/build-base-images.sh``) and serving the machine's wheel
folders on a loopback port for the image build.

Every step is observed: health from ``/healthz`` and Docker's health status; the two jobs running at
once from Celery's own ``inspect active`` (which worker holds which job id); the hand-over from the
job's attempts, the surviving worker's ``inspect active`` and its reaper log line; persistence
from a new PostgreSQL container id with identical jobs and rows. ``down -v`` always runs, and its
volumes are checked gone.

Without a Docker engine the module skips with the reason, except when ``.ci/run`` decided Docker is
available (``NETREDUCE_DOCKER=1``) or under ``CI=true`` without ``NETREDUCE_DOCKER=0``: then it fails.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]
PROJECT = os.environ.get("NETREDUCE_COMPOSE_PROJECT", "netreduce-compose-test")
OVERRIDE = os.environ.get("NETREDUCE_COMPOSE_OVERRIDE", "docker-compose.local-network.yml")
WHEELS_DIR = os.environ.get("NETREDUCE_WHEELS_DIR", "/opt")
# A fixed port: it is part of the torch build arguments, and a new one each run would void Docker's
# layer cache (a 5-minute torch install instead of none).
WHEELS_PORT = int(os.environ.get("NETREDUCE_WHEELS_PORT", "8799"))
LOG_DIR = ROOT / "var" / "compose-test"
TERMINAL = {"succeeded", "failed", "cancelled"}


def log(msg: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def docker_required() -> bool:
    """True when a missing Docker engine is a failure, not a skip."""
    decided = os.environ.get("NETREDUCE_DOCKER")
    if decided is not None:
        return decided == "1"
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    r = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"no Docker engine answers: {(r.stderr or r.stdout).strip()[:300]}"
    return None


def compose_command() -> list[str]:
    chosen = os.environ.get("NETREDUCE_COMPOSE")
    if chosen:
        return shlex.split(chosen)
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` (v2) nor `docker-compose` (v1) is installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    compose: list[str]
    env: dict[str, str]
    url: str
    client: httpx.Client
    timings: dict[str, float] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        cmd = [*self.compose, *args]
        r = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{shlex.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def containers(self, service: str, all_: bool = False) -> list[str]:
        """Full container ids of a service, from Docker's compose labels (the same for v1 and v2)."""
        cmd = ["docker", "ps", "-q", "--no-trunc"] + (["-a"] if all_ else [])
        cmd += ["--filter", f"label=com.docker.compose.project={PROJECT}"]
        cmd += ["--filter", f"label=com.docker.compose.service={service}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return sorted(out.split())

    def inspect(self, container: str) -> dict[str, Any]:
        out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]

    def celery(self, *args: str) -> dict[str, Any]:
        """``celery inspect ...`` run inside the API container: Celery's own view of every worker."""
        api = self.containers("api")[0]
        cmd = ["docker", "exec", api, "celery", "-A", "worker.celery_app", "inspect", *args, "--json", "--timeout=3"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        for line in reversed(r.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return {}

    def active_jobs(self) -> dict[str, set[int]]:
        """Celery hostname (``celery@<container id prefix>``) -> job ids it is executing now."""
        return {host: {int(t["args"][0]) for t in tasks} for host, tasks in self.celery("active").items()}

    def job(self, job_id: int) -> dict[str, Any]:
        r = self.client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_job(self, job_id: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            time.sleep(1)
        raise AssertionError(f"job {job_id} not finished after {timeout:.0f} s: {self.job(job_id)}")

    def post_job(self, body: dict[str, Any]) -> int:
        r = self.client.post("/jobs", json=body)
        assert r.status_code == 202, r.text
        return int(r.json()["id"])

    def comparison_csv(self, base_model_id: str) -> list[dict[str, str]]:
        r = self.client.get("/comparison", params={"base_model_id": base_model_id, "format": "csv"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv"), r.headers["content-type"]
        return list(csv.DictReader(io.StringIO(r.text)))


def host_of(stack: Stack, hostname: str) -> str:
    """The worker container whose id the Celery hostname ``celery@<12 hex>`` names."""
    short = hostname.split("@", 1)[1]
    matches = [c for c in stack.containers("worker", all_=True) if c.startswith(short)]
    assert len(matches) == 1, (hostname, matches)
    return matches[0]


def wait_healthy(stack: Stack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = stack.client.get("/healthz", timeout=5)
            health = stack.inspect(stack.containers("api")[0])["State"].get("Health", {}).get("Status")
            if r.status_code == 200 and health == "healthy":
                return
            last = f"/healthz {r.status_code} {r.text[:200]}, docker health {health}"
        except (httpx.HTTPError, IndexError) as exc:
            last = repr(exc)
        time.sleep(1)
    raise AssertionError(f"the API did not become healthy in {timeout:.0f} s: {last}")


def wait_workers(stack: Stack, n: int, timeout: float) -> list[str]:
    """Wait until Celery answers a ping from n workers; their hostnames."""
    deadline = time.monotonic() + timeout
    hosts: list[str] = []
    while time.monotonic() < deadline:
        hosts = sorted(stack.celery("ping"))
        if len(hosts) == n:
            return hosts
        time.sleep(1)
    raise AssertionError(f"{n} worker(s) expected to answer a ping within {timeout:.0f} s, got {hosts}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    problem = engine_problem()
    if problem:
        if docker_required():
            pytest.fail(f"Docker was declared available (NETREDUCE_DOCKER / CI) but {problem}")
        pytest.skip(f"compose test needs a Docker engine: {problem}")
    compose = compose_command()
    port = free_port()
    env = dict(os.environ, NETREDUCE_HOST_PORT=str(port), COMPOSE_PROJECT_NAME=PROJECT)
    files = ["-f", "docker-compose.yml"] + (["-f", OVERRIDE] if OVERRIDE else [])
    compose = [*compose, "-p", PROJECT, *files]
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    s = Stack(compose, env, f"http://127.0.0.1:{port}", client)
    log(f"compose: {shlex.join(compose)}")
    s.run("down", "-v", "--remove-orphans", check=False)  # what an aborted earlier run left
    wheels: subprocess.Popen[bytes] | None = None
    try:
        if OVERRIDE:
            t0 = time.monotonic()
            subprocess.run(["bash", "deploy/build-base-images.sh"], cwd=ROOT, check=True)
            s.timings["base images"] = time.monotonic() - t0
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", WHEELS_PORT)) == 0:
                    pytest.fail(f"127.0.0.1:{WHEELS_PORT} is taken; set NETREDUCE_WHEELS_PORT to a free port")
            env["NETREDUCE_WHEELS_PORT"] = str(WHEELS_PORT)
            serve = [sys.executable, "-m", "http.server", str(WHEELS_PORT), "--bind", "127.0.0.1"]
            wheels = subprocess.Popen(
                [*serve, "--directory", WHEELS_DIR],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        t0 = time.monotonic()
        build = s.run("build", timeout=2400)
        (LOG_DIR / "build.log").write_text(build.stdout + build.stderr)
        s.timings["build"] = time.monotonic() - t0
        if wheels is not None:
            wheels.terminate()
            wheels.wait(10)
            wheels = None
        t0 = time.monotonic()
        s.run("up", "-d", "--scale", "worker=1")
        wait_healthy(s, timeout=180)
        s.timings["up until healthy"] = time.monotonic() - t0
        yield s
    finally:
        if wheels is not None:
            wheels.terminate()
        logs = s.run("logs", "--no-color", "--timestamps", check=False, timeout=120)
        (LOG_DIR / "services.log").write_text(logs.stdout + logs.stderr)
        down = s.run("down", "-v", "--remove-orphans", check=False, timeout=300)
        client.close()
        left = subprocess.run(
            ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        log(f"down -v exited {down.returncode}; volumes left: {left}; timings: {s.timings}; logs in {LOG_DIR}")
        assert down.returncode == 0, down.stderr
        assert not left, f"down -v left volumes {left}"
        assert not s.containers("worker", all_=True) and not s.containers("postgres", all_=True)


def test_stack_comes_up_healthy(stack: Stack) -> None:
    migrate = stack.containers("migrate", all_=True)
    assert len(migrate) == 1
    assert stack.inspect(migrate[0])["State"]["ExitCode"] == 0  # alembic upgrade head ran
    for svc in ("redis", "postgres", "api"):
        (cid,) = stack.containers(svc)
        assert stack.inspect(cid)["State"]["Health"]["Status"] == "healthy", svc
    assert stack.client.get("/healthz").status_code == 200
    assert len(wait_workers(stack, 1, timeout=120)) == 1


def test_register_a_model_run_a_job_read_csv(stack: Stack) -> None:
    r = stack.client.post(
        "/models",
        json={"name": "compose digits", "architecture": "digits-cnn", "dataset": "digits", "training": {"epochs": 5}},
    )
    assert r.status_code == 202, r.text
    model_id = r.json()["id"]
    stack.state["model"] = model_id
    assert any(m["id"] == model_id for m in stack.client.get("/models").json())
    job_id = stack.post_job({"base_model_id": model_id, "technique": "prune-l1", "params": {"amount": 0.5}})
    job = stack.wait_job(job_id, timeout=300)
    assert job["status"] == "succeeded", job
    train = stack.wait_job(r.json()["training_job_id"], timeout=30)
    assert train["status"] == "succeeded", train
    rows = stack.comparison_csv(model_id)
    assert rows[0]["label"] == "baseline" and rows[0]["job_id"] == str(r.json()["training_job_id"]), rows[0]
    assert any(row["job_id"] == str(job_id) and row["technique"] == "prune-l1" for row in rows), rows
    for row in rows:
        assert float(row["accuracy"]) > 50.0, row
        assert int(row["bytes"]) > 0
    log(f"model {model_id}: {len(rows)} CSV rows, job {job_id} succeeded")


def long_job(stack: Stack, epochs: int) -> int:
    """A real job that runs for a while: ``narrow`` trains a half-width net from scratch."""
    body = {
        "base_model_id": stack.state["model"],
        "technique": "narrow",
        "params": {"width": 0.5, "epochs": epochs},
        "rerun": True,  # the same recipe as an earlier test's: it must run, not be answered from the table
    }
    return stack.post_job(body)


def test_two_workers_run_two_jobs_at_once(stack: Stack) -> None:
    stack.run("up", "-d", "--no-recreate", "--scale", "worker=2")
    hosts = wait_workers(stack, 2, timeout=180)
    assert len({host_of(stack, h) for h in hosts}) == 2
    jobs = [long_job(stack, epochs=100), long_job(stack, epochs=100)]
    seen: dict[str, set[int]] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        active = stack.active_jobs()
        holders = {h: ids & set(jobs) for h, ids in active.items() if ids & set(jobs)}
        if len(holders) == 2 and set().union(*holders.values()) == set(jobs):
            seen = holders
            break
        time.sleep(0.5)
    assert seen, f"never saw jobs {jobs} running at the same time on two workers"
    log(f"at one moment, Celery says: {seen}")
    stack.state["parallel"] = {next(iter(ids)): host_of(stack, h) for h, ids in seen.items()}
    for jid in jobs:
        assert stack.wait_job(jid, timeout=600)["status"] == "succeeded"


def test_killed_worker_job_is_handed_over(stack: Stack) -> None:
    job_id = long_job(stack, epochs=100)
    victim: str | None = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim is None:
        for host, ids in stack.active_jobs().items():
            if job_id in ids and stack.job(job_id)["progress"] > 0:
                victim = host_of(stack, host)
        time.sleep(0.5)
    assert victim, f"job {job_id} never seen running with progress"
    before = stack.job(job_id)
    assert before["status"] == "running" and before["attempts"] == 1, before
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    log(f"killed worker {victim[:12]} while job {job_id} was at {before['progress']:.2f}")
    state = stack.inspect(victim)["State"]
    assert not state["Running"] and state["ExitCode"] == 137, state  # SIGKILL; unless-stopped keeps it down
    survivors = [c for c in stack.containers("worker") if c != victim]
    assert survivors, "no worker left running"
    # the survivor's reaper puts the job back and a worker claims it again: attempt 2
    handed: str | None = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and handed is None:
        for host, ids in stack.active_jobs().items():
            if job_id in ids and stack.job(job_id)["attempts"] == 2:
                handed = host_of(stack, host)
        if stack.job(job_id)["status"] in TERMINAL:
            break
        time.sleep(0.5)
    job = stack.wait_job(job_id, timeout=600)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2, job
    outputs = [subprocess.run(["docker", "logs", c], capture_output=True, text=True) for c in survivors]
    reaped = "\n".join(o.stdout + o.stderr for o in outputs)
    assert f"job {job_id}: worker lost" in reaped, "no surviving worker's reaper logged the hand-over"
    log(f"job {job_id} requeued by a survivor's reaper, attempt 2 on {handed and handed[:12]}, succeeded")
    assert handed in survivors, f"attempt 2 of job {job_id} was never seen on a surviving worker"
    rows = [r for r in stack.comparison_csv(stack.state["model"]) if r["job_id"] == str(job_id)]
    assert len(rows) == 1, rows  # narrow with a fixed width: exactly one row, not one per attempt
    all_rows = stack.client.get(
        "/comparison", params={"base_model_id": stack.state["model"], "include_trials": "true"}
    ).json()
    keys = [(r["job_id"], r["label"]) for r in all_rows]
    assert len(keys) == len(set(keys)), keys


def test_nothing_lost_when_api_and_postgres_containers_are_replaced(stack: Stack) -> None:
    def snapshot() -> tuple[Any, Any]:
        jobs = stack.client.get("/jobs", params={"limit": 500}).json()
        rows = stack.comparison_csv(stack.state["model"])
        return sorted((j["id"], j["status"], j["attempts"]) for j in jobs["items"]), rows

    before = snapshot()
    assert len(before[0]) >= 5 and all(s == "succeeded" for _, s, _ in before[0]), before[0]
    (api_before,) = stack.containers("api")
    started_before = stack.inspect(api_before)["State"]["StartedAt"]
    (pg_before,) = stack.containers("postgres")
    stack.run("restart", "api")
    stack.run("up", "-d", "--no-deps", "--force-recreate", "postgres")
    (pg_after,) = stack.containers("postgres")
    assert pg_after != pg_before  # a new container: the data can only come from the volume
    (api_after,) = stack.containers("api")
    assert api_after == api_before and stack.inspect(api_after)["State"]["StartedAt"] != started_before
    wait_healthy(stack, timeout=180)
    after = snapshot()
    assert after == before
    log(f"{len(after[0])} jobs and {len(after[1])} rows identical after the API restart and a new postgres container")
