"""The Celery app. The broker only delivers job ids; the database is the truth, so no result backend.

Each worker's main process also runs the reaper and the reconciler (``worker.reaper``) in a thread,
started on ``worker_ready``: a scaled-out deployment has one per worker, which is safe because every
change they make is a conditional update.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from store.settings import Settings, get_settings
from worker import test_hooks


def configure_torch(settings: Settings) -> None:
    import torch

    torch.set_num_threads(settings.torch_threads)


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """Redis: the visibility timeout, and a sweep for unacknowledged messages often enough to honour it.

    kombu looks for messages to deliver again every ``unacked_restore_interval`` x
    ``unacked_restore_throttle`` seconds (100 s by default), whatever the visibility timeout. The
    SQLAlchemy transport passes its options to ``create_engine``: SQLite gets a 30 s busy timeout.
    """
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return {
            "visibility_timeout": settings.broker_visibility_timeout_s,
            "unacked_restore_interval": max(1, min(10, settings.broker_visibility_timeout_s // 2)),
            "unacked_restore_throttle": 1,
        }
    if settings.broker_url.startswith("sqla+sqlite"):
        return {"connect_args": {"timeout": 30}}
    if settings.broker_url.startswith("filesystem://"):
        return {"polling_interval": settings.broker_poll_s}
    return {}


def set_broker_polling(settings: Settings) -> None:
    """Server-less brokers poll an empty queue every ``polling_interval`` seconds (kombu: 1 s), which is
    up to that much queue wait on every job: use ``broker_poll_s`` instead.

    kombu's virtual transports read ``polling_interval`` from the transport options, and the filesystem
    transport gets it there (:func:`broker_transport_options`). The SQLAlchemy transport passes every
    transport option it does not know on to ``create_engine``, which rejects this one, so its class
    attribute is set instead (one broker per process: the last app made sets it).
    """
    if settings.broker_url.startswith("sqla+"):
        import kombu.transport.sqlalchemy

        kombu.transport.sqlalchemy.Transport.polling_interval = settings.broker_poll_s


def ensure_broker_folder(url: str) -> None:
    """kombu's SQLite broker file lives under var/ by default: create its folder."""
    prefix = "sqla+sqlite:///"
    if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    ensure_broker_folder(settings.broker_url)
    set_broker_polling(settings)
    app = Celery("netreduce", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        task_default_queue=settings.queue,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.worker_soft_time_limit_s,
        task_time_limit=settings.worker_hard_time_limit_s,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_transport_options(settings),
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


celery_app = make_celery()
app = celery_app  # `celery -A worker.celery_app` finds `app`
test_hooks.register_if_enabled()


def enqueue_job(job_id: int) -> None:
    """Send a job id to the workers (the reaper and the reconciler use this)."""
    celery_app.send_task("netreduce.run_job", args=[job_id], queue=get_settings().queue)


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
