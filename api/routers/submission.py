"""Submitting a job: create it once (with its idempotency key), commit, then send its id to the workers.

One sequence for every route that starts a job (POST /jobs, POST /models/{id}/retime): the row is committed
before its id is queued, a replayed request is answered with what the first one made (``Idempotent-Replayed``)
and not sent again, and a broker that refuses leaves the job queued for the reconciler, its stage saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.database import Database
from api.deps import Enqueuer
from api.idempotency import create_once
from api.job_service import defer_enqueue, get_job, job_out, job_rows
from api.schemas import JobOut
from store.tables import JOB_SUCCEEDED, Job


async def submit_job(
    db: Database,
    enqueue: Enqueuer,
    response: Response,
    scope: str,
    idempotency_key: str | None,
    payload: Any,
    make: Callable[[Session], Job],
) -> JobOut:
    """Create the job ``make`` builds (it must not commit), once per idempotency key, and queue it. A job made
    already succeeded (answered from the table) is returned with its rows and not sent."""

    def create(session: Session) -> tuple[JobOut, bool]:
        job_id, _, replayed = create_once(session, scope, idempotency_key, payload, lambda s: (make(s).id, None))
        assert job_id is not None
        return job_out(get_job(session, job_id)), replayed

    job, replayed = await db.run(create, write=True)
    if job.status == JOB_SUCCEEDED:  # answered from the table (or a replay of a finished job): nothing to send
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        job = await db.run(lambda session: job_out(get_job(session, job.id), job_rows(session, job.id)))
    elif await send_job(db, enqueue, job.id, replayed, response):
        job = await db.run(lambda session: job_out(get_job(session, job.id)))
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


async def send_job(db: Database, enqueue: Enqueuer, job_id: int, replayed: bool, response: Response) -> bool:
    """Send a committed job's id to the workers (not a replayed one's: it was sent the first time). True when
    the broker refused it: the job stays queued, its stage says so, the reconciler sends it later."""
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
        return False
    try:
        await run_in_threadpool(enqueue, job_id)
        return False
    except Exception:
        await db.run(lambda session: defer_enqueue(session, job_id), write=True)
        response.headers["Retry-After"] = "0"
        return True
