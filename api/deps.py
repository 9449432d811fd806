"""Request dependencies: database session, settings, the enqueue step and the broker check.

Tests override these (``app.dependency_overrides``) instead of patching internals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from sqlmodel import Session

from store.db import get_session
from store.queue import ensure_broker_folder, producer_for
from store.settings import Settings, get_settings

SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

Enqueuer = Callable[[int], None]
"""Sends a job id to the workers; called only after the job row is committed."""

BrokerCheck = Callable[[str], None]
"""Raises when the broker at the given URL cannot be reached."""


def celery_enqueue(job_id: int) -> None:
    """Send the id through the API's own producer (``store.queue``): no worker code in this process."""
    producer_for(get_settings()).send(job_id)


def get_enqueuer() -> Enqueuer:
    return celery_enqueue


def check_broker(url: str, timeout_s: float = 2.0) -> None:
    """Open a connection to the broker (any kombu transport) or raise."""
    from kombu import Connection

    ensure_broker_folder(url)
    with Connection(url, connect_timeout=timeout_s) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, interval_max=0, timeout=timeout_s)


def get_broker_check() -> BrokerCheck:
    return check_broker


EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
BrokerCheckDep = Annotated[BrokerCheck, Depends(get_broker_check)]
