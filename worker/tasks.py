"""Celery tasks: thin wrappers that take a job id and hand it to ``worker.execution``."""

from __future__ import annotations

from store.db import get_engine
from store.queue import RUN_JOB
from store.settings import get_settings
from worker.celery_app import celery_app
from worker.execution import execute_job


@celery_app.task(name=RUN_JOB)
def run_job(job_id: int) -> str:
    """Run job ``job_id``; a message for a job that is no longer queued is a no-op."""
    return execute_job(int(job_id), get_engine(), get_settings(), redirect_tmp=True)
