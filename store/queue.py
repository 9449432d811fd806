"""The broker both sides share: its Celery settings, and the small producer the API sends job ids with.

Only a job id crosses, by task name (``RUN_JOB``); the worker (``worker.celery_app``) builds its app
from the same :func:`celery_config`, so producer and consumer agree on the queue, the serializer and
the transport options (the embedded broker's polling, Redis's visibility timeout).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from celery import Celery

from store.settings import Settings

RUN_JOB = "netreduce.run_job"
"""The worker's task that runs one job, given its id."""


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


def celery_config(settings: Settings) -> dict[str, Any]:
    """What producer and worker share: the queue, no result backend, JSON, transport options, publish retries."""
    return {
        "task_default_queue": settings.queue,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": broker_transport_options(settings),
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    }


def broker_app(name: str, settings: Settings, include: list[str] | None = None) -> Celery:
    """A Celery app on the configured broker with the shared settings (the worker adds its own)."""
    ensure_broker_folder(settings.broker_url)
    set_broker_polling(settings)
    app = Celery(name, broker=settings.broker_url, include=include or [])
    app.conf.update(celery_config(settings))
    return app


class JobProducer:
    """Sends job ids to the workers by task name; no worker code is imported."""

    def __init__(self, settings: Settings) -> None:
        self.queue = settings.queue
        self.app = broker_app("netreduce-producer", settings)

    def send(self, job_id: int) -> None:
        self.app.send_task(RUN_JOB, args=[job_id], queue=self.queue)


_producers: dict[tuple[str, str], JobProducer] = {}
_lock = threading.Lock()


def producer_for(settings: Settings) -> JobProducer:
    """This process's producer for the settings' broker and queue (made once, its connections pooled)."""
    key = (settings.broker_url, settings.queue)
    with _lock:
        if key not in _producers:
            _producers[key] = JobProducer(settings)
        return _producers[key]
