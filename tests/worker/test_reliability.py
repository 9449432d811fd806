"""The job life cycle in-process: reaper, reconciler, heartbeat thread, per-job temporary folder, locked retries."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from store.db import write
from store.jobs import ForbiddenTransition, Guard, LeaseLost, change_status, claim
from store.results import baseline_row
from store.settings import Settings
from store.tables import (
    JOB_STATUSES,
    JOB_TRANSITIONS,
    TERMINAL_STATUSES,
    BaseModelRow,
    Job,
    ResultRow,
    utcnow,
)
from tests.worker.conftest import add_base_model, add_job, base, job
from worker import execution
from worker.execution import execute_job
from worker.reaper import reap_stale, resend_queued, sweep
from worker.running import Heartbeat, job_tempdir


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.ids: list[int] = []
        self.fail = fail

    def __call__(self, job_id: int) -> None:
        if self.fail:
            raise ConnectionError("broker down (test)")
        self.ids.append(job_id)


def set_job(engine: Engine, job_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(**values))


def ago(seconds: float) -> Any:
    return utcnow() - timedelta(seconds=seconds)


def rows(engine: Engine, job_id: int) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(ResultRow.row_index).where(ResultRow.job_id == job_id)).scalars())


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"stale_after_s": 1.0, "heartbeat_interval_s": 0.2, "requeue_after_s": 1.0, "max_attempts": 3}
    )


def test_the_life_cycle_is_declared_once() -> None:
    assert set(JOB_TRANSITIONS) == set(JOB_STATUSES)
    assert all(JOB_TRANSITIONS[s] == frozenset() for s in TERMINAL_STATUSES)
    assert JOB_TRANSITIONS["queued"] == {"running", "cancelled"}
    assert "queued" in JOB_TRANSITIONS["running"]  # only the reaper's put-back


def test_a_forbidden_transition_raises_and_changes_nothing(engine: Engine, trained: str) -> None:
    job_id = add_job(engine, trained)
    lease = claim(engine, job_id)
    assert lease
    lease.succeed([], stage="done")
    for current, new in (("succeeded", "running"), ("queued", "succeeded"), ("cancelled", "queued")):
        with pytest.raises(ForbiddenTransition, match=f"from '{current}' to '{new}'"):
            write(engine, lambda conn, c=current, n=new: change_status(conn, Guard(job_id, c), n))
    assert job(engine, job_id).status == "succeeded"
    assert not lease.fail("too late") and not lease.cancel() and not lease.beat()  # no longer running: no-ops
    with pytest.raises(LeaseLost):
        lease.progress(0.5, "too late")
    assert job(engine, job_id).status == "succeeded" and job(engine, job_id).error is None


def test_reaper_puts_a_dead_workers_job_back_and_sends_it(engine: Engine, quick: Settings, trained: str) -> None:
    job_id = add_job(engine, trained)
    dead = claim(engine, job_id)
    assert dead
    sent = Recorder()
    assert reap_stale(engine, quick, sent).requeued == []  # heartbeat fresh: alive
    set_job(engine, job_id, heartbeat_at=ago(5))
    report = reap_stale(engine, quick, sent)
    assert report.requeued == [job_id] and sent.ids == [job_id]
    back = job(engine, job_id)
    assert back.status == "queued" and back.lease_token is None and back.attempts == 1
    assert back.enqueued_at is not None and "worker lost" in (back.stage or "")
    assert reap_stale(engine, quick, sent).requeued == [] and sent.ids == [job_id]  # done once
    # a redelivery of the old message and the new one: only one claim wins, attempts counts it
    assert execute_job(job_id, engine, quick) == "succeeded"
    assert execute_job(job_id, engine, quick) == "skipped"
    done = job(engine, job_id)
    assert done.attempts == 2 and rows(engine, job_id) == [1]


def test_a_null_heartbeat_is_stale(engine: Engine, quick: Settings, trained: str) -> None:
    job_id = add_job(engine, trained)
    assert claim(engine, job_id)
    set_job(engine, job_id, heartbeat_at=None)
    assert reap_stale(engine, quick, Recorder()).requeued == [job_id]


def test_a_running_job_is_never_claimed_again_not_even_with_a_stale_lease(
    engine: Engine, quick: Settings, trained: str
) -> None:
    job_id = add_job(engine, trained)
    lease = claim(engine, job_id)
    assert lease
    set_job(engine, job_id, heartbeat_at=ago(3600))
    assert claim(engine, job_id) is None  # only the reaper's put-back makes it claimable
    assert job(engine, job_id).lease_token == lease.token and job(engine, job_id).attempts == 1
    set_job(engine, job_id, status="failed")  # out of the other tests' way


def test_reaper_fails_the_job_after_max_attempts(engine: Engine, quick: Settings, trained: str) -> None:
    job_id = add_job(engine, trained)
    sent = Recorder()
    for attempt in range(1, 4):
        assert claim(engine, job_id), attempt
        set_job(engine, job_id, heartbeat_at=ago(10))
        report = reap_stale(engine, quick, sent)
        assert (job_id in report.requeued, job_id in report.failed) == (attempt < 3, attempt == 3)
    failed = job(engine, job_id)
    assert failed.status == "failed" and failed.attempts == 3 and failed.finished_at and failed.lease_token is None
    assert failed.error and failed.error.startswith("worker lost 3 time(s) (last heartbeat 20")
    assert sent.ids.count(job_id) == 2


def test_reaper_cancels_a_lost_job_whose_cancellation_was_requested(
    engine: Engine, quick: Settings, trained: str
) -> None:
    job_id = add_job(engine, trained)
    assert claim(engine, job_id)
    set_job(engine, job_id, heartbeat_at=ago(10), cancel_requested=True)
    sent = Recorder()
    assert reap_stale(engine, quick, sent).cancelled == [job_id] and sent.ids == []
    assert job(engine, job_id).status == "cancelled"


def test_a_lost_trainer_gives_its_base_model_back(engine: Engine, quick: Settings) -> None:
    mid = add_base_model(engine, "orphan", epochs=1)
    job_id = add_job(engine, mid, kind="train")
    assert claim(engine, job_id)
    with engine.begin() as conn:
        conn.execute(
            update(BaseModelRow).where(BaseModelRow.id == mid).values(status="training", training_job_id=job_id)
        )
    set_job(engine, job_id, heartbeat_at=ago(10))
    assert reap_stale(engine, quick, Recorder()).requeued == [job_id]
    assert base(engine, mid).status == "untrained"
    assert execute_job(job_id, engine, quick) == "succeeded" and base(engine, mid).status == "ready"


def test_reapers_racing_put_a_job_back_once(engine: Engine, quick: Settings, trained: str) -> None:
    job_id = add_job(engine, trained)
    assert claim(engine, job_id)
    set_job(engine, job_id, heartbeat_at=ago(10))
    sent = Recorder()
    barrier = threading.Barrier(4)

    def reaper() -> None:
        barrier.wait()
        reap_stale(engine, quick, sent)

    threads = [threading.Thread(target=reaper) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sent.ids == [job_id] and job(engine, job_id).attempts == 1


def test_reconciler_resends_a_queued_job_nobody_claimed(engine: Engine, quick: Settings, trained: str) -> None:
    job_id = add_job(engine, trained)
    sent = Recorder()
    assert job_id not in resend_queued(engine, quick, sent).resent  # just created: its message may be on its way
    set_job(engine, job_id, created_at=ago(5))
    assert job_id in resend_queued(engine, quick, sent).resent
    assert job_id not in resend_queued(engine, quick, sent).resent  # sent just now: not again yet
    set_job(engine, job_id, enqueued_at=ago(5))
    down = Recorder(fail=True)
    assert job_id not in resend_queued(engine, quick, down).resent
    kept = job(engine, job_id).enqueued_at
    assert kept is not None and kept.replace(tzinfo=None) < ago(4).replace(tzinfo=None)  # the failed send is undone
    assert job_id in resend_queued(engine, quick, sent).resent  # the next pass tries again
    assert sent.ids.count(job_id) == 2
    assert execute_job(job_id, engine, quick) == "succeeded"
    assert job_id not in sweep(engine, quick, sent).resent  # claimed: nothing to do
    for jid in sent.ids:  # every extra message is a no-op
        if jid != job_id:
            execute_job(jid, engine, quick)
    assert execute_job(job_id, engine, quick) == "skipped" and rows(engine, job_id) == [1]


def test_heartbeat_thread_keeps_a_silent_job_alive(
    engine: Engine, quick: Settings, trained: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phase without progress writes (a long evaluation) lasts longer than stale_after_s: not reaped."""
    original = execution.Runner.run

    def silent_run(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(2.5)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(execution.Runner, "run", silent_run)
    job_id = add_job(engine, trained)
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(execute_job(job_id, engine, quick)))
    t.start()
    sent = Recorder()
    while t.is_alive():
        reap_stale(engine, quick, sent)
        time.sleep(0.1)
    t.join()
    assert result == ["succeeded"] and sent.ids == []
    assert job(engine, job_id).attempts == 1


