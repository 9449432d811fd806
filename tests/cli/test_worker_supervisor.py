"""WorkerSupervisor's schedule with stand-in children and a stand-in clock (the real kill -9: test_up_supervisor)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cli import up


class FakeProc:
    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None


class FakeChild:
    def __init__(self, pid: int) -> None:
        self.proc = FakeProc(pid)
        self.log_path = Path("worker.log")
        self.stopped = False

    def alive(self) -> bool:
        return self.proc.returncode is None

    def stop(self, grace_s: float) -> None:
        self.stopped = True

    def tail(self, n: int = 20) -> str:
        return "last line of the worker log\n"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(up.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(up.time, "time", lambda: now[0] + 5000.0)
    return now


def make(clock: list[float], **kw: Any) -> tuple[up.WorkerSupervisor, list[FakeChild], list[float], io.StringIO]:
    started: list[FakeChild] = []
    handed: list[float] = []
    out = io.StringIO()

    def start() -> FakeChild:
        started.append(FakeChild(100 + len(started)))
        return started[-1]

    def hand_back(crashed_at: float) -> list[int]:
        handed.append(crashed_at)
        return [7]

    sup = up.WorkerSupervisor(start, Console(file=out, width=300), hand_back=hand_back, **kw)
    return sup, started, handed, out


def test_backoff_doubles_and_the_lost_job_is_handed_back_after_a_heartbeat(clock: list[float]) -> None:
    sup, started, handed, out = make(clock, heartbeat_interval_s=2.0)
    for death, delay in enumerate((1, 2, 4), start=1):
        started[-1].proc.returncode = -9
        sup.check()
        assert started[-2 if len(started) > 1 else -1].stopped
        assert f"worker killed by SIGKILL; restarting it in {delay} s (death {death} of 5" in out.getvalue()
        clock[0] += delay - 0.1
        sup.check()
        assert len(started) == death  # not yet
        clock[0] += 0.1
        sup.check()
        assert len(started) == death + 1 and f"restart {death})" in out.getvalue()
    clock[0] += 3.0
    sup.check()
    assert len(handed) == 3 and "job(s) 7 of the lost worker handed back" in out.getvalue()


def test_too_many_deaths_in_the_window_stop(clock: list[float]) -> None:
    sup, started, _, _ = make(clock, max_crashes=3, window_s=60.0)
    for _ in range(2):
        started[-1].proc.returncode = 1
        sup.check()
        clock[0] += 31.0
        sup.check()
    started[-1].proc.returncode = 1  # third death, but the first left the 60 s window
    sup.check()
    clock[0] += 10.0
    sup.check()
    started[-1].proc.returncode = 1
    with pytest.raises(RuntimeError) as stop:
        sup.check()
    assert "the worker died 3 times within 60 s (last: exited with code 1); not restarting" in str(stop.value)
    assert str(stop.value).endswith("ends with:\nlast line of the worker log\n")
