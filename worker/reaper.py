"""The reaper and the reconciler: nothing stays ``running`` or ``queued`` because a process or a message died.

The table is the truth and the queue only delivers, so both look at the jobs table:

- **reaper**: a ``running`` job whose heartbeat is older than ``stale_after_s`` (or was never
  written) lost its worker. It goes back to ``queued`` with its lease cleared and its id sent again,
  or, once it has used ``max_attempts`` attempts, it is ``failed`` with the reason. A job whose
  cancellation was requested is ``cancelled`` instead.
- **reconciler**: a ``queued`` job that no worker has claimed ``requeue_after_s`` after its id was
  last sent (a broker restarted without persistence, a publish that failed after the row was
  committed) has its id sent again. A message too many is harmless: the claim is a conditional
  update, so a second delivery finds nothing to claim.

The queries and writes are ``store.jobs``'s. Every change is one conditional ``UPDATE`` that
re-checks what the pass saw, so any number of workers may run these passes at once: one of them
wins each job, the others change nothing. Each Celery worker runs them in a thread of its main
process (:func:`start_sweeper`, on ``worker_ready``), every ``reaper_interval_s``.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from store import jobs
from store.settings import Settings
from store.tables import JOB_CANCELLED, JOB_FAILED, JOB_QUEUED, Job, utcnow

log = logging.getLogger("netreduce.reaper")

Enqueue = Callable[[int], None]
"""Sends a job id to the workers (``celery_app.send_task`` in a worker)."""

BATCH = 200


@dataclass
class SweepReport:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.cancelled or self.resent)


def _when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _lost(job: Job, now: datetime) -> tuple[str, dict[str, Any]]:
    """Where a lost running job goes: cancelled (asked for), failed (out of attempts) or queued again."""
    attempts, beat = job.attempts, _when(job.heartbeat_at)
    if job.cancel_requested:
        return JOB_CANCELLED, {"stage": "cancelled (its worker was lost)", "finished_at": now}
    if attempts >= job.max_attempts:
        reason = f"worker lost {attempts} time(s) (last heartbeat {beat}); gave up after {job.max_attempts}"
        return JOB_FAILED, {"error": reason, "stage": "worker lost", "finished_at": now}
    stage = f"requeued: worker lost (last heartbeat {beat}); attempt {attempts} of {job.max_attempts}"
    return JOB_QUEUED, {"stage": stage, "progress": 0.0, "heartbeat_at": None, "enqueued_at": now}


def reap_stale(engine: Engine, settings: Settings, enqueue: Enqueue, work_dir: str | None = None) -> SweepReport:
    """Put back (or fail) every ``running`` job whose heartbeat is stale; see the module docstring."""
    report = SweepReport()
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.stale_after_s)
    for job in jobs.stale_running(engine, cutoff, BATCH):
        job_id = int(job.id or 0)
        status, values = _lost(job, now)
        if not jobs.take_back(engine, job, cutoff, status, **values):
            continue  # another reaper took it, or its worker beat in the meantime
        if work_dir:  # what the dead attempt left in its temporary folder, if it ran on this machine
            shutil.rmtree(Path(work_dir).resolve() / f"job-{job_id}", ignore_errors=True)
        if status == JOB_QUEUED:
            log.warning("job %s: worker lost (last heartbeat %s); requeued", job_id, _when(job.heartbeat_at))
            report.requeued.append(job_id)
            _send(engine, enqueue, job_id, previous=None)
        elif status == JOB_FAILED:
            log.error("job %s: worker lost %s time(s); failed", job_id, job.attempts)
            report.failed.append(job_id)
        else:
            report.cancelled.append(job_id)
    return report


def resend_queued(engine: Engine, settings: Settings, enqueue: Enqueue) -> SweepReport:
    """Send again the id of every ``queued`` job nobody claimed ``requeue_after_s`` after it was last sent."""
    report = SweepReport()
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.requeue_after_s)
    for job_id, previous in jobs.unclaimed_queued(engine, cutoff, BATCH):
        if not jobs.mark_sent(engine, job_id, previous, now):
            continue  # claimed, cancelled or re-sent by another worker since we looked
        if _send(engine, enqueue, job_id, previous=previous):
            report.resent.append(job_id)
    if report.resent:
        log.warning("re-sent %d queued job(s) that no worker had claimed: %s", len(report.resent), report.resent)
    return report


def _send(engine: Engine, enqueue: Enqueue, job_id: int, previous: datetime | None) -> bool:
    """Send the id; when the broker refuses, forget the send time so the next pass tries again."""
    try:
        enqueue(job_id)
        return True
    except Exception as exc:
        log.warning("job %s: could not send its id (%s); the next pass tries again", job_id, exc)
        try:
            jobs.unmark_sent(engine, job_id, previous)
        except Exception:
            log.warning("job %s: could not reset its send time", job_id)
        return False


def sweep(engine: Engine, settings: Settings, enqueue: Enqueue) -> SweepReport:
    """One pass of the reaper, then the reconciler."""
    reaped = reap_stale(engine, settings, enqueue, settings.work_dir)
    resent = resend_queued(engine, settings, enqueue)
    reaped.resent = resent.resent
    return reaped


class Sweeper(threading.Thread):
    """Runs :func:`sweep` every ``reaper_interval_s`` (with jitter) until stopped; errors are logged."""

    def __init__(self, settings: Settings, enqueue: Enqueue, engine: Engine | None = None) -> None:
        super().__init__(name="netreduce-sweeper", daemon=True)
        self.settings, self.enqueue = settings, enqueue
        # NullPool: no connection outlives a pass, so a pool process forked meanwhile inherits none
        self.engine = engine or _engine(settings.database_url)
        self.stopped = threading.Event()
        self.passes = 0

    def run(self) -> None:
        interval = self.settings.reaper_interval_s
        while not self.stopped.is_set():
            try:
                sweep(self.engine, self.settings, self.enqueue)
            except Exception as exc:
                log.warning("reaper/reconciler pass failed: %s", str(exc).splitlines()[0][:300] if str(exc) else exc)
            self.passes += 1
            self.stopped.wait(interval * random.uniform(0.8, 1.2))

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def _engine(url: str) -> Engine:
    from store.db import create_engine

    return create_engine(url, poolclass=NullPool)


_sweeper: Sweeper | None = None


def start_sweeper(settings: Settings, enqueue: Enqueue) -> Sweeper | None:
    """Start this process's sweeper thread once (``reaper_interval_s = 0``: none)."""
    global _sweeper
    if settings.reaper_interval_s <= 0 or (_sweeper is not None and _sweeper.is_alive()):
        return _sweeper
    _sweeper = Sweeper(settings, enqueue)
    _sweeper.start()
    log.info(
        "reaper/reconciler every %.1f s (stale after %.1f s, resend after %.1f s)",
        settings.reaper_interval_s,
        settings.stale_after_s,
        settings.requeue_after_s,
    )
    return _sweeper


def stop_sweeper() -> None:
    global _sweeper
    if _sweeper is not None:
        _sweeper.stop()
        _sweeper = None
