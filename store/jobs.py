"""A job's life cycle: every write to a job's status, lease, heartbeat and progress, in one module.

Every status change goes through :func:`change_status`, which refuses a change that
``JOB_TRANSITIONS`` does not allow and makes the change one conditional ``UPDATE`` on the status the
caller saw (plus its other conditions, a :class:`Guard`), so two writers never both win.

- A worker :func:`claim`\\ s a queued job and gets a :class:`Lease`: ``beat()``, ``progress()``,
  ``succeed()``, ``fail()``, ``cancel()``; each write only happens while the lease is still held.
- The API cancels (:func:`request_cancel`) and notes a deferred send (:func:`note_deferred`).
- The reaper and reconciler find lost and unclaimed jobs (:func:`stale_running`,
  :func:`unclaimed_queued`) and take them back or mark them sent again.
- The hand-over of an untrained base model to the job that trains it: :func:`take_base`,
  :func:`release_base` and :meth:`Lease.base_trained`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col

from store.db import write
from store.tables import (
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_TRANSITIONS,
    MODEL_READY,
    MODEL_TRAINING,
    MODEL_UNTRAINED,
    TERMINAL_STATUSES,
    BaseModelRow,
    Job,
    ResultRow,
    utcnow,
)

T = TypeVar("T", bound=SQLModel)


class ForbiddenTransition(RuntimeError):
    """A status change that ``JOB_TRANSITIONS`` does not allow (a bug in the caller, never a user error)."""


class LeaseLost(RuntimeError):
    """The job is no longer ours (cancelled while queued, or reassigned): stop without writing."""


class BaseTakenOver(LeaseLost):
    """Another job took over training our base model (it thought us dead): wait for it instead."""


class JobFinished(RuntimeError):
    """A cancel asked of a job that has already reached a terminal status (or does not exist)."""


@dataclass(frozen=True)
class Guard:
    """The row a conditional update may touch: the job, the status it must still have, any other conditions."""

    job_id: int
    status: str
    also: tuple[Any, ...] = field(default=())

    def clause(self) -> tuple[Any, ...]:
        return (Job.id == self.job_id, Job.status == self.status, *self.also)


def check_transition(current: str, new: str) -> None:
    """Raise :class:`ForbiddenTransition` unless ``current -> new`` is in ``JOB_TRANSITIONS``."""
    if new not in JOB_TRANSITIONS.get(current, frozenset()):
        raise ForbiddenTransition(f"a job cannot go from '{current}' to '{new}'")


def change_status(conn: Connection, guard: Guard, new: str, **values: Any) -> bool:
    """The one place a job's status changes: checked against the table, then one conditional UPDATE.

    True when the row still matched ``guard`` (and so changed), False when someone changed it first.
    """
    check_transition(guard.status, new)
    stmt = update(Job).where(*guard.clause()).values(status=new, updated_at=utcnow(), **values)
    return conn.execute(stmt).rowcount == 1


def _touch(conn: Connection, guard: Guard, **values: Any) -> bool:
    """Write other columns of a job (no status change) while it still matches ``guard``."""
    return conn.execute(update(Job).where(*guard.clause()).values(**values)).rowcount == 1


def read(engine: Engine, table: type[T], key: Any) -> T | None:
    """One typed row by primary key (detached: its loaded columns stay readable)."""
    with Session(engine) as session:
        return session.get(table, key)


def _insert_rows(conn: Connection, rows: Sequence[ResultRow]) -> None:
    if rows:
        conn.execute(insert(ResultRow), [row.model_dump(exclude={"id"}) for row in rows])


# -- the worker's side -----------------------------------------------------------------------------


def claim(engine: Engine, job_id: int) -> Lease | None:
    """Atomically move a queued job to running; its new lease, or None when it was not queued.

    Only ``queued`` can be claimed: a message delivered again for a job that is running (its lease
    alive or not) is a no-op. A job whose worker died goes back to ``queued`` only through the reaper
    (:func:`take_back`), which counts the lost attempt; this claim then counts the new one.
    """
    token, now = uuid.uuid4().hex, utcnow()
    values = {"attempts": Job.attempts + 1, "started_at": now, "heartbeat_at": now}
    values |= {"lease_token": token, "progress": 0.0, "stage": "starting", "error": None}
    claimed = write(engine, lambda conn: change_status(conn, Guard(job_id, JOB_QUEUED), JOB_RUNNING, **values))
    return Lease(engine, job_id, token) if claimed else None


@dataclass(frozen=True)
class Lease:
    """A running job held by one worker: every write checks the job is still running under our token."""

    engine: Engine
    job_id: int
    token: str

    @property
    def guard(self) -> Guard:
        return Guard(self.job_id, JOB_RUNNING, (Job.lease_token == self.token,))

    def beat(self) -> bool:
        """Stamp the heartbeat; False once the job is no longer ours."""
        return write(self.engine, lambda conn: _touch(conn, self.guard, heartbeat_at=utcnow()))

    def progress(self, fraction: float, stage: str) -> bool:
        """Write progress, stage and heartbeat; whether cancellation was asked. LeaseLost when not ours."""

        def work(conn: Connection) -> bool:
            fraction_ = round(min(1.0, max(0.0, fraction)), 4)
            if not _touch(conn, self.guard, progress=fraction_, stage=stage[:500], heartbeat_at=utcnow()):
                raise LeaseLost(f"job {self.job_id}: lease lost")
            return _cancel_requested(conn, self.job_id)

        return write(self.engine, work)

    def cancel_requested(self) -> bool:
        with self.engine.connect() as conn:
            return _cancel_requested(conn, self.job_id)

    def _end(self, conn: Connection, new: str, **values: Any) -> None:
        if not change_status(conn, self.guard, new, finished_at=utcnow(), **values):
            raise LeaseLost(f"job {self.job_id}: lease lost before writing results")

    def _hold(self, conn: Connection) -> None:
        if not _touch(conn, self.guard, updated_at=utcnow()):
            raise LeaseLost(f"job {self.job_id}: lease lost before writing results")

    def succeed(
        self,
        rows: Sequence[ResultRow],
        stage: str | None = None,
        notes: dict[str, Any] | None = None,
        updates: dict[int, dict[str, Any]] | None = None,
    ) -> None:
        """The job's rows, its notes, ``updates`` of existing rows (row id → column values, e.g. a retime's
        latencies) and its final state in one transaction; LeaseLost (nothing written) when not ours."""
        extra = {"notes": notes} if notes else {}

        def work(conn: Connection) -> None:
            self._end(conn, JOB_SUCCEEDED, progress=1.0, stage=stage or f"done: {len(rows)} row(s)", **extra)
            _insert_rows(conn, rows)
            for row_id, values in (updates or {}).items():
                conn.execute(update(ResultRow).where(ResultRow.id == row_id).values(**values))  # type: ignore[arg-type]
            if updates:  # the model's table changed in place: its cached /comparison is stale
                mine = select(col(Job.base_model_id)).where(col(Job.id) == self.job_id).scalar_subquery()
                conn.execute(update(BaseModelRow).where(col(BaseModelRow.id) == mine).values(updated_at=utcnow()))

        write(self.engine, work)

    def fail(self, reason: str, stage: str = "failed") -> bool:
        return self._finish(JOB_FAILED, reason, stage)

    def cancel(self, stage: str = "cancelled") -> bool:
        return self._finish(JOB_CANCELLED, None, stage)

    def _finish(self, new: str, error: str | None, stage: str) -> bool:
        values = {"error": error, "stage": stage, "finished_at": utcnow()}
        return write(self.engine, lambda conn: change_status(conn, self.guard, new, **values))

    def base_trained(self, base_id: str, ready: dict[str, Any], baseline: ResultRow, done_stage: str | None) -> None:
        """The base model we trained becomes ready with its baseline row, in one transaction.

        ``done_stage``: training was the whole job, so it succeeds too; otherwise the job goes on
        (its lease is only checked). BaseTakenOver when another job took the base model meanwhile.
        """

        def work(conn: Connection) -> None:
            if done_stage is None:
                self._hold(conn)
            else:
                self._end(conn, JOB_SUCCEEDED, progress=1.0, stage=done_stage)
            mine = (BaseModelRow.id == base_id, BaseModelRow.status == MODEL_TRAINING)
            res = conn.execute(
                update(BaseModelRow)
                .where(*mine, BaseModelRow.training_job_id == self.job_id)
                .values(status=MODEL_READY, error=None, updated_at=utcnow(), **ready)
            )
            if res.rowcount != 1:
                raise BaseTakenOver(f"base model '{base_id}' was taken over by another job")
            _insert_rows(conn, [baseline])

        write(self.engine, work)


def _cancel_requested(conn: Connection, job_id: int) -> bool:
    return bool(conn.execute(select(Job.cancel_requested).where(Job.id == job_id)).scalar_one())


def take_base(engine: Engine, base_id: str, job_id: int, seen_status: str, seen_owner: int | None) -> bool:
    """Make ``job_id`` the trainer of a base model still as it was seen (status and owner); True if it won."""
    owner = BaseModelRow.training_job_id
    same_owner = owner.is_(None) if seen_owner is None else owner == seen_owner
    stmt = (
        update(BaseModelRow)
        .where(BaseModelRow.id == base_id, BaseModelRow.status == seen_status, same_owner)
        .values(status=MODEL_TRAINING, training_job_id=job_id, error=None, updated_at=utcnow())
    )
    return write(engine, lambda conn: conn.execute(stmt).rowcount == 1)


def trainer_gone(engine: Engine, owner_id: int | None, me: int, stale_after_s: float) -> bool:
    """Whether the job training a base model is gone (finished, back in the queue, or its heartbeat stale),
    so that job ``me`` may take the training over."""
    if owner_id is None or owner_id == me:
        return True
    owner = read(engine, Job, owner_id)
    if owner is None or owner.status in TERMINAL_STATUSES or owner.status == JOB_QUEUED:
        return True
    beat = owner.heartbeat_at
    if beat is None:
        return True
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=utcnow().tzinfo)
    return utcnow() - beat > timedelta(seconds=stale_after_s)


def release_base(engine: Engine, base_id: str, job_id: int, status: str, error: str | None) -> None:
    """The trainer gives a base model up (``untrained``: the next job trains it; ``failed``: with the reason)."""
    stmt = (
        update(BaseModelRow)
        .where(BaseModelRow.id == base_id, BaseModelRow.training_job_id == job_id)
        .where(BaseModelRow.status == MODEL_TRAINING)
        .values(status=status, error=None if status == MODEL_UNTRAINED else error, updated_at=utcnow())
    )
    write(engine, lambda conn: conn.execute(stmt))


# -- the API's side --------------------------------------------------------------------------------


def request_cancel(conn: Connection, job_id: int) -> bool:
    """Queued: cancelled at once (True). Running: cancellation asked of its worker (False). Else JobFinished.

    Runs in the caller's transaction (the caller commits).
    """
    now = utcnow()
    values = {"cancel_requested": True, "stage": "cancelled before it started", "finished_at": now}
    if change_status(conn, Guard(job_id, JOB_QUEUED), JOB_CANCELLED, **values):
        return True
    if _touch(conn, Guard(job_id, JOB_RUNNING), cancel_requested=True, updated_at=now):
        return False
    raise JobFinished(f"job {job_id} has already finished")


def note_deferred(conn: Connection, job_id: int, stage: str) -> None:
    """A queued job whose id the broker refused: it stays queued, its stage says why (caller commits)."""
    _touch(conn, Guard(job_id, JOB_QUEUED), stage=stage)


# -- the reaper's and the reconciler's side --------------------------------------------------------


def _stale(cutoff: datetime) -> Any:
    return or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff)


def stale_running(engine: Engine, cutoff: datetime, limit: int) -> list[Job]:
    """Running jobs whose heartbeat is older than ``cutoff`` (or was never written), oldest id first."""
    stmt = select(Job).where(Job.status == JOB_RUNNING, _stale(cutoff)).order_by(Job.id).limit(limit)
    with Session(engine) as session:
        return list(session.scalars(stmt))


def take_back(engine: Engine, job: Job, cutoff: datetime, new: str, **values: Any) -> bool:
    """A lost running job (as seen: same lease, still stale) to ``new``; a base model it trained is given up."""
    token = Job.lease_token.is_(None) if job.lease_token is None else Job.lease_token == job.lease_token
    guard = Guard(int(job.id or 0), JOB_RUNNING, (token, _stale(cutoff)))

    def work(conn: Connection) -> bool:
        if not change_status(conn, guard, new, lease_token=None, **values):
            return False
        conn.execute(
            update(BaseModelRow)
            .where(BaseModelRow.training_job_id == guard.job_id, BaseModelRow.status == MODEL_TRAINING)
            .values(status=MODEL_UNTRAINED, error=None, updated_at=utcnow())
        )
        return True

    return write(engine, work)


def unclaimed_queued(engine: Engine, cutoff: datetime, limit: int) -> list[tuple[int, datetime | None]]:
    """(id, enqueued_at) of queued jobs whose id was last sent (or that were created) before ``cutoff``."""
    last_sent = func.coalesce(Job.enqueued_at, Job.created_at)
    stmt = select(Job.id, Job.enqueued_at).where(Job.status == JOB_QUEUED, last_sent < cutoff).order_by(Job.id)
    with engine.connect() as conn:
        return [(int(i), at) for i, at in conn.execute(stmt.limit(limit))]


def mark_sent(engine: Engine, job_id: int, previous: datetime | None, now: datetime | None) -> bool:
    """Set a queued job's send time from ``previous`` (as seen) to ``now``; False if it changed meanwhile."""
    same = Job.enqueued_at.is_(None) if previous is None else Job.enqueued_at == previous
    return write(engine, lambda conn: _touch(conn, Guard(job_id, JOB_QUEUED, (same,)), enqueued_at=now))


def unmark_sent(engine: Engine, job_id: int, previous: datetime | None) -> None:
    """A send the broker refused: the queued job's send time back to ``previous``, so the next pass retries."""
    write(engine, lambda conn: _touch(conn, Guard(job_id, JOB_QUEUED), enqueued_at=previous))
