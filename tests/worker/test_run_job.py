"""run_job's body (worker.execution.execute_job) in-process: claim, progress, rows once, cancellation."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from compress.persistence import load_model
from store.jobs import Lease, LeaseLost, claim
from store.settings import Settings
from store.tables import ResultRow
from tests.worker.conftest import add_base_model, add_job, artifacts, base, job
from worker import cache
from worker.execution import JobExecution, execute_job, measurement_from
from worker.running import JobReporter


def rows_of(engine: Engine, job_id: int) -> list[ResultRow]:
    with Session(engine) as s:
        return list(s.exec(select(ResultRow).where(ResultRow.job_id == job_id).order_by(ResultRow.row_index)).scalars())


def test_train_job_writes_baseline_row_and_model(engine: Engine, settings: Settings, trained: str) -> None:
    model = base(engine, trained)
    assert model.status == "ready" and model.artifact_path
    (row,) = rows_of(engine, model.training_job_id)  # the base model's one stored measurement
    assert row.technique == "baseline" and row.row_index == 0 and row.accuracy > 50
    assert row.bytes and row.layers and row.layers[0]["name"] == "conv1"
    measured = measurement_from(row)  # what a compress job compares against
    assert (measured.accuracy, measured.bytes, measured.layers[0].name) == (row.accuracy, row.bytes, "conv1")
    loaded, spec = load_model(f"{settings.artifact_dir}/{model.artifact_path}")
    assert spec.num_classes == 10
    done = job(engine, model.training_job_id)
    assert done.status == "succeeded" and done.progress == 1.0 and done.attempts == 1 and done.finished_at


def test_claim_is_atomic(engine: Engine, settings: Settings, trained: str) -> None:
    job_id = add_job(engine, trained)
    first = claim(engine, job_id)
    assert first is not None
    assert claim(engine, job_id) is None  # a second delivery of the same message: no-op
    running = job(engine, job_id)
    assert running.status == "running" and running.lease_token == first.token and running.attempts == 1
    assert execute_job(job_id, engine, settings) == "skipped"
    assert rows_of(engine, job_id) == []
    assert claim(engine, 10**9) is None


def test_claims_race_from_threads(engine: Engine, trained: str) -> None:
    job_id = add_job(engine, trained)
    tokens: list[Lease | None] = []
    barrier = threading.Barrier(4)

    def racer() -> None:
        barrier.wait()
        tokens.append(claim(engine, job_id))

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(t is not None for t in tokens) == 1


def test_compress_job_progress_and_rows_written_once(engine: Engine, settings: Settings, trained: str) -> None:
    job_id = add_job(engine, trained, steps=[{"technique": "prune-l1", "params": {"amount": 0.5, "epochs": 1}}])
    writes: list[dict] = []

    def spy(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if statement.startswith("UPDATE jobs SET progress"):
            writes.append(dict(zip(("progress", "stage"), parameters[:2], strict=False)))

    event.listen(engine, "before_cursor_execute", spy)
    try:
        assert execute_job(job_id, engine, settings) == "succeeded"
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert len(writes) >= 3, writes  # the throttle is 0 s here: every report is written
    assert any("epoch" in str(w["stage"]) for w in writes)
    assert [w["progress"] for w in writes] == sorted(w["progress"] for w in writes)
    done = job(engine, job_id)
    assert done.status == "succeeded" and done.progress == 1.0 and done.heartbeat_at is not None
    rows = rows_of(engine, job_id)
    assert [r.row_index for r in rows] == [1]
    assert rows[0].technique == "prune-l1" and rows[0].sparse_macs < rows[0].macs and rows[0].artifact_path
    assert rows[0].accuracy_drop is not None
    # decision-grade numbers in their own columns: interval, paired test, latency spread and conditions
    r = rows[0]
    assert r.eval_samples == 359 and r.accuracy_ci_low < r.accuracy < r.accuracy_ci_high
    assert 0.0 <= r.drop_p_value <= 1.0 and r.drop_significant == (r.drop_p_value < 0.05)
    assert r.latency_ms_bs64_p25 <= r.latency_ms_bs64 <= r.latency_ms_bs64_p75
    assert r.latency_conditions["torch_threads"] == r.torch_threads == settings.torch_threads
    assert "drop_p_value" not in r.notes and "eval_samples" not in (r.extra or {})
    split = done.notes["eval_split"]  # the job's notes: can 359 samples resolve the 1-point budget?
    assert split["eval_samples"] == 359 and split["too_small"] is True and split["samples_needed"] > 359
    # the message delivered again: claim fails, nothing is added
    assert execute_job(job_id, engine, settings) == "skipped"
    assert len(rows_of(engine, job_id)) == 1


def test_stale_worker_cannot_write_after_reassignment(engine: Engine, settings: Settings, trained: str) -> None:
    job_id = add_job(engine, trained)
    old = claim(engine, job_id)
    assert old
    with engine.begin() as conn:  # what a reaper does with a dead worker's job
        conn.execute(update_job_status(job_id, "queued"))
    new = claim(engine, job_id)
    assert new and new.token != old.token and job(engine, job_id).attempts == 2
    before = artifacts(settings)
    # (a) its next progress write finds the lease gone
    stale = JobExecution(engine, settings, old, JobReporter(old, 0.0))
    with pytest.raises(LeaseLost):
        stale.run_compress(job(engine, job_id))
    # (b) a stale worker that never reported since: the guarded final write refuses it
    silent = JobExecution(engine, settings, old, SilentReporter(old, 0.0))
    with pytest.raises(LeaseLost):
        silent.run_compress(job(engine, job_id))
    assert rows_of(engine, job_id) == [] and artifacts(settings) == before  # its model files are removed too
    fresh = JobExecution(engine, settings, new, JobReporter(new, 0.0))
    fresh.run_compress(job(engine, job_id))
    assert len(rows_of(engine, job_id)) == 1 and job(engine, job_id).status == "succeeded"


class SilentReporter(JobReporter):
    def progress(self, fraction: float, stage: str, force: bool = False) -> None:
        pass


def update_job_status(job_id: int, status: str):  # noqa: ANN201
    from store.tables import Job

    return update(Job).where(Job.id == job_id).values(status=status)


def test_cancelled_while_queued_never_starts(engine: Engine, settings: Settings, trained: str) -> None:
    job_id = add_job(engine, trained)
    with engine.begin() as conn:
        conn.execute(update_job_status(job_id, "cancelled"))
    assert execute_job(job_id, engine, settings) == "skipped"
    assert job(engine, job_id).status == "cancelled" and job(engine, job_id).attempts == 0


def test_cancel_requested_while_running_stops_at_next_progress_check(engine: Engine, settings: Settings) -> None:
    mid = add_base_model(engine, "long", epochs=200)  # ~minutes if it were not cancelled
    job_id = add_job(engine, mid, kind="train")
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(execute_job(job_id, engine, settings)))
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (job(engine, job_id).progress > 0):
        time.sleep(0.05)
    assert job(engine, job_id).status == "running"
    from store.tables import Job

    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    t0 = time.monotonic()
    t.join(timeout=60)
    assert not t.is_alive() and result == ["cancelled"]
    assert time.monotonic() - t0 < 10
    done = job(engine, job_id)
    assert done.status == "cancelled" and done.finished_at and done.progress < 0.5
    assert rows_of(engine, job_id) == []
    model = base(engine, mid)
    assert model.status == "untrained" and model.artifact_path is None  # the next job trains it afresh


def test_compress_job_on_untrained_model_trains_it_first(engine: Engine, settings: Settings) -> None:
    mid = add_base_model(engine, "lazy", epochs=1)
    first = add_job(engine, mid)
    assert execute_job(first, engine, settings) == "succeeded"
    rows = rows_of(engine, first)
    assert [(r.row_index, r.technique) for r in rows] == [(0, "baseline"), (1, "quantize-dynamic")]
    model = base(engine, mid)
    assert model.status == "ready" and model.training_job_id == first
    second = add_job(engine, mid)  # trained now: no second baseline
    assert execute_job(second, engine, settings) == "succeeded"
    assert [r.technique for r in rows_of(engine, second)] == ["quantize-dynamic"]
    train = add_job(engine, mid, kind="train")
    assert execute_job(train, engine, settings) == "succeeded"
    assert rows_of(engine, train) == [] and "already trained" in (job(engine, train).stage or "")
    with Session(engine) as s:
        n = s.exec(select(func.count()).where(ResultRow.base_model_id == mid, ResultRow.technique == "baseline")).one()
    assert n[0] == 1


def test_waits_for_the_job_training_the_base_model(engine: Engine, settings: Settings) -> None:
    from store.tables import BaseModelRow

    mid = add_base_model(engine, "shared", epochs=1)
    trainer = add_job(engine, mid, kind="train")
    lease = claim(engine, trainer)
    assert lease
    with engine.begin() as conn:  # the trainer has claimed the base model and is alive (fresh heartbeat)
        conn.execute(
            update(BaseModelRow).where(BaseModelRow.id == mid).values(status="training", training_job_id=trainer)
        )
    waiter = add_job(engine, mid)
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(execute_job(waiter, engine, settings)))
    t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "waiting for job" not in (job(engine, waiter).stage or ""):
        time.sleep(0.05)
    time.sleep(0.5)  # still waiting, not training the model itself
    assert t.is_alive() and "waiting for job" in (job(engine, waiter).stage or "")
    assert base(engine, mid).training_job_id == trainer
    run = JobExecution(engine, settings, lease, JobReporter(lease, 0.0))
    run.run_train(job(engine, trainer))
    t.join(timeout=60)
    assert result == ["succeeded"]
    assert [r.technique for r in rows_of(engine, waiter)] == ["quantize-dynamic"]


def test_failures_are_readable(engine: Engine, settings: Settings, trained: str) -> None:
    outside = add_base_model(engine, "outside", dataset="npz:/etc/hosts")
    failed = add_job(engine, outside)
    assert execute_job(failed, engine, settings) == "failed"
    err = job(engine, failed).error or ""
    assert "outside the allowed data roots" in err
    assert base(engine, outside).status == "failed" and "outside" in (base(engine, outside).error or "")
    bad = add_job(engine, trained, steps=[{"technique": "prune-l1", "params": {"amount": 7}}])
    assert execute_job(bad, engine, settings) == "failed"
    assert "amount" in (job(engine, bad).error or "")


def test_base_model_and_data_are_cached_per_process(engine: Engine, settings: Settings, trained: str) -> None:
    cache.clear()
    for _ in range(2):
        assert execute_job(add_job(engine, trained), engine, settings) == "succeeded"
    assert cache.base_model.cache_info().hits >= 1 and cache.base_model.cache_info().misses == 1
    assert cache.dataset.cache_info().hits >= 1 and cache.dataset.cache_info().misses == 1
