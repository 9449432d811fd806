"""The Celery app. The broker only delivers job ids; the database is the truth, so no result backend.

Each worker's main process also runs the reaper and the reconciler (``worker.reaper``) in a thread,
started on ``worker_ready``: a scaled-out deployment has one per worker, which is safe because every
change they make is a conditional update.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from store.queue import RUN_JOB, broker_app
from store.settings import Settings, get_settings


def configure_torch(settings: Settings) -> None:
    import torch

    torch.set_num_threads(settings.torch_threads)


def make_celery(settings: Settings | None = None) -> Celery:
    """The worker's app: the broker settings the API's producer shares (``store.queue``), plus its own.

    ``extra_task_modules`` (a setting) names more task modules to load, e.g. the fault tests' techniques.
    """
    settings = settings or get_settings()
    app = broker_app("netreduce", settings, include=["worker.tasks", *settings.extra_task_modules])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.worker_soft_time_limit_s,
        task_time_limit=settings.worker_hard_time_limit_s,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


celery_app = make_celery()
app = celery_app  # `celery -A worker.celery_app` finds `app`


def enqueue_job(job_id: int) -> None:
    """Send a job id to the workers (the reaper and the reconciler use this)."""
    celery_app.send_task(RUN_JOB, args=[job_id], queue=get_settings().queue)


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    """In each pool process: torch's threads. (The main process opens no pooled database connection a
    child could inherit: its sweeper thread connects per pass, without a pool.)"""
    configure_torch(get_settings())


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    from worker.reaper import start_sweeper

    start_sweeper(get_settings(), enqueue_job)


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    from worker.reaper import stop_sweeper

    stop_sweeper()