def test_heartbeat_stops_when_the_lease_is_gone(engine: Engine, quick: Settings, trained: str) -> None:
    job_id = add_job(engine, trained)
    lease = claim(engine, job_id)
    assert lease
    with Heartbeat(lease, 0.05) as beat:
        time.sleep(0.2)
        assert not beat.lost.is_set()
        set_job(engine, job_id, status="queued", lease_token=None)  # what the reaper does
        assert beat.lost.wait(2)
    assert job(engine, job_id).status == "queued"


def test_job_tempdir_is_removed_whatever_happens(settings: Settings) -> None:
    before = tempfile.gettempdir()
    with job_tempdir(settings.work_dir, 7, redirect=True) as path:
        assert tempfile.gettempdir() == str(path)
        fd, name = tempfile.mkstemp()
        assert Path(name).parent == path
    assert not path.exists() and tempfile.gettempdir() == before
    with pytest.raises(RuntimeError), job_tempdir(settings.work_dir, 7, redirect=False) as path:
        (path / "x").write_text("x")
        raise RuntimeError("boom")
    assert not path.exists()


def test_soft_time_limit_fails_with_timeout_and_removes_temp_files(
    engine: Engine, settings: Settings, trained: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    seen: list[Path] = []

    def slow_run(self: Any, *args: Any, **kwargs: Any) -> Any:
        fd, name = tempfile.mkstemp()
        seen.append(Path(name))
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(execution.Runner, "run", slow_run)
    job_id = add_job(engine, trained)
    assert execute_job(job_id, engine, settings, redirect_tmp=True) == "failed"
    failed = job(engine, job_id)
    assert failed.stage == "timeout" and (failed.error or "").startswith("timeout")
    assert seen and seen[0].parent.parent == Path(settings.work_dir).resolve() and not seen[0].exists()
    assert rows(engine, job_id) == []


def test_a_locked_database_is_retried(engine: Engine) -> None:
    calls: list[int] = []

    def flaky(conn: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("UPDATE jobs", {}, sqlite3.OperationalError("database is locked"))
        return "ok"

    assert write(engine, flaky) == "ok" and len(calls) == 3
    calls.clear()

    def broken(conn: Any) -> str:
        calls.append(1)
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: nope"))

    with pytest.raises(OperationalError):
        write(engine, broken)
    assert len(calls) == 1


def test_test_hooks_exist_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from compress.techniques.base import TECHNIQUES, list_techniques
    from worker.celery_app import make_celery

    module = "tests.worker.fault_techniques"
    monkeypatch.delitem(sys.modules, module, raising=False)
    plain = make_celery(Settings())
    plain.loader.import_default_modules()
    assert module not in plain.conf.include and module not in sys.modules
    assert not {"test-sleep", "test-crash"} & {t.name for t in list_techniques()}
    asked = make_celery(Settings(extra_task_modules=module))
    try:
        assert module in asked.conf.include
        asked.loader.import_default_modules()
        assert {"test-sleep", "test-crash"} <= set(TECHNIQUES)
    finally:
        importlib.import_module(module).unregister()


def test_a_job_whose_base_model_was_taken_over_waits_for_it(
    engine: Engine, settings: Settings, trained: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another job decided we were dead and trains the base model: we keep our lease and wait for it."""
    ready = base(engine, trained)
    mid = add_base_model(engine, "contested", epochs=1)
    other = add_job(engine, mid, kind="train")
    assert claim(engine, other)  # alive: its heartbeat is fresh
    job_id = add_job(engine, mid)
    real = execution.train_baseline

    def finish_elsewhere() -> None:  # what the other job's final write does: the model ready, its baseline row
        time.sleep(0.5)
        with Session(engine) as s:
            row = baseline_row(s, trained)
            assert row is not None
            copy = ResultRow.model_validate(row.model_dump(exclude={"id"}) | {"job_id": other, "base_model_id": mid})
            s.add(copy)
            s.commit()
        with engine.begin() as conn:
            conn.execute(
                update(BaseModelRow)
                .where(BaseModelRow.id == mid)
                .values(status="ready", artifact_path=ready.artifact_path, spec=ready.spec)
            )

    def taken_over(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        with engine.begin() as conn:
            conn.execute(update(BaseModelRow).where(BaseModelRow.id == mid).values(training_job_id=other))
        threading.Thread(target=finish_elsewhere).start()
        return result

    monkeypatch.setattr(execution, "train_baseline", taken_over)
    assert execute_job(job_id, engine, settings) == "succeeded"
    assert rows(engine, job_id) == [1]  # its own row; the baseline is the other job's
    assert job(engine, job_id).attempts == 1
