"""The embedded default: `netreduce up` (SQLite + kombu's SQLite broker, a real Celery worker) in a temp dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Proc, child_env, free_port, wait_healthy
from tests.integration.flow import run_flow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def processes_in(folder: Path) -> list[int]:
    """Live processes whose working directory is ``folder`` (the run command's children inherit it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_netreduce_up_serves_the_flow_and_stops_cleanly(procs: list[Proc], tmp_path: Path) -> None:
    folder = tmp_path.resolve()
    port = free_port()
    env = child_env(latency_runs="2", torch_threads="1", progress_interval_s="0.2")
    up = Proc("up", [sys.executable, "-m", "cli.main", "up", "--no-sweep", "--port", str(port)], env, folder)
    procs.append(up)
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(base_url, procs, timeout_s=90)
    assert (folder / "var" / "netreduce.db").is_file() and (folder / "var" / "broker.db").is_file()
    assert len(processes_in(folder)) >= 3  # the run command, uvicorn, the worker (and its pool child)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        run_flow(client, procs)
    os.kill(up.popen.pid, signal.SIGINT)  # what Ctrl-C sends
    assert up.popen.wait(timeout=60) == 0, up.tail()
    deadline = time.monotonic() + 10
    while processes_in(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_in(folder) == [], subprocess.run(["ps", "-ef"], capture_output=True, text=True).stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base_url}/healthz", timeout=2)
    assert "stopped" in up.tail()


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    """Another server on the port would answer /healthz for us: refuse before starting anything."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = child_env()
        out = subprocess.run(
            [sys.executable, "-m", "cli.main", "up", "--port", str(port)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 1 and "already in use" in out.stdout
    assert not (tmp_path / "var").exists()
