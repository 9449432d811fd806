"""The Celery app. The broker only delivers job ids; the database is the truth, so no result backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from store.settings import Settings, get_settings


def configure_torch(settings: Settings) -> None:
    import torch

    torch.set_num_threads(settings.torch_threads)


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """Redis takes a visibility timeout; the SQLAlchemy transport passes its options to create_engine."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return {"visibility_timeout": settings.broker_visibility_timeout_s}
    return {}


def ensure_broker_folder(url: str) -> None:
    """kombu's SQLite broker file lives under var/ by default: create its folder."""
    prefix = "sqla+sqlite:///"
    if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    ensure_broker_folder(settings.broker_url)
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


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    configure_torch(get_settings())
