"""``netreduce up`` keeps serving when its worker is ``kill -9``-ed: real processes, SQLite, kombu's broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Proc, child_env, free_port, procs, wait_healthy  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def worker_pid(up: Proc, other_than: int | None = None, timeout_s: float = 60.0) -> int:
    """The pid of the Celery worker that ``netreduce up`` started (a direct child running celery)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(up.popen.pid), "-f", "celery"], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split() if int(p) != other_than]
        if len(pids) == 1:
            return pids[0]
        assert up.alive(), up.tail()
        time.sleep(0.2)
    raise AssertionError(f"no (new) worker under netreduce up within {timeout_s:.0f} s:\n{up.tail()}")


def start_up(procs: list[Proc], folder: Path, *extra: str) -> tuple[Proc, str]:  # noqa: F811
    port = free_port()
    env = child_env(latency_runs="2", torch_threads="1", progress_interval_s="0.2", heartbeat_interval_s="1")
    cmd = [sys.executable, "-m", "cli.main", "up", "--no-sweep", "--port", str(port), *extra]
    up = Proc("up", cmd, env, folder)
    procs.append(up)
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(base_url, procs, timeout_s=90)
    return up, base_url


def test_kill_9_of_the_worker_restarts_it_and_the_job_completes(procs: list[Proc], tmp_path: Path) -> None:  # noqa: F811
    up, base_url = start_up(procs, tmp_path.resolve())
    first = worker_pid(up)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        body = {"base_model_id": "digits-cnn", "technique": "narrow", "params": {"width": 0.5, "epochs": 60}}
        r = client.post("/jobs", json=body)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 120
        job = r.json()
        while not (job["status"] == "running" and job["progress"] > 0) and time.monotonic() < deadline:
            assert job["status"] not in {"succeeded", "failed", "cancelled"}, f"job ended before the kill: {job}"
            time.sleep(0.1)
            job = client.get(f"/jobs/{job_id}").json()
        assert job["status"] == "running" and job["attempts"] == 1, job

        os.kill(first, signal.SIGKILL)
        assert client.get("/healthz").status_code == 200  # the API keeps serving meanwhile
        second = worker_pid(up, other_than=first)
        assert second != first and up.alive()

        deadline = time.monotonic() + 180
        while job["status"] not in {"succeeded", "failed", "cancelled"} and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.get(f"/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 2, job  # the second attempt ran on the restarted worker
        rows = client.get("/comparison", params={"base_model_id": "digits-cnn", "include_trials": "true"}).json()
        mine = [row for row in rows if row["job_id"] == job_id]  # it trained the preset too: its baseline row
        assert sorted(row["technique"] for row in mine) == ["baseline", "narrow"], mine  # once each, not per attempt
    out = up.tail(200)
    assert "worker killed by SIGKILL; restarting it in 1 s" in out, out
    assert f"worker restarted (pid {second}, restart 1)" in out, out
    assert f"job(s) {job_id} of the lost worker handed back" in out, out
    os.kill(up.popen.pid, signal.SIGINT)
    assert up.popen.wait(timeout=60) == 0, up.tail()


def test_repeated_worker_deaths_stop_the_run_with_a_clear_message(procs: list[Proc], tmp_path: Path) -> None:  # noqa: F811
    up, base_url = start_up(procs, tmp_path.resolve(), "--max-crashes", "3", "--crash-window", "60")
    pid = worker_pid(up)
    for death in (1, 2):
        os.kill(pid, signal.SIGKILL)
        pid = worker_pid(up, other_than=pid)
        assert f"death {death} of 3 allowed within 60 s" in up.tail(100), up.tail()
    os.kill(pid, signal.SIGKILL)
    assert up.popen.wait(timeout=60) == 1, up.tail()
    out = up.tail(200)
    assert "the worker died 3 times within 60 s (last: killed by SIGKILL); not restarting it again" in out, out
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base_url}/healthz", timeout=2)
