"""Each request's database work runs in one worker thread, after a bounded wait for a slot.

Why not a session dependency with sync routes: such a request holds its pooled connection until the
dependency's clean-up, and FastAPI first needs a free thread to serialize the response. Under a
burst, every thread then waited for a connection held by a request that waited for a thread, until
the pool's timeout (200 simultaneous ``POST /jobs``: 500s and time-outs, while jobs were created).

Here a request first takes a slot in the event loop (no thread, no connection), then opens, uses and
closes its session inside one thread: a connection is held only by a thread that is running. There
are as many slots as the pool has connections for requests, so no thread ever waits for one. On
SQLite, writes also take the one write slot (SQLite has a single writer; waiting in the event loop
is cheaper than in its busy handler). The wait is bounded in length of queue and in time; past
either, the request is answered 503 with ``Retry-After`` before anything was done for it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from sqlmodel import Session

from store.db import get_session
from store.settings import Settings, get_settings

T = TypeVar("T")
SessionFactory = Callable[[], contextlib.AbstractContextManager[Session]]


class Overloaded(Exception):
    """No slot was free within the bounds: nothing was done; the client may retry after ``retry_after_s``."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class Database:
    """Slots for request database work; one per app (created in its event loop, see ``get_database``)."""

    def __init__(self, open_session: SessionFactory, settings: Settings, sqlite: bool) -> None:
        self.open_session = open_session
        self.slots = anyio.CapacityLimiter(settings.db_slots)
        self.write_slot = anyio.CapacityLimiter(1) if sqlite else None
        self.threads = anyio.CapacityLimiter(settings.db_slots + 1)  # never the bottleneck: slots come first
        self.max_waiting = settings.db_max_waiting
        self.wait_s = settings.db_wait_s
        self.waiting = 0

    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait_s / 4))

    @contextlib.asynccontextmanager
    async def _slot(self, write: bool) -> AsyncIterator[None]:
        if self.waiting >= self.max_waiting:
            raise Overloaded(f"{self.waiting} requests are already waiting for the database", self.retry_after())
        limiters = [self.slots] + ([self.write_slot] if write and self.write_slot is not None else [])
        taken: list[anyio.CapacityLimiter] = []
        self.waiting += 1
        try:
            with anyio.fail_after(self.wait_s):
                for limiter in limiters:
                    await limiter.acquire()
                    taken.append(limiter)
        except TimeoutError:
            for limiter in reversed(taken):
                limiter.release()
            raise Overloaded(f"no database slot was free within {self.wait_s:g} s", self.retry_after()) from None
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            for limiter in reversed(taken):
                limiter.release()

    def _in_session(self, work: Callable[[Session], T]) -> T:
        with self.open_session() as session:
            return work(session)

    async def run(self, work: Callable[[Session], T], write: bool = False) -> T:
        """``work(session)`` in one thread, the session opened and closed there. Once started it runs to the
        end even if the client goes away (a job it creates is never half made)."""
        async with self._slot(write):
            with anyio.CancelScope(shield=True):
                return await anyio.to_thread.run_sync(self._in_session, work, limiter=self.threads)


def _session_factory(request: Request) -> SessionFactory:
    """Follows overrides of ``get_session``, as tests set them."""
    return contextlib.contextmanager(request.app.dependency_overrides.get(get_session, get_session))


def _settings(request: Request) -> Settings:
    return request.app.dependency_overrides.get(get_settings, get_settings)()


async def get_database(request: Request) -> Database:
    state = request.app.state
    db: Database | None = getattr(state, "database", None)
    if db is None:
        settings = _settings(request)
        db = Database(_session_factory(request), settings, settings.database_url.startswith("sqlite"))
        state.database = db
    return db


DatabaseDep = Annotated[Database, Depends(get_database)]
